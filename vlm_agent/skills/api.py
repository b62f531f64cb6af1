"""The robot skill API that planners (PaLM-E plans, Octopus code) call, independent of the backend.

Objects are referred to the way instructions do: "red cube", "the blue plate", "table", or a scene
object name such as "obj_3". A skill returns a `SkillResult` (success flag + feedback text, which
Octopus-style planners put into the next round) and raises `SkillError` for calls that cannot run
(unknown object, unreachable, nothing held).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

SKILLS = ("navigate_to", "pick", "place_on", "open_gripper", "close_gripper")


class SkillError(RuntimeError):
    """A skill call that could not be executed; the message is feedback for the planner."""


@dataclass
class SkillResult:
    success: bool
    feedback: str = ""


@dataclass(frozen=True)
class SkillCall:
    """One call of a skill program: `name(*args)`, e.g. SkillCall("pick", ("red cube",))."""

    name: str
    args: tuple = field(default_factory=tuple)

    def __post_init__(self):
        if self.name not in SKILLS:
            raise ValueError(f"unknown skill '{self.name}' (skills: {', '.join(SKILLS)})")

    def to_text(self) -> str:
        return f"{self.name}({', '.join(repr(a) for a in self.args)})"


def program_to_text(program: list[SkillCall]) -> str:
    return "\n".join(call.to_text() for call in program)


def parse_program(text: str) -> list[SkillCall]:
    """Parse `pick('red cube')` lines (a strict subset of Python: calls of known skills with string
    literal arguments). Anything else raises ValueError naming the line; nothing is executed."""
    calls = []
    for lineno, line in enumerate(text.strip().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            node = ast.parse(line, mode="eval").body
        except SyntaxError as exc:
            raise ValueError(f"line {lineno}: not a skill call: {line!r} ({exc.msg})") from None
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
            raise ValueError(f"line {lineno}: expected skill(args...), got {line!r}")
        if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args):
            raise ValueError(f"line {lineno}: skill arguments must be string literals: {line!r}")
        calls.append(SkillCall(node.func.id, tuple(a.value for a in node.args)))
    return calls


class SkillAPI:
    """Abstract skill interface; `SimSkills` implements it on the embedded simulator, a ROS adapter
    (nodes/) on a robot."""

    def navigate_to(self, target: str) -> SkillResult:
        raise NotImplementedError

    def pick(self, target: str) -> SkillResult:
        raise NotImplementedError

    def place_on(self, target: str) -> SkillResult:
        raise NotImplementedError

    def open_gripper(self) -> SkillResult:
        raise NotImplementedError

    def close_gripper(self) -> SkillResult:
        raise NotImplementedError

    def execute(self, call: SkillCall) -> SkillResult:
        """Run one call; SkillError becomes a failed result with its message as feedback."""
        try:
            return getattr(self, call.name)(*call.args)
        except SkillError as exc:
            return SkillResult(False, f"{call.to_text()} failed: {exc}")
        except TypeError as exc:
            return SkillResult(False, f"{call.to_text()} failed: bad arguments ({exc})")

    def run_program(self, program: list[SkillCall]) -> list[SkillResult]:
        """Execute calls in order, stopping at the first failure."""
        results = []
        for call in program:
            results.append(self.execute(call))
            if not results[-1].success:
                break
        return results
