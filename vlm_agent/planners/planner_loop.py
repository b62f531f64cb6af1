"""Planning-loop state machine and the plan / executor-state message formats (plain Python, no ROS).

The loop between a planner (NaVid-style model), the motion executor and the robot:

    instruction -> [plan from the newest frame] -> plan published -> executor runs it
         ^                                                                |
         +--------- executor reports done/aborted for that plan <---------+

`PlannerLoop` decides *when* to call the model and what to publish; the node runs the model on a
worker thread and feeds the outcome back. It never calls the model itself, so every rule here is
unit-testable with plain values:

* a new instruction starts an episode (the caller resets the model; a bad instruction leaves the loop
  idle with the reason, nothing moves);
* one model call at a time; the next plan is requested only after the executor reports the last
  plan `done` (not by `stop`) or `aborted`;
* the model raising, timing out, or producing unparsable text publishes a **stop plan** carrying
  the error, and the episode ends (robot stopped, node alive, a new instruction starts over);
* a plan containing `stop`, `max_steps` plans, or `max_consecutive_aborts` aborted plans in a row
  end the episode;
* **blocked moves are not repeated** (issue 11): when the executor aborts a forward move because the
  safety supervisor blocked it (reason starting with `BLOCKED_PREFIX`, e.g. "blocked by safety
  supervisor: blocked by obstacle at 0.31 m ... (during 'move forward 25 cm')"), forward is *blocked*
  until the robot has turned (a plan with a turn completed) or the episode restarts. While blocked,
  a model plan that starts with `move forward` is rewritten before it is published: the leading
  forward moves are dropped when the plan turns later (the model's own turn direction), otherwise
  the plan becomes `turn left 30 degrees`. The rewrite is recorded in `rewrites` and the reason in
  `blocked_reason` (the node logs both and reports them on /diagnostics). So a robot facing a wall
  turns away at once instead of asking for the same move until the abort limit ends the episode.

Wire formats (std_msgs/String JSON), shared with the motion executor and the ROS eval client:

* plan: `{"plan_id": int, "instruction": str, "step": int, "raw_text": str,
  "primitives": [{"kind": str, "value": float}], "latency_s": float, "error": str|null}`, plus the
  optional `"frame_stamp_s": float` (stamp of the frame the plan was made from)
* executor state: `{"plan_id": int, "state": "idle|executing|done|aborted", "reason": str}`
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from vlm_agent.actions import NavPrimitive

# The executor's abort reason when the safety supervisor blocked the running primitive.
BLOCKED_PREFIX = "blocked by safety supervisor: "
MAX_MESSAGE_CHARS = 65536  # a plan is a few hundred bytes; anything huge is hostile or broken
EXECUTOR_STATES = ("idle", "executing", "done", "aborted")


# -- wire formats ------------------------------------------------------------------------------
def _loads_object(text) -> dict:
    if not isinstance(text, str):
        raise ValueError(f"message is {type(text).__name__}, not text")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValueError(f"message too long ({len(text)} > {MAX_MESSAGE_CHARS} characters)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        # '[[[[...' of a few kilobytes exhausts the decoder's recursion limit: hostile, not a crash.
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _field(data: dict, key: str, types, optional: bool = False):
    if key not in data:
        if optional:
            return None
        raise ValueError(f"missing field '{key}'")
    value = data[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, types):
        raise ValueError(f"field '{key}': expected {getattr(types, '__name__', types)}, got {type(value).__name__}")
    return value


def _optional_float(data: dict, key: str) -> float | None:
    value = _field(data, key, (int, float), optional=True)
    if value is not None and not math.isfinite(value):
        raise ValueError(f"field '{key}': must be finite")
    return None if value is None else float(value)


@dataclass(frozen=True)
class PlanMessage:
    """One plan on `/vlm_agent/plan`; see the module docstring for the JSON form.

    `step` counts plans within the episode (0-based); `latency_s` is the model call's wall time;
    `frame_stamp_s` (optional, an addition to the contract) is the header stamp of the camera frame the
    plan was made from, for tracing frame-to-motion latency.
    """

    plan_id: int
    instruction: str
    step: int
    raw_text: str
    primitives: tuple[NavPrimitive, ...]
    latency_s: float = 0.0
    error: str | None = None
    frame_stamp_s: float | None = None

    def to_json(self) -> str:
        data = {
            "plan_id": self.plan_id,
            "instruction": self.instruction,
            "step": self.step,
            "raw_text": self.raw_text,
            "primitives": [p.to_dict() for p in self.primitives],
            "latency_s": self.latency_s,
            "error": self.error,
        }
        if self.frame_stamp_s is not None:
            data["frame_stamp_s"] = self.frame_stamp_s
        return json.dumps(data)

    @classmethod
    def from_json(cls, text) -> "PlanMessage":
        """Strict parse; raises ValueError naming the problem (the executor logs it and stays stopped)."""
        data = _loads_object(text)
        plan_id = _field(data, "plan_id", int)
        step = _field(data, "step", int)
        raw_prims = _field(data, "primitives", list)
        primitives = []
        for i, item in enumerate(raw_prims):
            if not isinstance(item, dict) or "kind" not in item:
                raise ValueError(f"primitives[{i}]: expected an object with 'kind', got {item!r:.80}")
            value = item.get("value", 0.0)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"primitives[{i}].value: expected a number, got {value!r:.40}")
            try:
                primitives.append(NavPrimitive(str(item["kind"]), float(value)))
            except ValueError as exc:
                raise ValueError(f"primitives[{i}]: {exc}") from None
        latency = _field(data, "latency_s", (int, float), optional=True)
        latency = 0.0 if latency is None else float(latency)
        if not math.isfinite(latency):
            raise ValueError("field 'latency_s': must be finite")
        return cls(
            plan_id=plan_id,
            instruction=_field(data, "instruction", str, optional=True) or "",
            step=step,
            raw_text=_field(data, "raw_text", str, optional=True) or "",
            primitives=tuple(primitives),
            latency_s=latency,
            error=_field(data, "error", str, optional=True),
            frame_stamp_s=_optional_float(data, "frame_stamp_s"),
        )


@dataclass(frozen=True)
class ExecutorState:
    """The executor's report on `/vlm_agent/executor/state` (latched)."""

    plan_id: int
    state: str
    reason: str = ""

    def __post_init__(self):
        if self.state not in EXECUTOR_STATES:
            raise ValueError(f"state: '{self.state}' is not one of {EXECUTOR_STATES}")

    def to_json(self) -> str:
        return json.dumps({"plan_id": self.plan_id, "state": self.state, "reason": self.reason})

    @classmethod
    def from_json(cls, text) -> "ExecutorState":
        data = _loads_object(text)
        return cls(_field(data, "plan_id", int), _field(data, "state", str), _field(data, "reason", str, optional=True) or "")


