"""Strict, total parser of NaVid's action grammar.

    answer    := primitive (SEP primitive){0,2} [.]
    primitive := "move forward" N "cm" | "turn left" N ("degrees"|"degree") | "turn right" N (...) | "stop"
    SEP       := ("," | ";" | newline) [" then"] | " then " (with optional surrounding whitespace)
    N         := a decimal number, forward in (0, max_forward_cm], turns in (0, max_turn_deg]

Case and runs of whitespace are ignored; nothing else is. ", then" is one separator (general VLMs
write "move forward 50 cm, then turn left 30 degrees"); a "then" with no primitive after it is an
empty clause, rejected. *Total*: `parse_primitives` never raises; whatever it cannot read exactly
(empty text, a fourth primitive, an unknown word, a value out of range, anything after `stop`,
non-text input) becomes `[stop]` with the reason in `error`. We never guess a partial plan out of
garbage: a half-understood command is how a robot drives into a wall.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from vlm_agent.actions import NavPrimitive

MAX_TEXT_CHARS = 1000
_NUMBER = r"([0-9]{1,4}(?:\.[0-9]{1,3})?)"  # ASCII digits only: \d matches other scripts too
_PRIMITIVE_RES = (
    (re.compile(rf"move forward {_NUMBER} cm"), "forward"),
    (re.compile(rf"turn left {_NUMBER} degrees?"), "turn_left"),
    (re.compile(rf"turn right {_NUMBER} degrees?"), "turn_right"),
    (re.compile(r"stop"), "stop"),
)
_SEPARATORS = re.compile(r"\s*(?:[,;\n]\s*(?:then\b)?|\bthen\b)\s*")


@dataclass(frozen=True)
class ParseResult:
    """primitives: 1..max_primitives NavPrimitives ([stop] on failure); error: None or why it failed."""

    primitives: list[NavPrimitive] = field(default_factory=lambda: [NavPrimitive.stop()])
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _fail(reason: str) -> ParseResult:
    return ParseResult([NavPrimitive.stop()], reason)


def parse_primitives(text, max_primitives: int = 3, max_forward_cm: float = 100.0, max_turn_deg: float = 180.0) -> ParseResult:
    """Parse model text into primitives; never raises (see the module docstring for the grammar)."""
    try:
        return _parse(text, max_primitives, max_forward_cm, max_turn_deg)
    except Exception as exc:  # totality: a parser bug must still end in a stop, not a crash
        return _fail(f"internal parser error: {type(exc).__name__}: {exc}")


def _parse(text, max_primitives, max_forward_cm, max_turn_deg) -> ParseResult:
    if not isinstance(text, str):
        return _fail(f"model output is {type(text).__name__}, not text")
    if len(text) > MAX_TEXT_CHARS:
        return _fail(f"model output too long ({len(text)} > {MAX_TEXT_CHARS} characters)")
    # Only whitespace collapses; the separator set excludes other spacing characters on purpose.
    norm = re.sub(r"[ \t\r]+", " ", text.strip().lower())
    norm = re.sub(r" *\n *", "\n", norm)
    if norm.endswith("."):
        norm = norm[:-1].rstrip()
    if not norm:
        return _fail("empty model output")
    clauses = _SEPARATORS.split(norm)
    if len(clauses) > max_primitives:
        return _fail(f"{len(clauses)} primitives, more than the allowed {max_primitives}: {_quote(text)}")
    prims: list[NavPrimitive] = []
    for i, clause in enumerate(clauses):
        if prims and prims[-1].kind == "stop":
            return _fail(f"primitive after stop: {_quote(text)}")
        for regex, kind in _PRIMITIVE_RES:
            m = regex.fullmatch(clause)
            if m is None:
                continue
            if kind == "stop":
                prims.append(NavPrimitive.stop())
                break
            value = float(m.group(1))
            limit = max_forward_cm if kind == "forward" else max_turn_deg
            if not math.isfinite(value) or not 0 < value <= limit:
                return _fail(f"value {value:g} of '{clause}' outside (0, {limit:g}]")
            prims.append(NavPrimitive(kind, value))
            break
        else:
            return _fail(f"clause {i + 1} is not a primitive: {_quote(clause)}")
    return ParseResult(prims, None)


def _quote(text: str, limit: int = 80) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 3] + "..."
