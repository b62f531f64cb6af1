"""NaVid-style video navigation model (configuration_/modeling_/processing_navid.py)."""
from .configuration_navid import NavidConfig

__all__ = ["NavidConfig"]
