"""The PaLM-E-style closed loop, model-independent: observe -> ask for the next step(s) -> parse ->
execute through the skill layer -> replan, up to a step budget.

A backend is any callable `backend(prompt: str, images: list[np.ndarray]) -> str`: the prompt is a
PaLM-E "multimodal sentence" whose `<img>` placeholders stand for `images` in order (RGB (H, W, 3)
uint8, the robot's current camera view(s)), and whose `<state>...</state>` slot carries the robot
state (base pose, gripper, held object) as text. A scripted or oracle backend ignores the images;
the PaLM-E model (issue 9 core, models/palme/) replaces each `<img>` with image features and the
state slot with a state-vector embedding. The reply is parsed with the strict step grammar
(`palme_grammar`); a parse error is not executed, it goes into the next prompt as feedback.

Each model call's first `steps_per_call` steps are executed (1 = replan after every step, as PaLM-E
does); a failed step stops the batch and its feedback goes into the next prompt. `done()` ends the
episode. Budgets: `max_steps` executed skill calls and `max_model_calls` backend calls (parse errors
and backend exceptions count against the latter).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.planners.palme_grammar import format_plan, grammar_text, parse_plan
from vlm_agent.skills.api import SkillAPI

Backend = Callable[[str, Sequence[np.ndarray]], str]
IMAGE_TOKEN = "<img>"


@dataclass
class PalmeConfig(ConfigBase):
    """Budgets of one PaLM-E episode."""

    max_steps: int = param(20, "executed skill calls per episode (the step budget)", min=1, max=1000)
    max_model_calls: int = param(30, "backend calls per episode, parse failures included", min=1, max=1000)
    steps_per_call: int = param(1, "plan steps executed before asking again (1 = replan after every step)", min=1, max=16)
    history_steps: int = param(8, "most recent executed steps (with feedback) quoted in the prompt", min=0, max=100)


@dataclass
class PalmeRecord:
    """One model call: the prompt, the raw reply, the parsed plan (text) or the parse/backend error,
    and the steps executed from it as (call text, SkillResult.to_dict())."""

    prompt: str
    response: str
    plan: str = ""
    error: str | None = None
    executed: list[tuple[str, dict]] = field(default_factory=list)
    latency_s: float = 0.0


@dataclass
class PalmeEpisode:
    """finished: the model called done(); reason: "done" | "step_budget" | "model_call_budget"."""

    instruction: str
    records: list[PalmeRecord]
    finished: bool
    reason: str
    steps_executed: int

    def executed_calls(self) -> list[str]:
        return [text for r in self.records for text, _ in r.executed]


def state_text(state: dict) -> str:
    """The robot part of `SkillAPI.state()` as the text of the `<state>` slot."""
    pose = state.get("base_pose")
    pose_txt = f"base at x={pose[0]:.2f} m, y={pose[1]:.2f} m, yaw={pose[2]:.2f} rad" if pose else "base pose unknown"
    return f"{pose_txt}; gripper {state.get('gripper', 'unknown')}; holding {state.get('held') or 'nothing'}"


def palme_prompt(instruction: str, state: dict, history: list[tuple[str, str]], n_images: int, last_error: str | None = None) -> str:
    """The multimodal sentence: images, state, task, executed steps with their feedback, grammar."""
    lines = [" ".join([IMAGE_TOKEN] * n_images) + (" " if n_images else "") + f"<state>{state_text(state)}</state>",
             f"Task: {instruction}"]
    if history:
        lines.append("Done so far:")
        lines += [f"- {call} -> {feedback}" for call, feedback in history]
    if last_error:
        lines.append(f"Your last answer was rejected: {last_error}")
    lines += [grammar_text(), "Next steps:"]
    return "\n".join(lines)


def run_palme_episode(backend: Backend, skills: SkillAPI, instruction: str, *, observe: Callable[[], list[np.ndarray]] | None = None,
                      config: PalmeConfig | None = None) -> PalmeEpisode:
    """Run one closed-loop episode (see module docstring). Never raises for anything the backend or a
    skill does: backend exceptions and parse errors are recorded and fed back."""
    cfg = config or PalmeConfig()
    records: list[PalmeRecord] = []
    history: list[tuple[str, str]] = []
    last_error = None
    executed = 0
    for _ in range(cfg.max_model_calls):
        images = list(observe()) if observe is not None else []
        prompt = palme_prompt(instruction, skills.state(), history[-cfg.history_steps:] if cfg.history_steps else [], len(images), last_error)
        t0 = time.monotonic()
        try:
            raw = backend(prompt, images)
        except Exception as exc:  # noqa: BLE001 (a backend failure is recorded, never crashes the loop)
            records.append(PalmeRecord(prompt, "", error=f"backend error: {type(exc).__name__}: {exc}", latency_s=time.monotonic() - t0))
            last_error = records[-1].error
            continue
        record = PalmeRecord(prompt, raw if isinstance(raw, str) else repr(raw), latency_s=time.monotonic() - t0)
        records.append(record)
        parsed = parse_plan(raw)
        if not parsed.ok:
            record.error = last_error = parsed.error.feedback()
            continue
        last_error = None
        record.plan = format_plan(parsed.steps)
        for call in parsed.steps[: cfg.steps_per_call]:
            result = skills.execute(call)
            executed += 1
            record.executed.append((call.to_text(), result.to_dict()))
            history.append((call.to_text(), ("ok: " if result.success else "FAILED: ") + result.feedback))
            if call.name == "done" and result.success:
                return PalmeEpisode(instruction, records, True, "done", executed)
            if not result.success or executed >= cfg.max_steps:
                break
        if executed >= cfg.max_steps:
            return PalmeEpisode(instruction, records, False, "step_budget", executed)
    return PalmeEpisode(instruction, records, False, "model_call_budget", executed)

