"""PaLM-E-style task planner (configuration_/modeling_/processing_palme.py)."""
from .configuration_palme import PalmeConfig

__all__ = ["PalmeConfig"]
