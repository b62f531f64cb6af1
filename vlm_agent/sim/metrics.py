"""Embodied-AI metrics as the field defines them (plain numpy, unit-tested on hand-computed cases).

Navigation (Anderson et al. 2018, "On Evaluation of Embodied Navigation Agents"; R2R):
* SR  success rate: the agent called stop within `success_distance` (1.0 m) of the goal object
      (and, for multi-goal instructions, passed within it of every earlier goal in order).
* SPL success weighted by path length: S * l / max(l, p), l = shortest-path (geodesic) length,
      p = the length the agent travelled.
* NE  navigation error: distance (m) from the final position to the goal object.
* OSR oracle success: the agent came within `success_distance` of the goal at any time.
* TL  trajectory length (m).
Segmentation: IoU per expression; mIoU = mean of per-expression IoUs; cIoU = sum of intersections /
sum of unions over the dataset (favours large objects, as in RefCOCO evaluations).
"""
from __future__ import annotations

import numpy as np

SUCCESS_DISTANCE_M = 1.0


def spl(success: bool, shortest_m: float, taken_m: float) -> float:
    """Success weighted by (normalised inverse) path length for one episode, in [0, 1]."""
    if not success:
        return 0.0
    if shortest_m <= 0:
        return 1.0
    return float(shortest_m / max(shortest_m, taken_m))


def nav_episode_metrics(
    stopped: bool,
    final_distance_m: float,
    min_distance_m: float,
    path_length_m: float,
    shortest_path_m: float,
    subgoals_done: bool = True,
    success_distance_m: float = SUCCESS_DISTANCE_M,
) -> dict:
    """Per-episode navigation metrics. `min_distance_m` is the closest approach to the final goal
    after all earlier subgoals were reached (inf if never)."""
    success = bool(stopped and subgoals_done and final_distance_m <= success_distance_m)
    return {
        "success": float(success),
        "spl": spl(success, shortest_path_m, path_length_m),
        "navigation_error": float(final_distance_m),
        "oracle_success": float(min_distance_m <= success_distance_m),
        "trajectory_length": float(path_length_m),
        "shortest_path_length": float(shortest_path_m),
    }


def aggregate_nav(per_episode: list[dict]) -> dict:
    """Dataset-level navigation metrics (means over episodes)."""
    if not per_episode:
        return {k: float("nan") for k in ("success_rate", "spl", "navigation_error", "oracle_success_rate", "trajectory_length")}
    mean = lambda k: float(np.mean([m[k] for m in per_episode]))  # noqa: E731
    return {
        "success_rate": mean("success"),
        "spl": mean("spl"),
        "navigation_error": mean("navigation_error"),
        "oracle_success_rate": mean("oracle_success"),
        "trajectory_length": mean("trajectory_length"),
    }


def iou(pred: np.ndarray, gt: np.ndarray) -> tuple[float, int, int]:
    """(IoU, intersection, union) of two boolean masks of equal shape. Both empty -> IoU 1.0."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: pred {pred.shape} vs gt {gt.shape}")
    inter = int(np.logical_and(pred, gt).sum())
    union = int(np.logical_or(pred, gt).sum())
    return (1.0 if union == 0 else inter / union), inter, union


def aggregate_seg(per_episode: list[dict]) -> dict:
    """mIoU (mean per-expression IoU) and cIoU (cumulative intersection / cumulative union) of the
    episodes' first frames.

    Episodes scored over a video clip (`frame_ious`, `frame_intersections`, `frame_unions`: one per
    frame, frame 0 = the first frame above) add the same over every frame of every clip
    (`clip_miou`, `clip_ciou`) and over the frames after the first (`later_miou`: what a tracker
    keeps after its first detection)."""
    if not per_episode:
        return {"miou": float("nan"), "ciou": float("nan")}
    inter = sum(m["intersection"] for m in per_episode)
    union = sum(m["union"] for m in per_episode)
    out = {
        "miou": float(np.mean([m["iou"] for m in per_episode])),
        "ciou": float(inter / union) if union else 1.0,
        "success_rate": float(np.mean([m["iou"] >= 0.5 for m in per_episode])),
    }
    clips = [m for m in per_episode if m.get("frame_ious")]
    if clips:
        ious = [v for m in clips for v in m["frame_ious"]]
        c_inter = sum(v for m in clips for v in m["frame_intersections"])
        c_union = sum(v for m in clips for v in m["frame_unions"])
        later = [v for m in clips for v in m["frame_ious"][1:]]
        out["clip_miou"] = float(np.mean(ious))
        out["clip_ciou"] = float(c_inter / c_union) if c_union else 1.0
        out["later_miou"] = float(np.mean(later)) if later else float("nan")
    return out


def aggregate_manip(per_episode: list[dict]) -> dict:
    if not per_episode:
        return {"success_rate": float("nan")}
    return {"success_rate": float(np.mean([m["success"] for m in per_episode]))}
