"""The PaLM-E-style step grammar: a numbered plan of skill calls, parsed strictly and totally.

    plan    := step ("\\n" step)*             blank lines and spaces around lines are ignored
    step    := INDEX "." " "+ SKILL "(" [ARG ("," ARG)*] ")"
    INDEX   := 1, 2, 3, ... in order, at most MAX_PLAN_STEPS
    SKILL   := a registered skill (vlm_agent.skills.api.SKILLS), with exactly its number of arguments
    ARG     := an object phrase: 1-60 characters from [A-Za-z0-9 _-], spaces around it ignored,
               optionally wrapped in matching '...' or "..." quotes

e.g.
    1. navigate_to(the red cube)
    2. pick(the red cube)
    3. navigate_to(blue plate)
    4. place_on(blue plate)

`parse_plan(text)` never raises: it returns a `PlanParse` whose `error` (a `PlanError` with the line,
the offending text and what was expected) is meant to be fed back to the model. `format_plan` is its
inverse on valid plans (`parse_plan(format_plan(steps)).steps == steps`). `grammar_text()` is the
prompt's description, generated from the skill registry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from vlm_agent.skills.api import SKILL_SPECS, SkillCall

MAX_PLAN_STEPS = 16
MAX_PLAN_CHARS = 4000
MAX_ARG_CHARS = 60
_STEP = re.compile(r"(\d{1,3})\.[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\((.*)\)")
_ARG = re.compile(r"[A-Za-z0-9 _-]{1,%d}" % MAX_ARG_CHARS)
_SPECS = {s.name: s for s in SKILL_SPECS}


@dataclass(frozen=True)
class PlanError:
    """Why a response is not a plan: 1-based `line` (0 for the whole response), the offending
    `text` (truncated) and `message`."""

    line: int
    text: str
    message: str

    def feedback(self) -> str:
        where = f"line {self.line} {self.text!r}: " if self.line else ""
        return f"could not parse the plan: {where}{self.message}"


@dataclass
class PlanParse:
    """`steps` (SkillCalls in order) when `error` is None; otherwise `steps` is empty."""

    steps: list[SkillCall] = field(default_factory=list)
    error: PlanError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def grammar_text() -> str:
    """The step grammar for a prompt, listing the registered skills with their arguments."""
    skills = ", ".join(f"{s.name}({', '.join('<' + p.name + '>' for p in s.params)})" for s in SKILL_SPECS)
    return (
        "Answer with a numbered plan, one step per line, exactly like\n"
        "1. navigate_to(the red cube)\n2. pick(the red cube)\n"
        f"Steps: {skills}. An <object> is named as in the instruction (letters, digits, spaces). "
        "Nothing else on any line."
    )


def format_plan(steps: list[SkillCall]) -> str:
    """Plan text for SkillCalls with positional object arguments (the parser's inverse)."""
    return "\n".join(f"{k}. {c.name}({', '.join(str(a) for a in c.args)})" for k, c in enumerate(steps, 1))


def parse_plan(text: str) -> PlanParse:
    """Strictly parse a numbered plan (grammar above); never raises."""
    if not isinstance(text, str):
        return PlanParse(error=PlanError(0, "", f"expected text, got {type(text).__name__}"))
    if len(text) > MAX_PLAN_CHARS:
        return PlanParse(error=PlanError(0, "", f"response too long ({len(text)} characters, limit {MAX_PLAN_CHARS})"))
    steps: list[SkillCall] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        shown = line[:80]
        m = _STEP.fullmatch(line)
        if m is None:
            return PlanParse(error=PlanError(lineno, shown, "expected '<n>. <skill>(<object>)', e.g. '1. pick(the red cube)'"))
        index, name, arg_text = int(m.group(1)), m.group(2), m.group(3)
        if index != len(steps) + 1:
            return PlanParse(error=PlanError(lineno, shown, f"expected step number {len(steps) + 1}, got {index}"))
        if len(steps) >= MAX_PLAN_STEPS:
            return PlanParse(error=PlanError(lineno, shown, f"more than {MAX_PLAN_STEPS} steps"))
        spec = _SPECS.get(name)
        if spec is None:
            return PlanParse(error=PlanError(lineno, shown, f"unknown skill '{name}' (skills: {', '.join(_SPECS)})"))
        args, problem = _parse_args(arg_text)
        if problem:
            return PlanParse(error=PlanError(lineno, shown, problem))
        if len(args) != spec.arity:
            return PlanParse(error=PlanError(lineno, shown, f"{spec.signature()} takes {spec.arity} argument(s), got {len(args)}"))
        steps.append(SkillCall(name, tuple(args)))
    if not steps:
        return PlanParse(error=PlanError(0, "", "no steps: expected at least one line '1. <skill>(<object>)'"))
    return PlanParse(steps)


def _parse_args(text: str) -> tuple[list[str], str | None]:
    if not text.strip():
        return [], None
    args = []
    for part in text.split(","):
        part = part.strip()
        if len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"":
            part = part[1:-1].strip()
        if not _ARG.fullmatch(part) or not part.strip(" _-"):
            return [], f"bad object name {part[:40]!r}: use 1-{MAX_ARG_CHARS} letters, digits, spaces, '-' or '_'"
        args.append(part)
    return args, None
