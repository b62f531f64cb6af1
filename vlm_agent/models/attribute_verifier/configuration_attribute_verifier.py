"""Configuration of the attribute verifier: a small CNN that reads a crop around a mask (RGB + the
mask as a fourth channel) and gives a distribution over colour words and one over shape words.

Why it exists: a referring segmenter that is asked for "the red cube" and sees no red cube puts its
mask on what is closest, most often a red object of another shape (sa2va_nano v5, PaLM-E test100:
30 of 35 wrong first sightings). Telling shapes apart is easy for a classifier that looks at one
object, centred and scaled, and hard for a segmenter that binds words to a whole frame at 32 x 32.
The verifier's vocabulary (`colours`, `shapes`) is part of the checkpoint: a query that names none
of its words is not checked (`processing_attribute_verifier.AttributeVerifierProcessor.attributes`).
"""
from __future__ import annotations

from transformers import PretrainedConfig


class AttributeVerifierConfig(PretrainedConfig):
    """colours / shapes: the words each head scores (shapes may end with "other": not an object);
    crop_size: the crop's side in pixels; context: the crop's side as a multiple of the mask's longer
    bounding-box side; min_crop_px: the smallest crop side in source pixels (a 3 px mask still gets
    its surroundings); channels / colour_channels: widths of the shape and the colour trunk's stages
    (each stage halves the resolution after the first)."""

    model_type = "attribute_verifier"

    def __init__(self, colours=("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white"),
                 shapes=("cube", "ball", "cylinder", "plate", "other"), crop_size: int = 32, context: float = 1.6,
                 min_crop_px: int = 12, channels=(32, 64, 96, 128), colour_channels=(16, 32), **kwargs):
        self.colours = list(colours)
        self.shapes = list(shapes)
        self.crop_size = int(crop_size)
        self.context = float(context)
        self.min_crop_px = int(min_crop_px)
        self.channels = list(channels)
        self.colour_channels = list(colour_channels)
        if len(set(self.colours)) != len(self.colours) or len(set(self.shapes)) != len(self.shapes):
            raise ValueError("colour and shape words must be unique")
        if not self.colours or not self.shapes or not self.channels or not self.colour_channels:
            raise ValueError("colours, shapes, channels and colour_channels must not be empty")
        if self.crop_size < 8 or self.context < 1.0 or self.min_crop_px < 1:
            raise ValueError("crop_size >= 8, context >= 1 and min_crop_px >= 1 are required")
        super().__init__(**kwargs)


__all__ = ["AttributeVerifierConfig"]
