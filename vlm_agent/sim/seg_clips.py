"""Short video clips for referring-segmentation episodes: the robot moves while it segments.

A seg episode places the camera 1.6-2.4 m from the target with a clear view (`episodes._seg_episode`).
`seg_clip_poses(episode, n_frames)` turns it into a clip: frame 0 is the episode's start pose (so a
clip's first frame is exactly the single-frame episode), then the base drives `forward_m` straight
ahead while its heading sways sinusoidally by up to `sway_deg`, a deterministic pure function of the
episode. Targets of relational episodes sit up to ~20 degrees off-axis in a 60-degree view, so the
default sway (5 degrees) and drive (0.3 m, nowhere near the objects at >= 1.6 m) keep them in view
while the image content moves by several pixels per frame: what a tracker has to follow.
"""
from __future__ import annotations

import math

from vlm_agent.sim.episodes import Episode

SEG_CLIP_FRAMES = 8          # default clip length (frames)
SEG_CLIP_FORWARD_M = 0.3     # total drive over a clip (m)
SEG_CLIP_SWAY_DEG = 5.0      # peak heading sway (degrees)


def seg_clip_poses(episode: Episode, n_frames: int = SEG_CLIP_FRAMES, forward_m: float = SEG_CLIP_FORWARD_M,
                   sway_deg: float = SEG_CLIP_SWAY_DEG) -> list[tuple[float, float, float]]:
    """Base poses (x m, y m, yaw rad) in `odom` for the `n_frames` frames of `episode`'s clip.

    Frame k of n: s = k / (n - 1); position = start + s * forward_m along the start heading;
    yaw = start yaw + sway_deg * sin(2 pi s). n_frames = 1 gives the start pose alone.
    """
    if episode.suite != "seg":
        raise ValueError(f"clips are defined for seg episodes, not {episode.suite}")
    if not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be an int >= 1, got {n_frames!r}")
    if not 0.0 <= forward_m <= 1.0 or not 0.0 <= sway_deg <= 20.0:
        raise ValueError(f"forward_m {forward_m} must be in [0, 1] and sway_deg {sway_deg} in [0, 20]")
    x0, y0, yaw0 = (float(v) for v in episode.start_pose)
    poses = []
    for k in range(n_frames):
        s = k / (n_frames - 1) if n_frames > 1 else 0.0
        d = s * forward_m
        yaw = yaw0 + math.radians(sway_deg) * math.sin(2.0 * math.pi * s)
        poses.append((x0 + d * math.cos(yaw0), y0 + d * math.sin(yaw0), yaw))
    return poses


__all__ = ["seg_clip_poses", "SEG_CLIP_FRAMES", "SEG_CLIP_FORWARD_M", "SEG_CLIP_SWAY_DEG"]
