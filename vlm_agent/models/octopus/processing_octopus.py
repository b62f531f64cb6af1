"""The Octopus processor: prompt text with `<img>` placeholders + images -> `input_ids`, `pixel_values`.

The same multimodal sentence as PaLM-E's (`vlm_agent.models.palme.processing_palme`), without the
state slot: each `<img>` becomes `grid_size ** 2` `<img>` tokens, text is tokenised with
special-token strings read as plain text (so "<state>" or "</s>" in a task is just characters), and
every malformed input raises `ValueError` with the reason.
"""
from __future__ import annotations

from ..palme.processing_palme import MultimodalSentenceProcessor


class OctopusProcessor(MultimodalSentenceProcessor):
    """Tokenizer + image processor + prompt layout of `OctopusModel` (saved with it)."""

    uses_state = False


__all__ = ["OctopusProcessor"]
