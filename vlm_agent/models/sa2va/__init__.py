"""Sa2VA-style referring segmentation and tracking: embodied VLM + [SEG] + SAM 2 (configuration_/modeling_/processing_sa2va.py, tracking_sa2va.py)."""
from .configuration_sa2va import Sa2VAConfig

__all__ = ["Sa2VAConfig"]
