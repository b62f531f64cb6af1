"""The Octopus-style closed loop, model-independent: ask -> parse -> check and run the code in the
sandbox -> environment feedback into the next round, up to a round budget; every round is appended
to an RLEF dataset.

A backend is a callable `backend(prompt: str, images: list[np.ndarray]) -> str` (images: RGB
(H, W, 3) uint8 camera views, referenced by `<img>` placeholders in the prompt). The reply must be an
Octopus response (`octopus_format`); its code runs only through `vlm_agent.skills.sandbox.run_program`
with the skills of a `SkillAPI`. The feedback of a round says: the calls made with their outcome,
the first failure and its reason, the error (violation, exception, budget), and for each
target-state predicate whether it holds; the next prompt quotes it.

A round succeeds when `success_fn()` says so (the environment's judgement, e.g. the simulator's
manipulation metric); without `success_fn`, when every target-state predicate holds and the program
ran ok (the model's own claim, checked against the world). Reward: 1.0 for a successful round, else
0.0 (Octopus's RLEF uses environment success as the reward signal).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.planners.octopus_format import TargetPredicate, format_instructions, parse_response
from vlm_agent.planners.palme_loop import IMAGE_TOKEN, state_text
from vlm_agent.planners.rlef_dataset import RlefDatasetWriter, RlefRecord
from vlm_agent.skills.api import SkillAPI, SkillError
from vlm_agent.skills.sandbox import ProgramResult, run_program

Backend = Callable[[str, Sequence[np.ndarray]], str]


@dataclass
class OctopusConfig(ConfigBase):
    """Budgets of one Octopus episode."""

    max_rounds: int = param(3, "rounds (model calls) per episode", min=1, max=100)
    max_calls: int = param(50, "skill calls per program (the sandbox's call budget)", min=1, max=1000)
    timeout_s: float = param(120.0, "wall time per program (s); the simulator's skills take seconds each", min=0.1, max=3600.0)
    max_feedback_rounds: int = param(3, "most recent rounds' feedback quoted in the prompt", min=0, max=100)


@dataclass
class OctopusRound:
    """One round: inputs, output and what the environment said about it."""

    round: int
    prompt: str
    response: str
    parse_errors: list[str] = field(default_factory=list)
    program: ProgramResult | None = None
    target_state: dict[str, bool] = field(default_factory=dict)
    feedback: str = ""
    success: bool = False
    latency_s: float = 0.0

    @property
    def reward(self) -> float:
        return 1.0 if self.success else 0.0


@dataclass
class OctopusEpisode:
    instruction: str
    rounds: list[OctopusRound]
    success: bool


def octopus_prompt(instruction: str, state: dict, feedback: list[str], n_images: int) -> str:
    lines = [" ".join([IMAGE_TOKEN] * n_images) + (" " if n_images else "") + f"Robot: {state_text(state)}", f"Task: {instruction}"]
    for k, text in enumerate(feedback, 1):
        lines.append(f"Feedback on an earlier attempt ({k} of {len(feedback)}):\n{text}")
    lines.append(format_instructions())
    return "\n".join(lines)


def check_targets(skills: SkillAPI, targets: Sequence[TargetPredicate]) -> tuple[dict[str, bool], list[str]]:
    """{predicate text: holds} and the reasons for predicates that could not be evaluated (those count
    as not holding)."""
    out, problems = {}, []
    for pred in targets:
        try:
            out[pred.to_text()] = bool(skills.holds(pred.name, pred.args))
        except SkillError as exc:
            out[pred.to_text()] = False
            problems.append(f"{pred.to_text()}: {exc}")
    return out, problems


def program_feedback(result: ProgramResult, targets: dict[str, bool], target_problems: list[str], success: bool) -> str:
    """The environment's answer to one program run, as text for the next round."""
    lines = []
    if result.error_kind == "violation":
        lines.append("The code was rejected by the sandbox and did not run:")
        lines += [f"- {v}" for v in result.violations]
    else:
        lines.append(f"The code made {len(result.calls)} skill call(s):")
        lines += [f"- {c.to_text()}: {'ok' if c.success else 'FAILED'}{': ' + c.feedback if c.feedback else ''}{_changes(c.result)}"
                  for c in result.calls]
        first = result.first_failure
        if first is not None:
            lines.append(f"First failure: {first.to_text()}: {first.feedback or 'no reason given'}")
        if result.error_kind not in (None, "skill_failure"):
            lines.append(f"Execution stopped ({result.error_kind}): {result.error}")
    if targets:
        lines.append("Target state: " + "; ".join(f"{k} {'holds' if v else 'does NOT hold'}" for k, v in targets.items()))
    lines += [f"Could not check {p}" for p in target_problems]
    lines.append("Task complete." if success else "Task not complete.")
    return "\n".join(lines)