# -- the loop ----------------------------------------------------------------------------------
IDLE = "idle"  # no episode
READY = "ready"  # episode running, a plan is wanted
PLANNING = "planning"  # a model call is in flight
WAITING = "waiting"  # plan published, waiting for the executor
FINISHED = "finished"  # episode over (stop, error, step limit); waits for a new instruction


@dataclass
class PlanRequest:
    """What the node must do: run the model for `step` of `instruction` (plan id `plan_id`)."""

    plan_id: int
    step: int
    instruction: str


@dataclass
class PlannerLoop:
    """When to plan, and what to publish. Times are seconds on any monotonic clock.

    Args:
        max_steps: plans per episode before a forced stop plan (bounds a wandering model).
        max_consecutive_aborts: aborted plans in a row before the episode ends (a blocked robot).
    """

    max_steps: int = 100
    max_consecutive_aborts: int = 3
    state: str = IDLE
    instruction: str = ""
    step: int = 0
    last_plan_id: int = 0
    in_flight: PlanRequest | None = None
    finish_reason: str = ""
    aborts_in_row: int = 0
    episode: int = 0
    stale_call: bool = False  # the call in flight belongs to a replaced episode
    history: list[dict] = field(default_factory=list)  # short log of (plan_id, state, reason)
    blocked_reason: str = ""  # non-empty: forward is blocked (the supervisor's reason) until the robot turns
    rewrites: int = 0  # plans rewritten by the blocked-move rule
    _published: dict = field(default_factory=dict)  # plan_id -> primitives of the last plan we published

    def start_episode(self, instruction: str) -> None:
        """A validated instruction (the caller's model `reset` accepted it) starts a new episode.

        A call still in flight from the old episode is kept in `in_flight` so its late result is
        recognised and discarded.
        """
        self.episode += 1
        self.instruction = instruction
        self.step = 0
        self.aborts_in_row = 0
        self.blocked_reason = ""
        self.finish_reason = ""
        self.state = READY if self.in_flight is None else PLANNING
        self.stale_call = self.in_flight is not None

    def reject_instruction(self, instruction: str, reason: str) -> PlanMessage:
        """The instruction was refused: any running episode ends, and the returned stop plan (with
        the reason as its error) makes sure nothing moves."""
        self.stale_call = self.in_flight is not None
        self.state = IDLE
        self.instruction = ""
        self.finish_reason = f"instruction rejected: {reason}"
        self.last_plan_id += 1
        return PlanMessage(self.last_plan_id, instruction[:200], 0, "", (NavPrimitive.stop(),), 0.0, self.finish_reason)

    def next_request(self, have_frame: bool) -> PlanRequest | None:
        """A model call to make now, or None (nothing wanted, no frame yet, or a call in flight)."""
        if self.state != READY or not have_frame or self.in_flight is not None:
            return None
        if self.step >= self.max_steps:
            return None
        self.last_plan_id += 1
        self.in_flight = PlanRequest(self.last_plan_id, self.step, self.instruction)
        self.state = PLANNING
        return self.in_flight

    def step_limit_plan(self) -> PlanMessage | None:
        """The stop plan to publish when the episode has used `max_steps` plans, else None."""
        if self.state != READY or self.step < self.max_steps or self.in_flight is not None:
            return None
        self.last_plan_id += 1
        return self._finish_with(
            PlanMessage(self.last_plan_id, self.instruction, self.step, "", (NavPrimitive.stop(),), 0.0, f"step limit {self.max_steps} reached")
        )

    def on_result(self, request: PlanRequest, raw_text: str, primitives, latency_s: float, error: str | None) -> PlanMessage | None:
        """The model call for `request` finished. Returns the plan to publish (None for a stale call)."""
        if self.in_flight is None or request.plan_id != self.in_flight.plan_id:
            return None
        self.in_flight = None
        if self.stale_call:
            # The result belongs to an episode the user has replaced: drop it, plan the new one.
            self.stale_call = False
            if self.state == PLANNING:
                self.state = READY
            return None
        prims = tuple(primitives or ())
        if error is not None or not prims:
            prims = (NavPrimitive.stop(),)
            error = error or "model returned no primitives"
        if error is None and self.blocked_reason:
            prims = avoid_blocked_forward(prims)
            if prims != tuple(primitives):
                self.rewrites += 1
        plan = PlanMessage(request.plan_id, request.instruction, request.step, raw_text or "", prims, float(latency_s), error)
        self._published = {plan.plan_id: prims}
        self.step += 1
        if any(p.kind == "stop" for p in prims):
            return self._finish_with(plan)
        self.state = WAITING
        return plan

    def on_failure(self, request: PlanRequest, error: str, latency_s: float = 0.0) -> PlanMessage | None:
        """The model raised or timed out: a stop plan with the error (None for a stale call)."""
        return self.on_result(request, "", (NavPrimitive.stop(),), latency_s, error)

    def on_executor_state(self, state: ExecutorState) -> None:
        """Executor report; only reports about our last published plan move the loop on."""
        self.history = (self.history + [{"plan_id": state.plan_id, "state": state.state, "reason": state.reason}])[-20:]
        if self.state != WAITING or state.plan_id != self.last_plan_id:
            return
        if state.state == "done":
            self.aborts_in_row = 0
            if any(p.kind in ("turn_left", "turn_right") for p in self._published.get(state.plan_id, ())):
                self.blocked_reason = ""  # the robot has turned: forward may be tried again
            if state.reason == "stop":
                self.state, self.finish_reason = FINISHED, "stop"
            else:
                self.state = READY
        elif state.state == "aborted":
            if state.reason.startswith(BLOCKED_PREFIX) and "during 'move forward" in state.reason:
                self.blocked_reason = state.reason[len(BLOCKED_PREFIX):]
            self.aborts_in_row += 1
            if self.aborts_in_row >= self.max_consecutive_aborts:
                self.state = FINISHED
                self.finish_reason = f"{self.aborts_in_row} plans aborted in a row (last: {state.reason})"
            else:
                self.state = READY  # replan from the newest frame

    def cancel(self, reason: str) -> None:
        """End the episode (e.g. the user cleared the instruction)."""
        if self.state != IDLE:
            self.state, self.finish_reason = FINISHED, reason

    def _finish_with(self, plan: PlanMessage) -> PlanMessage:
        self.state = FINISHED
        self.finish_reason = plan.error or "stop"
        return plan


