"""In-process evaluation of a policy on a suite (the core of `vlm-agent eval`, plain Python).

`evaluate(suite, policy_name, episodes, ...)` runs each episode in a `NavEnv`, collects per-episode
metrics, aggregates them as the field does (see `vlm_agent.sim.metrics`), measures env steps per
second, and optionally writes a contact sheet PNG + animated GIF per episode (`vlm_agent.sim.video`).
Manipulation policies emit skill programs, run here through the agent's `SimSkills`: this is why
evaluation sits above the simulator and the skills, not inside the simulator.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import Episode
from vlm_agent.sim.metrics import aggregate_manip, aggregate_nav, aggregate_seg, iou
from vlm_agent.sim.seg_clips import SEG_CLIP_FRAMES, seg_clip_poses
from vlm_agent.sim.video import overlay, topdown_map, write_video


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
             split: str = "?", seed: int = 0, video_dir: str | None = None, progress=None,
             seg_clip_frames: int = SEG_CLIP_FRAMES) -> EvalResult:
    """Run `policy` on `episodes`. `progress(i, result_so_far)` is called after each episode.
    Seg episodes are scored on every frame of a `seg_clip_frames`-frame clip (`sim.seg_clips`; 1 =
    the single start frame); the policy is reset once per episode and sees the frames in order."""
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
            m = _run_seg(env, policy, ep, frames if video_dir else None, seg_clip_frames)
        steps += max(1, env.steps_taken - before) if suite != "manip" else m.get("env_steps", 1)
        m["episode_id"] = ep.episode_id
        m["task"] = ep.task
        m["held_out"] = ep.held_out
        m["held_out_phrasing"] = ep.held_out_phrasing
        m["instruction"] = ep.instruction
        per.append(m)
        if video_dir and frames:
            topdown = topdown_map(env.world, env.trajectory, ep.goal_objects) if suite == "nav" else None
            write_video(video_dir, ep, frames, topdown=topdown)
        if progress is not None:
            progress(i, m)
    wall = time.perf_counter() - t0
    agg = {"nav": aggregate_nav, "manip": aggregate_manip, "seg": aggregate_seg}[suite]
    metrics = agg(per)
    held = [m for m in per if m["held_out"]]
    if held:  # the generalisation figure: the same metrics over held-out colour/shape targets only
        metrics["held_out"] = {k: v for k, v in agg(held).items()}
        metrics["held_out"]["episodes"] = len(held)
    if suite == "nav":
        metrics["breakdown"] = breakdown(per)
    elif suite == "seg":
        metrics["breakdown"] = breakdown(per, aggregate_seg)
    else:
        metrics["breakdown"] = breakdown(per, aggregate_manip)
    return EvalResult(suite, policy_name, split, seed, len(episodes), metrics, per, steps, wall)


def breakdown(per_episode: list[dict], aggregate=aggregate_nav) -> dict:
    """Metrics (`aggregate`: nav by default, `aggregate_seg` / `aggregate_manip` for seg / manip) per task type and per seen /
    held-out colour-shape pair and phrasing:
    {"task=goto": {...metrics, "episodes": n}, "pair=held_out": ..., "phrasing=seen": ...}."""
    groups: dict[str, list[dict]] = {}
    for m in per_episode:
        groups.setdefault(f"task={m.get('task')}", []).append(m)
        groups.setdefault("pair=" + ("held_out" if m.get("held_out") else "seen"), []).append(m)
        if "held_out_phrasing" in m:
            groups.setdefault("phrasing=" + ("held_out" if m["held_out_phrasing"] else "seen"), []).append(m)
    return {k: {**aggregate(v), "episodes": len(v)} for k, v in sorted(groups.items())}


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
    m = env.metrics()
    if hasattr(policy, "episode_stats"):  # e.g. the NaVid planner's plans by source
        m.update(policy.episode_stats())
    return m


def _run_manip(env, policy, ep, frames, max_rounds: int = 3):
    from vlm_agent.skills.api import parse_program
    from vlm_agent.skills.sim_skills import SimSkills

    obs = env.reset(ep)
    policy.reset(ep)
    skills = SimSkills(env)
    if frames is not None:
        frames.append(obs.rgb)
    if hasattr(policy, "run_episode"):  # a closed-loop planner (PaLM-E, Octopus) calls the skills itself
        def observe():
            rgb = env.render()[0]
            if frames is not None:
                frames.append(rgb)
            return [rgb]

        extra = policy.run_episode(env, skills, ep, observe)
        m = env.manip_metrics()
        m.update(extra)
        m["goal_objects"] = list(ep.goal_objects[:2])  # (object to move, destination) scene ids
        m["env_steps"] = max(1, int(extra.get("skill_calls", 0)))
        return m
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


def _run_seg(env, policy, ep, frames, clip_frames: int = 1):
    """Score the policy's mask on every frame of the episode's clip (frame 0 = the start pose).

    Per episode: `iou`/`intersection`/`union`/`gt_pixels` of frame 0 (the single-frame score, as
    before clips existed) and, per frame, `frame_ious`, `frame_intersections`, `frame_unions`,
    `frame_policy_s` (the policy's time) and, when the policy reports it (`last_source`: detected /
    tracked / ...), `frame_sources`."""
    first = env.reset(ep)
    policy.reset(ep)
    out: dict = {"frame_ious": [], "frame_intersections": [], "frame_unions": [], "frame_policy_s": []}
    sources = []
    for k, pose in enumerate(seg_clip_poses(ep, clip_frames)):
        if k:
            env.set_pose(*pose)
        obs = env.observation() if k else first
        gt = env.object_mask(ep.goal_object)
        t0 = time.perf_counter()
        pred = np.asarray(policy.act(obs), bool)
        out["frame_policy_s"].append(time.perf_counter() - t0)
        if pred.shape != gt.shape:
            raise ValueError(f"policy returned a {pred.shape} mask for a {gt.shape} image")
        value, inter, union = iou(pred, gt)
        out["frame_ious"].append(value)
        out["frame_intersections"].append(inter)
        out["frame_unions"].append(union)
        if getattr(policy, "last_source", None) is not None:
            sources.append(policy.last_source)
        if k == 0:
            out.update(iou=value, intersection=inter, union=union, gt_pixels=int(gt.sum()))
            if frames is not None:
                frames.append(overlay(obs.rgb, gt, (0, 255, 0)))
        if frames is not None:
            frames.append(overlay(obs.rgb, pred, (255, 0, 255)))
        env.steps_taken += 1
    if sources:
        out["frame_sources"] = sources
    return out
