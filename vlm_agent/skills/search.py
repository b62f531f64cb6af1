"""Where to look next when an object is in none of the views from here: vantage points on the map.

A search by turning in place (the perceptions' `locate`) sees what is in line of sight of one spot;
an object behind a table, or small and far across a room, stays out of it however often the planner
asks again from the same spot (PaLM-E val100 with `sa2va_nano` v5: 11 of 38 failures were the same
full-circle search repeated from the start pose until the step budget ran out; from there, the
ground-truth mask of the object had 0-14 pixels in every view). A robot that searches moves to
another place and looks again. `vantage_points` picks those places from the occupancy map alone (no
knowledge of where the object is): cells the robot can stand in, reachable from where it is, each as
far as possible from every spot already searched (greedy farthest-point sampling, a standard
coverage heuristic), preferring cells with room around them so that a full circle of views looks
across the room rather than into a wall.

`search_from_places` is the search itself (drive to each place, ask again), the same for the
in-process skills (`SimSkills`, the simulator's grid) and the ROS skills (`RosSkills`, the `map`
topic's `OccupancyMap`); each passes its own way of driving. Plain Python over arrays.
"""
from __future__ import annotations

import math

import numpy as np


def vantage_points(clearance: np.ndarray, gx: np.ndarray, gy: np.ndarray, start_xy, searched_xy=(), count: int = 2,
                   robot_radius_m: float = 0.22, margin_m: float = 0.1, open_clearance_m: float = 0.5,
                   min_separation_m: float = 1.5) -> list[tuple[float, float]]:
    """Up to `count` places (x, y) in the map frame (m) to search from, best first.

    clearance (ny, nx): metres from each cell centre to the nearest obstacle (`OccupancyMap.clearance`,
    `GridMap.clearance`); gx, gy (ny, nx): the cell centres' coordinates. A cell is standable when its
    clearance exceeds `robot_radius_m + margin_m`; candidates are the standable cells connected
    (8-neighbours) to the one nearest `start_xy`, restricted to those with at least
    `open_clearance_m` when any has it. Each pick maximises the distance to `start_xy`, to every spot
    in `searched_xy` and to the earlier picks; picking stops when that distance would be under
    `min_separation_m` (the views from there would repeat these). Empty when the robot stands in no
    connected free space or the map has nowhere new to look."""
    from scipy.ndimage import label

    clearance = np.asarray(clearance, np.float64)
    gx, gy = np.asarray(gx, np.float64), np.asarray(gy, np.float64)
    if clearance.ndim != 2 or clearance.shape != gx.shape or gx.shape != gy.shape:
        raise ValueError(f"clearance, gx and gy must be (ny, nx) arrays of one shape, got {clearance.shape}, {gx.shape}, {gy.shape}")
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be an int >= 0, got {count!r}")
    sx, sy = (float(v) for v in start_xy[:2])
    if count == 0 or not (math.isfinite(sx) and math.isfinite(sy)):
        return []
    standable = clearance > robot_radius_m + margin_m
    if not standable.any():
        return []
    components, _ = label(standable, structure=np.ones((3, 3), bool))
    d_start = np.hypot(gx - sx, gy - sy)
    k = int(np.argmin(np.where(standable, d_start, np.inf)))
    if d_start.flat[k] > 1.0:  # the robot is not on this map's free space: no basis to pick from
        return []
    reachable = components == components.flat[k]
    open_cells = reachable & (clearance >= open_clearance_m)
    candidates = open_cells if open_cells.any() else reachable
    cx, cy = gx[candidates], gy[candidates]
    nearest = np.hypot(cx - sx, cy - sy)
    for p in searched_xy:
        nearest = np.minimum(nearest, np.hypot(cx - float(p[0]), cy - float(p[1])))
    picks: list[tuple[float, float]] = []
    while len(picks) < count:
        i = int(np.argmax(nearest))
        if nearest[i] < min_separation_m:
            break
        picks.append((float(cx[i]), float(cy[i])))
        nearest = np.minimum(nearest, np.hypot(cx - cx[i], cy - cy[i]))
    return picks


def search_from_places(locate, first, here_xy, clearance, gx, gy, searched_from: list, count: int, robot_radius_m: float,
                       drive, pose_xy):
    """The answer of `locate()` from the first of up to `count` `vantage_points` where it finds the
    object; `ObjectNotFound` (`first`'s message, then how many places were reached) when none does.

    first: the `ObjectNotFound` raised where the robot stands (`here_xy`); searched_from: the (x, y)
    of this episode's searches that found nothing, extended in place (here, and every place that
    showed nothing); drive(xy) -> bool: drives there, False when it could not (it may raise to abort,
    e.g. a cancel); pose_xy() -> (x, y): where the robot stands after a drive."""
    from vlm_agent.skills.api import ObjectNotFound

    searched_from.append((float(here_xy[0]), float(here_xy[1])))
    places = vantage_points(clearance, gx, gy, here_xy, searched_from, count=count, robot_radius_m=robot_radius_m)
    reached = 0
    for xy in places:
        if not drive(xy):
            continue
        reached += 1
        try:
            return locate()
        except ObjectNotFound:
            x, y = pose_xy()
            searched_from.append((float(x), float(y)))
    if not places:
        where = "; the map has nowhere new to look from"
    else:
        where = f"; nor from {reached} other place{'s' * (reached != 1)} on the map" + \
            (f" ({len(places) - reached} could not be reached)" if reached < len(places) else "")
    raise ObjectNotFound(f"{first}{where}") from None


__all__ = ["vantage_points", "search_from_places"]
