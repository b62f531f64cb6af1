"""Embodied VLM core: vision tower -> projector -> causal LM over a multimodal sentence."""
from .configuration_embodied_vlm import EmbodiedVLMConfig

__all__ = ["EmbodiedVLMConfig"]