def avoid_blocked_forward(primitives) -> tuple[NavPrimitive, ...]:
    """The blocked-move rule (module docstring): drop leading `forward` moves when the plan turns later,
    else replace the plan by one 30-degree left turn. A plan that starts with a turn or a stop is kept."""
    prims = tuple(primitives)
    if not prims or prims[0].kind != "forward":
        return prims
    rest = prims
    while rest and rest[0].kind == "forward":
        rest = rest[1:]
    if rest and rest[0].kind in ("turn_left", "turn_right", "stop"):
        return rest
    return (NavPrimitive.turn_left(),)


def episode_end_reason(
    *,
    stopped_by: str | None,
    steps: int,
    max_steps: int,
    aborts_in_row: int,
    max_consecutive_aborts: int,
    last_abort_reason: str = "",
    planner_reason: str | None = None,
) -> str | None:
    """The one episode-ending rule of `vlm-agent eval --ros` and `vlm-agent demo` (plain values in, the
    end reason out, None while the episode goes on). The first that applies:

    1. `stopped_by`: a `stop` primitive was executed (the policy / model decided; its text);
    2. `planner_reason`: the planner node ended the episode itself (demo: its `finish_reason`);
    3. `max_consecutive_aborts` primitives aborted in a row (a blocked robot: the safety supervisor's
       reason is in `last_abort_reason`), instead of waiting out the step limit against a wall;
    4. `max_steps` primitives (eval) or plans (demo) used.

    Only 1 is a decision to stop: the callers score the others as not stopped (success 0), as
    in-process evaluation scores the step limit.
    """
    if stopped_by:
        return stopped_by
    if planner_reason:
        return f"planner: {planner_reason}"
    if max_consecutive_aborts > 0 and aborts_in_row >= max_consecutive_aborts:
        return f"{aborts_in_row} primitives aborted in a row (last: {last_abort_reason or 'no reason'})"
    if steps >= max_steps:
        return f"step limit {max_steps} reached"
    return None
