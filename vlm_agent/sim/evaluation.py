"""In-process evaluation of a policy on a suite (the core of `vlm-agent eval`, plain Python).

`evaluate(suite, policy_name, episodes, ...)` runs each episode in a `NavEnv`, collects per-episode
metrics, aggregates them as the field does (see `vlm_agent.sim.metrics`), measures env steps per
second, and optionally writes a contact sheet PNG + animated GIF per episode.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import Episode
from vlm_agent.sim.metrics import aggregate_manip, aggregate_nav, aggregate_seg, iou


@dataclass
class EvalResult:
    suite: str
    policy: str
    split: str
    seed: int
    episodes: int
    metrics: dict
    per_episode: list[dict] = field(default_factory=list)
    env_steps: int = 0
    wall_s: float = 0.0

    @property
    def env_steps_per_second(self) -> float:
        return self.env_steps / self.wall_s if self.wall_s > 0 else float("nan")

    def to_json_dict(self) -> dict:
        return {
            "suite": self.suite,
            "policy": self.policy,
            "split": self.split,
            "episodes": self.episodes,
            "seed": self.seed,
            **self.metrics,
            "env_steps": self.env_steps,
            "env_steps_per_second": self.env_steps_per_second,
            "wall_s": self.wall_s,
            "per_episode": self.per_episode,
        }


def evaluate(suite: str, policy, episodes: list[Episode], env: NavEnv | None = None, *, policy_name: str = "?",
             split: str = "?", seed: int = 0, video_dir: str | None = None, progress=None) -> EvalResult:
    """Run `policy` on `episodes`. `progress(i, result_so_far)` is called after each episode."""
    env = env or NavEnv(SimConfig())
    per, steps = [], 0
    t0 = time.perf_counter()
    for i, ep in enumerate(episodes):
        if ep.suite != suite:
            raise ValueError(f"episode {ep.episode_id} is a {ep.suite} episode, not {suite}")
        frames: list[np.ndarray] = []
        before = env.steps_taken
        if suite == "nav":
            m = _run_nav(env, policy, ep, frames if video_dir else None)
        elif suite == "manip":
            m = _run_manip(env, policy, ep, frames if video_dir else None)
        else:
            m = _run_seg(env, policy, ep, frames if video_dir else None)
        steps += max(1, env.steps_taken - before) if suite != "manip" else m.get("env_steps", 1)
        m["episode_id"] = ep.episode_id
        m["task"] = ep.task
        m["held_out"] = ep.held_out
        m["instruction"] = ep.instruction
        per.append(m)
        if video_dir and frames:
            write_video(video_dir, ep, frames)
        if progress is not None:
            progress(i, m)
    wall = time.perf_counter() - t0
    agg = {"nav": aggregate_nav, "manip": aggregate_manip, "seg": aggregate_seg}[suite]
    metrics = agg(per)
    held = [m for m in per if m["held_out"]]
    if held:  # the generalisation figure: the same metrics over held-out colour/shape targets only
        metrics["held_out"] = {k: v for k, v in agg(held).items()}
        metrics["held_out"]["episodes"] = len(held)
    return EvalResult(suite, policy_name, split, seed, len(episodes), metrics, per, steps, wall)


def _run_nav(env, policy, ep, frames):
    obs = env.reset(ep)
    policy.reset(ep)
    if frames is not None:
        frames.append(obs.rgb)
    while not env.done:
        action = policy.act(obs)
        obs = env.step(action)
        if frames is not None:
            frames.append(obs.rgb)
    return env.metrics()


def _run_manip(env, policy, ep, frames, max_rounds: int = 3):
    from vlm_agent.skills.api import parse_program
    from vlm_agent.skills.sim_skills import SimSkills

    obs = env.reset(ep)
    policy.reset(ep)
    skills = SimSkills(env)
    if frames is not None:
        frames.append(obs.rgb)
    calls, feedback = 0, []
    for _ in range(max_rounds):
        program = policy.act(obs)
        if isinstance(program, str):
            try:
                program = parse_program(program)
            except ValueError as exc:
                feedback.append(f"unparseable program: {exc}")
                program = []
        for call in program[: ep.max_steps - calls]:
            result = skills.execute(call)
            calls += 1
            feedback.append(result.feedback)
            if frames is not None:
                frames.append(env.observation().rgb)
            if not result.success:
                break
        obs = env.observation()
        if env.manip_metrics()["success"] or not hasattr(policy, "feedback"):
            break
        policy.feedback(feedback[-1] if feedback else "")
    m = env.manip_metrics()
    m.update(skill_calls=calls, feedback=feedback, env_steps=max(1, calls))
    return m


def _run_seg(env, policy, ep, frames):
    obs = env.reset(ep)
    policy.reset(ep)
    gt = env.object_mask(ep.goal_object)
    pred = np.asarray(policy.act(obs), bool)
    if pred.shape != gt.shape:
        raise ValueError(f"policy returned a {pred.shape} mask for a {gt.shape} image")
    value, inter, union = iou(pred, gt)
    if frames is not None:
        frames.append(overlay(obs.rgb, gt, (0, 255, 0)))
        frames.append(overlay(obs.rgb, pred, (255, 0, 255)))
    env.steps_taken += 1
    return {"iou": value, "intersection": inter, "union": union, "gt_pixels": int(gt.sum())}


def overlay(rgb: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    out = rgb.astype(np.float32).copy()
    out[mask] = 0.5 * out[mask] + 0.5 * np.asarray(colour, np.float32)
    return out.astype(np.uint8)


def contact_sheet(frames: list[np.ndarray], columns: int = 6, max_frames: int = 24) -> np.ndarray:
    """Evenly sampled frames tiled in a grid (H*rows, W*columns, 3) uint8."""
    idx = np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)
    chosen = [frames[i] for i in idx]
    rows = int(math.ceil(len(chosen) / columns))
    h, w = chosen[0].shape[:2]
    sheet = np.full((rows * h, min(columns, len(chosen)) * w, 3), 255, np.uint8)
    for k, f in enumerate(chosen):
        r, c = divmod(k, columns)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = f
    return sheet


def write_video(video_dir: str, ep: Episode, frames: list[np.ndarray]) -> tuple[str, str]:
    """`<episode_id>.png` (contact sheet, instruction as caption) and `<episode_id>.gif` in `video_dir`."""
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    os.makedirs(video_dir, exist_ok=True)
    sheet = Image.fromarray(contact_sheet(frames))
    caption = Image.new("RGB", (sheet.width, 18), "white")
    ImageDraw.Draw(caption).text((4, 3), ep.instruction[:120], fill="black")
    full = Image.new("RGB", (sheet.width, sheet.height + 18), "white")
    full.paste(caption, (0, 0))
    full.paste(sheet, (0, 18))
    png = os.path.join(video_dir, f"{ep.episode_id}.png")
    gif = os.path.join(video_dir, f"{ep.episode_id}.gif")
    full.save(png)
    imageio.mimsave(gif, frames, duration=0.15, loop=0)
    return png, gif
