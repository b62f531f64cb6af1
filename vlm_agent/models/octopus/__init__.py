"""Octopus-style code planner (configuration_/modeling_/processing_octopus.py)."""
from .configuration_octopus import OctopusConfig

__all__ = ["OctopusConfig"]
