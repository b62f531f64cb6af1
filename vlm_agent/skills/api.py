"""The robot skill API that planners (PaLM-E plans, Octopus code) call, independent of the backend.

One source of truth: the `@skill` methods of `SkillAPI` (name, typed arguments, docstring, result).
`SKILL_SPECS` is read from them, and from it come the prompt text (`skills_prompt()`), the
OpenAI-style tool list (`tool_schemas()`), the PaLM-E step grammar and the sandbox's allowed calls,
so a prompt never drifts from the code. Implementations subclass `SkillAPI`: `SimSkills` on the
embedded simulator; a ROS adapter in `nodes/` on a robot (not written yet).

Objects are referred to the way instructions do: "the red cube", "blue plate", "table", or a scene
object id such as "obj_3" (`ObjectRef`); `vlm_agent.skills.resolver` maps a phrase to a scene
object. A skill returns a `SkillResult` (success, feedback text, the observation changes it caused,
and for `locate` where the object is). Inside a skill, `SkillError` means "this call cannot run"
(unknown object, unreachable, nothing held); `execute` turns it into a failed result, so a failure
is always feedback for the planner, never a crash.

Target-state predicates (what an Octopus response claims will hold afterwards) are declared here
too (`PREDICATES`) and checked by the implementation (`SkillAPI.holds`).
"""
from __future__ import annotations

import ast
import inspect
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, NewType

ObjectRef = NewType("ObjectRef", str)
"""An object or furniture piece named as an instruction names it ("the red cube", "table", "obj_3")."""

OBJECT_ARG_DESCRIPTION = "an object or furniture piece named as in the instruction, e.g. 'the red cube' or 'table'"
_JSON_TYPES = {ObjectRef: "string", str: "string", int: "integer", float: "number", bool: "boolean"}


class SkillError(RuntimeError):
    """A skill call that could not be executed; the message is feedback for the planner."""


class ObjectNotFound(SkillError):
    """A perception looked for an object (in view, in memory, turning a full circle) and did not find
    it. The skills may then search from other places on the map (`skills.search`)."""


@dataclass
class SkillResult:
    """What one skill call did.

    success: the skill achieved its postcondition (e.g. `pick`: the object is held).
    feedback: one human-readable sentence for the planner ("holding red cube", "no object matches 'x'").
    changes: observation changes caused by the call, {key: [before, after]} over `SkillAPI.state()`
        (e.g. {"held": [None, "red cube"]}); filled by `SkillAPI.execute`.
    found / position / frame: `locate` only: whether the object was found and its centre (x, y, z)
        in metres in `frame` (the world/odom frame in the simulator).
    perception: which `Perception` provider answered "where is it", e.g.
        "ground_truth (upper bound)"; every result of a ground-truth run carries it.
    verified_by: `place_on` through a position-only perception: what "X is on Y" rests on
        ("camera": seen there after release; "released over it (not in view)": the gripper held it
        until it opened over Y's footprint); empty when nothing verified it.
    """

    success: bool
    feedback: str = ""
    changes: dict = field(default_factory=dict)
    found: bool | None = None
    position: tuple[float, float, float] | None = None
    frame: str | None = None
    perception: str | None = None
    verified_by: str | None = None

    def to_dict(self) -> dict:
        out = {"success": self.success, "feedback": self.feedback, "changes": self.changes}
        for key in ("found", "position", "frame", "perception", "verified_by"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "position" else value
        return out


@dataclass(frozen=True)
class ParamSpec:
    """One skill argument: name, JSON type ("string" | "integer" | "number" | "boolean"), whether it
    names an object (resolved by the implementation), and its description."""

    name: str
    json_type: str
    is_object: bool
    description: str


@dataclass(frozen=True)
class SkillSpec:
    """A skill as planners see it: name, arguments, what it does (`doc`) and what it returns."""

    name: str
    params: tuple[ParamSpec, ...]
    doc: str
    returns: str

    @property
    def arity(self) -> int:
        return len(self.params)

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.name for p in self.params)})"

    def prompt_line(self) -> str:
        return f"- {self.signature()}: {self.doc} Returns {self.returns}."

    def tool_schema(self) -> dict:
        """OpenAI chat-completions `tools` entry ({"type": "function", "function": {...}})."""
        props = {p.name: {"type": p.json_type, "description": p.description} for p in self.params}
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": f"{self.doc} Returns {self.returns}.",
                "parameters": {"type": "object", "properties": props, "required": [p.name for p in self.params], "additionalProperties": False},
            },
        }


