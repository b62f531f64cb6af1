"""Has the navigator seen its goal yet? `GoalSightings`, the check behind `NavidPlanner`'s stop gate.

A learnt navigator's most common failure is a `stop` before it has ever seen the goal: on
`navid_map`'s val seed 1, 31 of 58 failed episodes never had 2 goal pixels in any frame, and most
of them still ended with a stop, often beside an object of the goal's colour or shape
(`benchmarks/navid_failure_modes.py`). The explorer expert the model imitates never stops before it
has seen the goal; the model cannot remember whether it has.

`GoalSightings.sees_goal(rgb, instruction)` asks the referring segmenter for the instruction's goal
object in the frame and the attribute verifier whether the mask shows it (`skills.verification`).
The planner asks on every plan until the answer is yes once, and refuses a `stop` until then
(`NavidPlannerConfig.stop_gate`).

The goal phrase is the instruction's "<colour> <shape>" pair in the verifier's vocabulary: the first
one, or for a sequence ("first ... then ...", "... and finish at ...") the last one. An instruction
naming none cannot be checked, and its stops pass.
"""
from __future__ import annotations

import numpy as np


class GoalSightings:
    """Segmenter + attribute verifier on a navigator's frames (module docstring). `segmenter` /
    `verifier` inject ready objects (tests); otherwise they load from `segmenter_dir` (default
    `checkpoints/sa2va_nano`) and `verifier_dir` (default `checkpoints/attribute_verifier`)."""

    def __init__(self, segmenter_dir: str = "", verifier_dir: str = "", min_match: float = 0.3, device: str = "cpu",
                 segmenter=None, verifier=None):
        from vlm_agent.skills.verification import AttributeVerifier, VerifiedSegmenter

        if segmenter is None:
            from vlm_agent.skills.segmentation import Sa2VASegmenter

            segmenter = Sa2VASegmenter(segmenter_dir or None, device=device)
        self.segmenter = segmenter
        self.verifier = verifier if verifier is not None else AttributeVerifier(verifier_dir or None, device=device, min_match=min_match)
        self._verified = VerifiedSegmenter(segmenter, self.verifier)  # the skills' segment-then-verify

    def goal_spec(self, instruction: str):
        """The instruction's goals in the verifier's vocabulary (`goal_approach.instruction_goals`)."""
        from vlm_agent.planners.goal_approach import instruction_goals

        cfg = self.verifier.model.config
        return instruction_goals(instruction, cfg.colours, cfg.shapes)

    def goal_phrase(self, instruction: str) -> str | None:
        """'the <colour> <shape>' of the instruction's (last) goal (module docstring), or None."""
        phrases = self.goal_spec(instruction).phrases
        return phrases[-1] if phrases else None

    def find_goal(self, rgb: np.ndarray, phrase: str) -> tuple[np.ndarray | None, str, float]:
        """(the (H, W) bool mask of `phrase` in the frame if segmented and verified, else None; why;
        the verifier's match in [0, 1], 0 when nothing was segmented)."""
        self._verified.reset(phrase)
        result = self._verified.step(np.asarray(rgb, np.uint8))
        verdict = result.extra.get("verifier") if result.extra else None
        if "rejected" in (result.extra or {}):
            return None, result.extra["rejected"], float(verdict["match"])
        mask = np.asarray(result.mask, bool) if result.mask is not None else None
        if mask is None or not mask.any():
            return None, f"the segmenter marks no '{phrase}' in view", 0.0
        match = float(verdict["match"]) if verdict else 1.0
        return mask, f"'{phrase}' in view (match {match:.2f})", match

    def sees_goal(self, rgb: np.ndarray, phrase: str) -> tuple[bool, str]:
        """(whether `phrase` is in the frame, segmented and verified; why)."""
        mask, why, _ = self.find_goal(rgb, phrase)
        return mask is not None, why


__all__ = ["GoalSightings"]