def _changes(result) -> str:
    """The suffix ' [held: None -> red cube; ...]' from a SkillResult's observation changes (base pose left out:
    the numbers say little to a planner and the loop's prompt carries the current pose)."""
    changes = getattr(result, "changes", None)
    if not isinstance(changes, dict):
        return ""
    parts = [f"{k}: {v[0]} -> {v[1]}" for k, v in changes.items() if k != "base_pose" and isinstance(v, list) and len(v) == 2]
    return f" [{'; '.join(parts)}]" if parts else ""


def run_octopus_episode(backend: Backend, skills: SkillAPI, instruction: str, *, observe: Callable[[], list[np.ndarray]] | None = None,
                        success_fn: Callable[[], bool] | None = None, dataset: RlefDatasetWriter | None = None,
                        episode_id: str = "episode", config: OctopusConfig | None = None) -> OctopusEpisode:
    """Run rounds until success or the round budget (see module docstring). Never raises for anything
    the backend, the program or a skill does."""
    cfg = config or OctopusConfig()
    rounds: list[OctopusRound] = []
    feedback: list[str] = []
    perception = getattr(getattr(skills, "perception", None), "label", None)
    for k in range(cfg.max_rounds):
        images = list(observe()) if observe is not None else []
        quoted = feedback[-cfg.max_feedback_rounds:] if cfg.max_feedback_rounds else []
        prompt = octopus_prompt(instruction, skills.state(), quoted, len(images))
        t0 = time.monotonic()
        try:
            raw = backend(prompt, images)
            backend_error = None
        except Exception as exc:  # noqa: BLE001 (a backend failure is a failed round, never a crash)
            raw, backend_error = "", f"backend error: {type(exc).__name__}: {exc}"
        rnd = OctopusRound(k, prompt, raw if isinstance(raw, str) else repr(raw), latency_s=time.monotonic() - t0)
        if backend_error:
            rnd.parse_errors = [backend_error]
            rnd.feedback = backend_error
        else:
            parsed = parse_response(raw)
            if not parsed.ok:
                rnd.parse_errors = parsed.errors
                rnd.feedback = parsed.feedback() + "\nThe code did not run. Task not complete."
            else:
                resp = parsed.response
                rnd.program = run_program(resp.code, skills.bindings(), max_calls=cfg.max_calls, timeout_s=cfg.timeout_s)
                rnd.target_state, problems = check_targets(skills, resp.target_state)
                if success_fn is not None:
                    rnd.success = bool(success_fn())
                else:
                    rnd.success = rnd.program.ok and all(rnd.target_state.values())
                rnd.feedback = program_feedback(rnd.program, rnd.target_state, problems, rnd.success)
        rounds.append(rnd)
        feedback.append(rnd.feedback)
        if dataset is not None:
            dataset.append(RlefRecord(
                episode_id, k, instruction, prompt, rnd.response, list(rnd.parse_errors),
                rnd.program.to_dict() if rnd.program else None, dict(rnd.target_state), rnd.feedback, rnd.success, rnd.reward,
                perception,
            ), images)
        if rnd.success:
            break
    return OctopusEpisode(instruction, rounds, bool(rounds and rounds[-1].success))
