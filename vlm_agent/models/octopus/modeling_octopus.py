"""Octopus-style code planner on the embodied core: images + task prompt -> response text.

    image (3, S, S) -> vision tower -> projector -> grid**2 `<img>` embeddings
    <s> <img>*N "Robot: ..." "Task: ..." "Feedback on an earlier attempt ..." -> causal LM (greedy)
        -> "Explanation: ... Subtasks: ... Code: ```python def act(robot): ...``` Target state: ..."

The core does everything (placeholder filling, `generate()`); the family fixes the prompt layout
(`OctopusProcessor`) and the limits (`OctopusConfig`). Decoding is greedy `generate()`, not
constrained: a program is open-ended text, and what matters about it (does it parse, does the
sandbox allow it, does it reach the target state) is judged after decoding by the strict parser, the
sandbox and the environment, whose feedback goes into the next round (Octopus's RLEF loop).
The generated code never runs except through `vlm_agent.skills.sandbox.run_program`.
"""
from __future__ import annotations

from ..embodied_vlm.modeling_embodied_vlm import EmbodiedVLMModel
from .configuration_octopus import OctopusConfig


class OctopusModel(EmbodiedVLMModel):
    config_class = OctopusConfig
    config: OctopusConfig
