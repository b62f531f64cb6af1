"""Episode pictures from the simulator: mask overlays, contact sheets, top-down maps, GIFs.

What `vlm-agent eval --video` and `vlm-agent demo` write; plain numpy + Pillow (+ imageio for GIFs).
Images are (H, W, 3) uint8 RGB; the top-down map draws the world's `odom` frame, x right, y up.
"""
from __future__ import annotations

import math
import os

import numpy as np

from vlm_agent.sim.episodes import Episode


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