def skill(returns: str) -> Callable:
    """Mark a `SkillAPI` method as a skill; `returns` says what its result means to a planner."""

    def mark(fn):
        fn.__skill_returns__ = returns
        return fn

    return mark


# Target-state predicates an Octopus response may list, name -> (argument names, meaning).
PREDICATES: dict[str, tuple[tuple[str, ...], str]] = {
    "on": (("object", "support"), "the object rests on the support (an object or furniture piece), not held"),
    "holding": (("object",), "the gripper holds the object ('nothing' for an empty gripper)"),
    "near": (("object",), "the robot base is within reach of the object"),
    "gripper_open": ((), "the gripper is open"),
    "gripper_closed": ((), "the gripper is closed"),
}


class SkillAPI:
    """The skills, abstract. An implementation overrides every `@skill` method, `state()` and
    `holds()`; callers use `execute(SkillCall)` or `bindings()` (for the sandbox)."""

    @skill("success when the base stands next to the object, facing it")
    def navigate_to(self, object: ObjectRef) -> SkillResult:
        """Drive the mobile base next to the object or furniture piece and face it."""
        raise NotImplementedError

    @skill("success when the object is held")
    def pick(self, object: ObjectRef) -> SkillResult:
        """Drive to the object if needed, grasp it from above and lift it; the gripper must be empty."""
        raise NotImplementedError

    @skill("success when the held object rests on the target")
    def place_on(self, object: ObjectRef) -> SkillResult:
        """Drive to the target if needed and put the held object down on top of it (an object or a table)."""
        raise NotImplementedError

    @skill("success when the gripper is open (a held object is released)")
    def open_gripper(self) -> SkillResult:
        """Open the gripper where it is, releasing anything it holds."""
        raise NotImplementedError

    @skill("success when the gripper is closed; the feedback says what it holds")
    def close_gripper(self) -> SkillResult:
        """Close the gripper where it is."""
        raise NotImplementedError

    @skill("success always; the feedback lists the objects seen")
    def look_around(self) -> SkillResult:
        """Turn the base in place through a full circle and report the objects seen."""
        raise NotImplementedError

    @skill("found (true/false) and the object's position (x, y, z) in metres in the world frame")
    def locate(self, object: ObjectRef) -> SkillResult:
        """Find where an object is without moving."""
        raise NotImplementedError

    @skill("success always; ends the task")
    def done(self) -> SkillResult:
        """Declare the task finished."""
        raise NotImplementedError

    # -- implementation hooks --------------------------------------------------------------------
    def state(self) -> dict:
        """A JSON-able snapshot of what the skills can change (held object, gripper, base pose,
        object supports); `execute` diffs it into `SkillResult.changes`."""
        raise NotImplementedError

    def holds(self, predicate: str, args: tuple[str, ...]) -> bool:
        """Whether a target-state predicate (see `PREDICATES`) holds now; SkillError when an argument
        names no object."""
        raise NotImplementedError

    # -- calling -----------------------------------------------------------------------------------
    def execute(self, call: "SkillCall") -> SkillResult:
        """Run one call; a SkillError or bad arguments become a failed result with the reason as
        feedback, and `changes` records what the call changed."""
        before = self.state()
        try:
            result = getattr(self, call.name)(*call.args, **dict(call.kwargs))
        except SkillError as exc:
            result = SkillResult(False, f"{call.to_text()} failed: {exc}")
        except TypeError as exc:
            result = SkillResult(False, f"{call.to_text()} failed: bad arguments ({exc})")
        except NotImplementedError:  # e.g. a base without an arm: the planner hears it, nothing crashes
            result = SkillResult(False, f"{call.to_text()} failed: {call.name} is not available on this robot")
        result.changes = diff_state(before, self.state())
        return result

    def run_program(self, program: list["SkillCall"]) -> list[SkillResult]:
        """Execute calls in order, stopping at the first failure."""
        results = []
        for call in program:
            results.append(self.execute(call))
            if not results[-1].success:
                break
        return results

    def bindings(self) -> dict[str, Callable[..., SkillResult]]:
        """{skill name: callable} for `sandbox.run_program`; each callable goes through `execute`."""

        def bind(name):
            def call(*args, **kwargs):
                try:
                    skill_call = SkillCall(name, tuple(args), tuple(kwargs.items()))
                except ValueError as exc:  # wrong arguments are feedback, like any other failure
                    return SkillResult(False, str(exc))
                return self.execute(skill_call)

            call.__name__ = name
            return call

        return {name: bind(name) for name in SKILLS}


