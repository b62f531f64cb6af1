"""The Octopus-style response: Explanation, Subtasks, Code, Target state; parsed strictly and totally.

    Explanation:
    <one or more lines of free text>
    Subtasks:
    1. <one line of text>                 numbered 1, 2, ... in order ("(1) text" is accepted too)
    Code:
    ```python
    def act(robot):
        ...                                the sandbox's language (vlm_agent.skills.sandbox)
    ```
    Target state:
    1. on(the red cube, the blue plate)    numbered predicates from vlm_agent.skills.api.PREDICATES,
    2. holding(nothing)                    arguments are object phrases as in the plan grammar

Each header stands on its own line, exactly once and in this order; markdown decoration is
tolerated ("## Code", "**Target state:**"), case is ignored. The Code section holds exactly one
fenced block (``` or ```python) and nothing else. Whether the code is an allowed program is the
sandbox's call (`check_program`), not the parser's.

`parse_response(text)` never raises: it returns an `OctopusParse` with either the `OctopusResponse`
or every problem found (`errors`, each naming the section), and `feedback()` renders those for the
next round. `format_response` is its inverse on valid responses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from vlm_agent.skills.api import PREDICATES, predicates_prompt, skills_prompt

SECTIONS = ("Explanation", "Subtasks", "Code", "Target state")
MAX_RESPONSE_CHARS = 20_000
MAX_SUBTASKS = 20
MAX_TARGETS = 10
_HEADER = re.compile(r"[#*\s]*(explanation|subtasks|code|target[ \t]+state)[ \t]*\**[ \t]*:?[ \t]*\**[ \t]*", re.IGNORECASE)
_NUMBERED = re.compile(r"(?:(\d{1,3})\.|\((\d{1,3})\))[ \t]+(\S.*)")
_PREDICATE = re.compile(r"([a-z_]+)[ \t]*\((.*)\)")
_ARG = re.compile(r"[A-Za-z0-9 _-]{1,60}")
_FENCE_OPEN = re.compile(r"```[ \t]*(python|py)?[ \t]*", re.IGNORECASE)


@dataclass(frozen=True)
class TargetPredicate:
    """One target-state condition, e.g. TargetPredicate("on", ("the red cube", "the blue plate"))."""

    name: str
    args: tuple[str, ...] = ()

    def to_text(self) -> str:
        return f"{self.name}({', '.join(self.args)})"


@dataclass(frozen=True)
class OctopusResponse:
    explanation: str
    subtasks: tuple[str, ...]
    code: str  # the program text without fences, ending with a newline
    target_state: tuple[TargetPredicate, ...]


@dataclass
class OctopusParse:
    response: OctopusResponse | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.response is not None

    def feedback(self) -> str:
        return "could not parse the response: " + "; ".join(self.errors) if self.errors else ""


def format_instructions() -> str:
    """The response format for a prompt, with the skills and predicates from the registry."""
    return (
        "Answer in four sections, each header on its own line:\n"
        "Explanation:\n<what you see and why the plan works>\n"
        "Subtasks:\n1. <subtask>\n2. <subtask>\n"
        "Code:\n```python\ndef act(robot):\n    robot.navigate_to(\"the red cube\")\n    ...\n```\n"
        "Target state:\n1. on(the red cube, the blue plate)\n"
        "The code may only call the skills as robot.<skill>(...), use literals, local variables, if, for over "
        "range(<number>) or a list literal, comparisons and boolean logic; nothing else (no imports, no "
        "attribute access, no while).\nSkills:\n" + skills_prompt() + "\nTarget-state predicates:\n" + predicates_prompt()
    )


def format_response(response: OctopusResponse) -> str:
    code = response.code if response.code.endswith("\n") else response.code + "\n"
    return (
        f"Explanation:\n{response.explanation}\n"
        "Subtasks:\n" + "".join(f"{k}. {s}\n" for k, s in enumerate(response.subtasks, 1))
        + f"Code:\n```python\n{code}```\n"
        "Target state:\n" + "".join(f"{k}. {p.to_text()}\n" for k, p in enumerate(response.target_state, 1))
    )


def parse_response(text: str) -> OctopusParse:
    """Strictly parse an Octopus-style response (format above); never raises."""
    if not isinstance(text, str):
        return OctopusParse(errors=[f"expected text, got {type(text).__name__}"])
    if len(text) > MAX_RESPONSE_CHARS:
        return OctopusParse(errors=[f"response too long ({len(text)} characters, limit {MAX_RESPONSE_CHARS})"])
    lines = text.splitlines()
    headers: list[tuple[int, str]] = []
    in_fence = False
    for i, line in enumerate(lines):
        if line.strip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else _HEADER.fullmatch(line)
        if m:
            headers.append((i, _section_name(m.group(1))))
    errors = []
    names = [h[1] for h in headers]
    for section in SECTIONS:
        if names.count(section) != 1:
            errors.append(f"section '{section}:' must appear exactly once (found {names.count(section)})")
    if errors:
        return OctopusParse(errors=errors)
    if names != list(SECTIONS):
        return OctopusParse(errors=[f"sections must come in the order {', '.join(SECTIONS)}; got {', '.join(names)}"])
    if any(line.strip() for line in lines[: headers[0][0]]):
        errors.append("text before 'Explanation:'")
    bodies = {}
    for k, (start, name) in enumerate(headers):
        end = headers[k + 1][0] if k + 1 < len(headers) else len(lines)
        bodies[name] = lines[start + 1 : end]
    explanation = "\n".join(bodies["Explanation"]).strip()
    if not explanation:
        errors.append("Explanation: empty")
    subtasks = _numbered(bodies["Subtasks"], "Subtasks", MAX_SUBTASKS, errors)
    code = _code(bodies["Code"], errors)
    targets = []
    for item in _numbered(bodies["Target state"], "Target state", MAX_TARGETS, errors):
        pred = _predicate(item, errors)
        if pred is not None:
            targets.append(pred)
    if errors:
        return OctopusParse(errors=errors)
    return OctopusParse(OctopusResponse(explanation, tuple(subtasks), code, tuple(targets)))


def _section_name(word: str) -> str:
    word = " ".join(word.lower().split())
    return {"explanation": "Explanation", "subtasks": "Subtasks", "code": "Code", "target state": "Target state"}[word]


def _numbered(body: list[str], section: str, limit: int, errors: list[str]) -> list[str]:
    items = []
    for line in body:
        line = line.strip()
        if not line:
            continue
        m = _NUMBERED.fullmatch(line)
        if m is None:
            errors.append(f"{section}: expected '<n>. <text>', got {line[:60]!r}")
            return []
        n = int(m.group(1) or m.group(2))
        if n != len(items) + 1:
            errors.append(f"{section}: expected item {len(items) + 1}, got {n}")
            return []
        if len(items) >= limit:
            errors.append(f"{section}: more than {limit} items")
            return []
        items.append(m.group(3).strip())
    if not items:
        errors.append(f"{section}: no items")
    return items


def _code(body: list[str], errors: list[str]) -> str:
    content = [(i, line) for i, line in enumerate(body) if line.strip()]
    if len(content) < 2 or not _FENCE_OPEN.fullmatch(content[0][1].strip()) or content[-1][1].strip() != "```":
        errors.append("Code: expected one ```python ... ``` block and nothing else")
        return ""
    inner = body[content[0][0] + 1 : content[-1][0]]
    if any(line.strip().startswith("```") for line in inner):
        errors.append("Code: more than one fenced block")
        return ""
    code = "\n".join(inner).strip("\n")
    if not code.strip():
        errors.append("Code: the block is empty")
        return ""
    return code + "\n"


def _predicate(item: str, errors: list[str]) -> TargetPredicate | None:
    m = _PREDICATE.fullmatch(item.strip())
    if m is None or m.group(1) not in PREDICATES:
        errors.append(f"Target state: expected one of {', '.join(p + '(...)' for p in PREDICATES)}, got {item[:60]!r}")
        return None
    name, arg_text = m.group(1), m.group(2)
    args = [a.strip() for a in arg_text.split(",")] if arg_text.strip() else []
    arity = len(PREDICATES[name][0])
    if len(args) != arity:
        errors.append(f"Target state: {name} takes {arity} argument(s), got {len(args)} in {item[:60]!r}")
        return None
    for a in args:
        if not _ARG.fullmatch(a) or not a.strip(" _-"):
            errors.append(f"Target state: bad object name {a[:40]!r} in {item[:60]!r}")
            return None
    return TargetPredicate(name, tuple(args))
