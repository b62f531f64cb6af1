"""The NaVid chat prompt used with general-purpose VLMs (transformers and remote backends).

The built-in model has its own token-level template (models/navid/processing_navid.py); chat models
get the same information in words: the instruction, which images are history, and the grammar.
`vlm-agent serve` reads the instruction back with `extract_instruction`.
"""
from __future__ import annotations

import re
import unicodedata

PROMPT_TEMPLATE = (
    "You are a wheeled robot following a navigation instruction.\n"
    "Instruction: {instruction}\n"
    "{history_note}The last image is your current camera view.\n"
    "Answer with 1 to 3 actions separated by commas, each exactly one of: move forward N cm, "
    "turn left N degrees, turn right N degrees, stop. Answer with the actions only."
)
_INSTRUCTION_RE = re.compile(r"^Instruction: (.+)$", re.MULTILINE)


def chat_prompt(instruction: str, n_history_images: int) -> str:
    note = f"The first {n_history_images} images are earlier views, oldest first. " if n_history_images else ""
    return PROMPT_TEMPLATE.format(instruction=instruction, history_note=note)


def extract_instruction(prompt: str) -> str:
    """The instruction inside a `chat_prompt` text, or the whole text when it has no such line."""
    m = _INSTRUCTION_RE.search(prompt)
    return (m.group(1) if m else prompt).strip()


def validate_instruction(instruction, max_chars: int = 500) -> str:
    """Return the stripped instruction or raise ValueError: not text, empty, too long, or containing
    control/format characters (newlines, NUL, zero-width and bidi overrides can smuggle prompt text)."""
    if not isinstance(instruction, str):
        raise ValueError(f"instruction must be a string, got {type(instruction).__name__}")
    text = instruction.strip()
    if not text:
        raise ValueError("instruction is empty")
    if len(text) > max_chars:
        raise ValueError(f"instruction is too long ({len(text)} > {max_chars} characters)")
    bad = sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn")})
    if bad:
        raise ValueError(f"instruction contains control or unassigned characters: {', '.join(bad[:5])}")
    return text