def diff_state(before: dict, after: dict) -> dict:
    """{key: [before, after]} for the keys whose value changed (floats compared to 1 mm / 1 mrad)."""
    out = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if not _close(a, b):
            out[key] = [a, b]
    return out


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-3)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return not diff_state(a, b)
    return a == b


def _specs_from(api_class: type) -> tuple[SkillSpec, ...]:
    specs = []
    for name, fn in vars(api_class).items():
        returns = getattr(fn, "__skill_returns__", None)
        if returns is None:
            continue
        hints = typing.get_type_hints(fn, globalns={**globals(), "ObjectRef": ObjectRef})
        params = []
        for pname in list(inspect.signature(fn).parameters)[1:]:
            hint = hints[pname]
            if hint not in _JSON_TYPES:
                raise TypeError(f"skill {name}: argument {pname} has unsupported type {hint}")
            desc = OBJECT_ARG_DESCRIPTION if hint is ObjectRef else pname
            params.append(ParamSpec(pname, _JSON_TYPES[hint], hint is ObjectRef, desc))
        doc = " ".join(inspect.getdoc(fn).split())
        specs.append(SkillSpec(name, tuple(params), doc, returns))
    return tuple(specs)


SKILL_SPECS: tuple[SkillSpec, ...] = _specs_from(SkillAPI)
SKILLS: tuple[str, ...] = tuple(s.name for s in SKILL_SPECS)
_SPEC_BY_NAME = {s.name: s for s in SKILL_SPECS}


def skill_spec(name: str) -> SkillSpec:
    """The spec of a registered skill; KeyError naming the known skills otherwise."""
    try:
        return _SPEC_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown skill '{name}' (skills: {', '.join(SKILLS)})") from None


def skills_prompt() -> str:
    """The skill list for a planner prompt, one line per skill, generated from `SKILL_SPECS`."""
    return "\n".join(s.prompt_line() for s in SKILL_SPECS)


def tool_schemas() -> list[dict]:
    """The skills as an OpenAI-style `tools` list, generated from `SKILL_SPECS`."""
    return [s.tool_schema() for s in SKILL_SPECS]


def predicates_prompt() -> str:
    return "\n".join(f"- {name}({', '.join(args)}): {meaning}" for name, (args, meaning) in PREDICATES.items())


@dataclass(frozen=True)
class SkillCall:
    """One call of a skill program: `name(*args, **kwargs)`, e.g. SkillCall("pick", ("red cube",)).

    Validated against the registry: the skill must exist and the arguments must bind to its
    parameters (ValueError otherwise)."""

    name: str
    args: tuple = field(default_factory=tuple)
    kwargs: tuple = field(default_factory=tuple)  # ((name, value), ...), hashable

    def __post_init__(self):
        if self.name not in _SPEC_BY_NAME:
            raise ValueError(f"unknown skill '{self.name}' (skills: {', '.join(SKILLS)})")
        spec = _SPEC_BY_NAME[self.name]
        names = [p.name for p in spec.params]
        given = list(names[: len(self.args)]) + [k for k, _ in self.kwargs]
        if len(self.args) > len(names) or len(set(given)) != len(given) or sorted(given) != sorted(names):
            raise ValueError(f"{self.name} takes ({', '.join(names)}); got {self.to_text()}")

    def to_text(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs]
        return f"{self.name}({', '.join(parts)})"

    def arguments(self) -> dict[str, Any]:
        """{parameter name: value} in the spec's order."""
        names = [p.name for p in _SPEC_BY_NAME[self.name].params]
        return {**dict(zip(names, self.args)), **dict(self.kwargs)}


def program_to_text(program: list[SkillCall]) -> str:
    return "\n".join(call.to_text() for call in program)


def parse_program(text: str) -> list[SkillCall]:
    """Parse `pick('red cube')` lines (a strict subset of Python: calls of known skills with string
    literal arguments). Anything else raises ValueError naming the line; nothing is executed.
    (The legacy flat-program format of `vlm-agent eval --suite manip`; Octopus code goes through
    `vlm_agent.skills.sandbox` instead.)"""
    calls = []
    for lineno, line in enumerate(text.strip().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            node = ast.parse(line, mode="eval").body
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise ValueError(f"line {lineno}: not a skill call: {line!r} ({exc})") from None
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
            raise ValueError(f"line {lineno}: expected skill(args...), got {line!r}")
        if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args):
            raise ValueError(f"line {lineno}: skill arguments must be string literals: {line!r}")
        try:
            calls.append(SkillCall(node.func.id, tuple(a.value for a in node.args)))
        except ValueError as exc:
            raise ValueError(f"line {lineno}: {exc}") from None
    return calls
