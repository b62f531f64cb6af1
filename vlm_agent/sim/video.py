"""Episode pictures from the simulator: mask overlays, contact sheets, top-down maps, GIFs.

What `vlm-agent eval --video` and `vlm-agent demo` write; plain numpy + Pillow (+ imageio for GIFs).
The demo's sheets put a caption under every frame (`write_contact_sheet`: the plan step, the mask's
IoU, the skill call and its feedback) and the top-down map beside navigation episodes.
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
    full.save(png)
    return png, write_gif(os.path.join(video_dir, f"{ep.episode_id}.gif"), frames)


def outline(rgb: np.ndarray, mask: np.ndarray, colour, width: int = 1) -> np.ndarray:
    """`rgb` with the boundary pixels of `mask` (H, W) bool set to `colour` (`width` px inwards)."""
    mask = np.asarray(mask, bool)
    inner = mask.copy()
    for _ in range(max(1, width)):
        shrunk = inner.copy()
        shrunk[1:, :] &= inner[:-1, :]
        shrunk[:-1, :] &= inner[1:, :]
        shrunk[:, 1:] &= inner[:, :-1]
        shrunk[:, :-1] &= inner[:, 1:]
        inner = shrunk
    out = np.array(rgb, np.uint8, copy=True)
    out[mask & ~inner] = np.asarray(colour, np.uint8)
    return out


def sample_indices(n: int, max_items: int) -> list[int]:
    """Up to `max_items` indices of `n` items, evenly spread, always the first and the last."""
    if n <= 0:
        return []
    if n <= max_items:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max(1, max_items)).round().astype(int).tolist()))


def _wrap(draw, text: str, width_px: float, font, max_lines: int) -> list[str]:
    """`text` broken into lines of at most `width_px` (words, then characters), at most `max_lines`
    (the last one ending in '...' when cut)."""
    lines: list[str] = []
    for paragraph in str(text).splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            while draw.textlength(candidate, font=font) > width_px and len(candidate) > 1:
                if line:  # the word goes to the next line
                    lines.append(line)
                    line, candidate = "", word
                    continue
                cut = len(candidate) - 1  # one over-long word: hard break
                while cut > 1 and draw.textlength(candidate[:cut], font=font) > width_px:
                    cut -= 1
                lines.append(candidate[:cut])
                candidate = candidate[cut:]
            line = candidate
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "...", font=font) > width_px:
            last = last[:-1]
        lines[-1] = last + "..."
    return lines


def captioned_contact_sheet(frames: list[np.ndarray], captions: list[str], columns: int = 4, tile_width: int = 256,
                            caption_lines: int = 3) -> np.ndarray:
    """Frames tiled in a grid with a caption under each (H, W, 3) uint8: every frame scaled to
    `tile_width` px wide (aspect kept; the first frame's aspect sets the tile), each caption wrapped
    into at most `caption_lines` lines. All given frames are drawn (sample them first,
    `sample_indices`)."""
    from PIL import Image, ImageDraw, ImageFont

    if not frames:
        raise ValueError("no frames for a contact sheet")
    if len(captions) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(captions)} captions")
    font = ImageFont.load_default()
    h0, w0 = np.asarray(frames[0]).shape[:2]
    tile_h = max(1, round(h0 * tile_width / w0))
    line_h = 12
    cap_h = caption_lines * line_h + 4
    columns = max(1, min(columns, len(frames)))
    rows = int(math.ceil(len(frames) / columns))
    gap = 4
    sheet = Image.new("RGB", (columns * (tile_width + gap) - gap, rows * (tile_h + cap_h + gap) - gap), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (frame, caption) in enumerate(zip(frames, captions)):
        r, c = divmod(k, columns)
        x, y = c * (tile_width + gap), r * (tile_h + cap_h + gap)
        sheet.paste(Image.fromarray(np.asarray(frame, np.uint8)).resize((tile_width, tile_h)), (x, y))
        for i, line in enumerate(_wrap(draw, caption, tile_width - 4, font, caption_lines)):
            draw.text((x + 2, y + tile_h + 2 + i * line_h), line, fill="black", font=font)
    return np.asarray(sheet)


def write_contact_sheet(path: str, title: str, frames: list[np.ndarray], captions: list[str], side: np.ndarray | None = None,
                        columns: int = 4, tile_width: int = 256, caption_lines: int = 3) -> str:
    """A PNG at `path`: `title` on top, the captioned frames (`captioned_contact_sheet`) and, when
    given, `side` (e.g. the episode's top-down map, scaled to at most the sheet's height) on the right.
    Returns `path`."""
    from PIL import Image, ImageDraw, ImageFont

    sheet = Image.fromarray(captioned_contact_sheet(frames, captions, columns, tile_width, caption_lines))
    if side is not None:
        m = Image.fromarray(np.asarray(side, np.uint8))
        height = min(sheet.height, max(m.height, 2 * tile_width))
        m = m.resize((max(1, round(m.width * height / m.height)), height))
        both = Image.new("RGB", (sheet.width + 8 + m.width, max(sheet.height, m.height)), "white")
        both.paste(sheet, (0, 0))
        both.paste(m, (sheet.width + 8, 0))
        sheet = both
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(sheet)
    lines = _wrap(draw, title, sheet.width - 8, font, 3)
    top = 6 + 12 * len(lines)
    full = Image.new("RGB", (sheet.width, sheet.height + top), "white")
    full.paste(sheet, (0, top))
    draw = ImageDraw.Draw(full)
    for i, line in enumerate(lines):
        draw.text((4, 3 + 12 * i), line, fill="black", font=font)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    full.save(path)
    return path


def write_gif(path: str, frames: list[np.ndarray], duration_s: float = 0.15) -> str:
    """An animated GIF of `frames` at `path` (looping); returns `path`."""
    import imageio.v2 as imageio

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    imageio.mimsave(path, [np.asarray(f, np.uint8) for f in frames], duration=duration_s, loop=0)
    return path
