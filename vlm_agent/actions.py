"""The action vocabulary: NaVid-style navigation primitives, shared by the simulator, its experts,
the models, the planners, the motion executor and training (bottom layer: imports nothing of ours).

Grammar (what models emit): `move forward N cm | turn left N degrees | turn right N degrees | stop`.
The parser lives with the planner (`planners/navid_grammar.py`); this module only defines the value
type and the discrete action set. Units: forward in centimetres, turns in degrees (positive, the
direction is in `kind`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

FORWARD_STEP_CM = 25.0
TURN_STEP_DEG = 30.0
KINDS = ("forward", "turn_left", "turn_right", "stop")


@dataclass(frozen=True)
class NavPrimitive:
    """One navigation primitive: kind in KINDS; value in cm (forward) or degrees (turns); 0 for stop."""

    kind: str
    value: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"NavPrimitive.kind: '{self.kind}' is not one of {KINDS}")
        if not math.isfinite(self.value) or self.value < 0:
            raise ValueError(f"NavPrimitive.value: must be finite and >= 0, got {self.value}")
        if self.kind == "stop" and self.value != 0:
            raise ValueError("NavPrimitive.value: stop takes no value")

    @classmethod
    def forward(cls, cm: float = FORWARD_STEP_CM) -> "NavPrimitive":
        return cls("forward", float(cm))

    @classmethod
    def turn_left(cls, degrees: float = TURN_STEP_DEG) -> "NavPrimitive":
        return cls("turn_left", float(degrees))

    @classmethod
    def turn_right(cls, degrees: float = TURN_STEP_DEG) -> "NavPrimitive":
        return cls("turn_right", float(degrees))

    @classmethod
    def stop(cls) -> "NavPrimitive":
        return cls("stop")

    @property
    def distance_m(self) -> float:
        """Signed travel in metres along base_link +x (0 for turns and stop)."""
        return self.value / 100.0 if self.kind == "forward" else 0.0

    @property
    def yaw_rad(self) -> float:
        """Signed rotation in radians about base_link +z, counter-clockwise positive (REP-103)."""
        if self.kind == "turn_left":
            return math.radians(self.value)
        if self.kind == "turn_right":
            return -math.radians(self.value)
        return 0.0

    def to_text(self) -> str:
        """The grammar's surface form, e.g. 'move forward 25 cm'."""
        if self.kind == "forward":
            return f"move forward {self.value:g} cm"
        if self.kind == "stop":
            return "stop"
        return f"turn {'left' if self.kind == 'turn_left' else 'right'} {self.value:g} degrees"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> "NavPrimitive":
        return cls(str(d["kind"]), float(d.get("value", 0.0)))


# The discrete action set: one default step of each kind. The index is the class label of training
# shards (`actions` column) and of the model's auxiliary expert-action head.
ACTIONS = (NavPrimitive.forward(), NavPrimitive.turn_left(), NavPrimitive.turn_right(), NavPrimitive.stop())
ACTION_INDEX = {(a.kind, a.value): i for i, a in enumerate(ACTIONS)}
