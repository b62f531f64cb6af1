"""A navigator's `stop`, checked against a look-alike: `StopChecker`.

A learnt navigator's most common failure is a `stop` beside an object of the named colour in another
shape (`checkpoints/navid_map/MODEL_CARD.md`: four of five failed val episodes looked at). The
checker asks the referring segmenter for the instruction's goal object in the current frame and the
attribute verifier whether the mask shows it (`skills.verification`). It refuses a stop only on
positive evidence: the segmenter marked something and the verifier says it is not what the goal
phrase names. An empty mask (nothing like it in view) or an accepted one lets the stop through, so a
segmenter that misses the goal cannot keep the robot from stopping at it.

The goal phrase is the instruction's "<colour> <shape>" pair in the verifier's vocabulary: the first
one, or for a sequence ("first ... then ...", "... and finish at ...") the last one. An instruction
naming none passes unchecked.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

SEQUENCE_WORDS = ("then", "finish", "first")


@dataclass
class StopVerdict:
    """refuse: the stop should not be executed; reason: why (or why it passes); phrase: what was checked."""

    refuse: bool
    reason: str
    phrase: str | None = None


class StopChecker:
    """Segmenter + attribute verifier on the frame a stop was planned from (module docstring).
    `segmenter` / `verifier` inject ready objects (tests); otherwise they load from `segmenter_dir`
    (default `checkpoints/sa2va_nano`) and `verifier_dir` (default `checkpoints/attribute_verifier`)."""

    def __init__(self, segmenter_dir: str = "", verifier_dir: str = "", min_match: float = 0.3, device: str = "cpu",
                 segmenter=None, verifier=None):
        from vlm_agent.skills.verification import AttributeVerifier

        if segmenter is None:
            from vlm_agent.skills.segmentation import Sa2VASegmenter

            segmenter = Sa2VASegmenter(segmenter_dir or None, device=device)
        self.segmenter = segmenter
        self.verifier = verifier if verifier is not None else AttributeVerifier(verifier_dir or None, device=device, min_match=min_match)

    def goal_phrase(self, instruction: str) -> str | None:
        """'the <colour> <shape>' of the instruction's goal (module docstring), or None."""
        cfg = self.verifier.model.config
        words = re.findall(r"[a-z]+", instruction.lower())
        pairs = [f"{a} {b}" for a, b in zip(words, words[1:]) if a in cfg.colours and b in cfg.shapes and b != "other"]
        if not pairs:
            return None
        return "the " + (pairs[-1] if any(w in SEQUENCE_WORDS for w in words) else pairs[0])

    def check(self, rgb: np.ndarray, instruction: str) -> StopVerdict:
        phrase = self.goal_phrase(instruction)
        if phrase is None:
            return StopVerdict(False, "the instruction names no colour and shape the verifier knows")
        self.segmenter.reset(phrase)
        result = self.segmenter.step(np.asarray(rgb, np.uint8))
        mask = np.asarray(result.mask, bool) if result.mask is not None else None
        if mask is None or not mask.any():
            return StopVerdict(False, f"the segmenter marks no '{phrase}' in view", phrase)
        verdict = self.verifier.check(rgb, mask, phrase)
        if verdict.accepted:
            return StopVerdict(False, f"'{phrase}' in view (match {verdict.match:.2f})", phrase)
        return StopVerdict(True, f"stop check: {verdict.reason}", phrase)


__all__ = ["StopChecker", "StopVerdict"]
