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
    return EvalResult(suite, policy_name, split, seed, len(episodes), metrics, per, steps, wall)


def breakdown(per_episode: list[dict]) -> dict:
    """Nav metrics per task type and per seen / held-out colour-shape pair and phrasing:
    {"task=goto": {...metrics, "episodes": n}, "pair=held_out": ..., "phrasing=seen": ...}."""
    groups: dict[str, list[dict]] = {}
    for m in per_episode:
        groups.setdefault(f"task={m.get('task')}", []).append(m)
        groups.setdefault("pair=" + ("held_out" if m.get("held_out") else "seen"), []).append(m)
        if "held_out_phrasing" in m:
            groups.setdefault("phrasing=" + ("held_out" if m["held_out_phrasing"] else "seen"), []).append(m)
    return {k: {**aggregate_nav(v), "episodes": len(v)} for k, v in sorted(groups.items())}


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


def topdown_map(world, trajectory, goal_objects=(), height_px: int = 192) -> np.ndarray:
    """A top-down map of one episode (H, W, 3) uint8: walls dark grey, furniture brown, every object a
    dot in its colour (goals ringed black, the final goal also in red), the path taken in blue from
    the start (green dot) to where it ended (black cross, red if that is farther than 1 m from the
    final goal). x grows to the right, y up (the world's `odom` frame)."""
    from PIL import Image, ImageDraw

    from vlm_agent.sim.world import COLOURS

    x0, y0, x1, y1 = world.bounds
    scale = height_px / max(y1 - y0, 1e-6)
    w = max(1, int(round((x1 - x0) * scale)))
    img = Image.new("RGB", (w, height_px), (245, 245, 240))
    draw = ImageDraw.Draw(img)

    def px(x, y):
        return ((x - x0) * scale, (y1 - y) * scale)

    def box(b, fill):
        (ax, ay), (bx, by) = px(*b.xy_min), px(*b.xy_max)
        draw.rectangle([min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)], fill=fill)

    for b in world.walls:
        box(b, (70, 70, 70))
    for b in world.furniture:
        box(b, (150, 110, 70))
    goals = list(goal_objects)
    for o in world.objects:
        cx, cy = px(o.pos[0], o.pos[1])
        r = max(2.5, 0.12 * scale)
        rgb = tuple(int(255 * c) for c in COLOURS.get(o.colour, (0.5, 0.5, 0.5)))
        if o.name in goals:
            ring = r + 3
            draw.ellipse([cx - ring, cy - ring, cx + ring, cy + ring], outline=(200, 0, 0) if o.name == goals[-1] else (0, 0, 0), width=2)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb, outline=(0, 0, 0))
    pts = [px(x, y) for x, y, _ in trajectory]
    if len(pts) > 1:
        draw.line(pts, fill=(30, 90, 220), width=2)
    if pts:
        sx, sy = pts[0]
        draw.ellipse([sx - 4, sy - 4, sx + 4, sy + 4], fill=(0, 170, 0))
        ex, ey = pts[-1]
        far = True
        if goals:
            try:
                g = world.object(goals[-1]).pos
                far = math.hypot(g[0] - trajectory[-1][0], g[1] - trajectory[-1][1]) > 1.0
            except KeyError:
                far = False
        c = (220, 0, 0) if far else (0, 0, 0)
        draw.line([ex - 5, ey - 5, ex + 5, ey + 5], fill=c, width=2)
        draw.line([ex - 5, ey + 5, ex + 5, ey - 5], fill=c, width=2)
        yaw = trajectory[-1][2]
        draw.line([ex, ey, ex + 9 * math.cos(yaw), ey - 9 * math.sin(yaw)], fill=c, width=1)
    return np.asarray(img)


def write_video(video_dir: str, ep: Episode, frames: list[np.ndarray], topdown: np.ndarray | None = None) -> tuple[str, str]:
    """`<episode_id>.png` (contact sheet, instruction as caption, and the top-down map of the episode
    beside it when given) and `<episode_id>.gif` in `video_dir`."""
    import imageio.v2 as imageio
    from PIL import Image, ImageDraw

    os.makedirs(video_dir, exist_ok=True)
    sheet = Image.fromarray(contact_sheet(frames))
    if topdown is not None:
        m = Image.fromarray(np.asarray(topdown, np.uint8))
        if m.height != sheet.height:
            m = m.resize((max(1, round(m.width * sheet.height / m.height)), sheet.height))
        both = Image.new("RGB", (sheet.width + 6 + m.width, sheet.height), "white")
        both.paste(sheet, (0, 0))
        both.paste(m, (sheet.width + 6, 0))
        sheet = both
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
