"""Obstacle stop in the base frame from one depth camera (plain Python + numpy, no ROS).

In the spirit of Nav2's collision monitor: depth pixels become 3D points in `base_link`, points between a
floor and a ceiling height are obstacles, and a command is blocked when the robot's footprint, swept along
the commanded motion for a stopping distance, would reach one.

Frames and units (REP-103, REP-118)
-----------------------------------
- `base_link`: x forward, y left, z up, metres; origin at the footprint centre, z = 0 on the floor
  (if your base_link sits above the floor, shift `min_height_m`/`max_height_m` by its height).
- `camera_link`: the camera body, x forward, y left, z up. Its mounting pose in `base_link` is
  `CameraMount(x, y, z, roll, pitch, yaw)`, metres and radians, URDF fixed-axis RPY
  (R = Rz(yaw) Ry(pitch) Rx(roll)); a camera pitched down has pitch > 0.
- `camera_color_optical_frame` / depth optical frame: z forward, x right, y down. Its rotation from
  `camera_link` is fixed (`OPTICAL_IN_LINK`).
- Depth images: (H, W) float metres along the optical z axis (not along the ray). NaN, 0 and negative
  values are "no return"; +inf ("nothing within range", REP-117) and -inf ("too close") give no
  obstacle point, and where rule 4 expects a return (the ray must meet the floor nearby) they count
  as missing returns like NaN. `depth_array_to_metres` converts 16UC1/mono16
  millimetres and 32FC1 metres to this.
- Intrinsics (fx, fy, cx, cy in pixels) must be those of the *depth* image (the depth stream's
  CameraInfo, or the colour one for depth aligned to colour); a size mismatch raises. The depth image is
  taken as rectified (distortion ignored), as RealSense and simulator depth streams are.

Back-projection: pixel (u, v) with depth z -> p_optical = z * ((u - cx)/fx, (v - cy)/fy, 1) ->
p_base = R_base_optical @ p_optical + t_base. Pixels are subsampled on a regular grid (at most
`max_samples`) so one frame costs well under a millisecond of numpy on an Orin core.

The rules, for a command (v m/s along +x, w rad/s counter-clockwise), evaluated by `ObstacleStop.check`
------------------------------------------------------------------------------------------------
1. **Obstacle points** are back-projected returns with `min_height_m <= z <= max_height_m`: the floor
   (below `min_height_m`) is never an obstacle, an overhang above `max_height_m` (a table top the robot
   passes under, a door frame) is ignored.
2. **The stop zone** is the footprint (circle of `radius_m` or a polygon, plus `padding_m`) swept along
   the commanded arc for a path length `|v| * time_to_stop_s + stop_distance_m` (+ `extra_m`, which the
   supervisor sets to speed x age of the depth frame), so it grows with speed;
   turning in place sweeps the footprint through `|w| * time_to_stop_s + stop_distance_m / R` radians
   (R = the footprint's bounding radius: the margin as an arc at its outermost point). Only points the
   motion brings closer to the footprint count: an object behind a robot driving forward, or inside a
   round footprint that turns in place (the robot itself, a touching wall), does not block.
3. **Blocked** when at least `min_points` obstacle points lie in the zone; the reported distance is the
   nearest such point's clearance from the (unpadded) footprint in the floor plane.
4. **Blind is blocked** (forward motion that moves the footprint at least 5 cm, the direction the camera
   looks; a tight circle with a tiny v counts as turning on the spot): among the sampled pixels
   whose rays pass through the zone volume and would meet the floor within `expected_range_m` (so a
   healthy sensor must return something there), fewer than `min_valid_fraction` valid returns means
   blocked. A box pressed against the lens, or inside the sensor's minimum range, blanks most pixels
   with 0/NaN: it fails this rule instead of passing as "nothing seen". If no pixel sees the zone at
   all, forward motion is blocked too (the mounting cannot see where the robot is going).
5. Reversing and turning are not covered by a forward camera beyond rule 2's sweep (a polygon
   corner swinging into a seen point still blocks); the supervisor keeps them allowed, as before.

Known limit (reported by `ObstacleStop.floor_blind_distance_m`): a camera high up and pitched down does
not see the floor right in front of the robot. The sim robot (camera 0.95 m high, 20 degrees down, 60
degree vertical FOV, 7 cm behind the centre) first sees the floor 0.73 m ahead of its centre, 0.53 m ahead
of its 0.20 m footprint; an object lower than about 0.3 m that is already inside that band is invisible
to this rule (it was visible on the way in). Closing that gap needs memory of earlier points (odometry-
transformed) or a second sensor; it is not done here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlm_agent.sensors.camera_model import CameraIntrinsics

# Columns: the optical frame's x (right), y (down), z (forward) axes expressed in camera_link (x fwd, y left, z up).
OPTICAL_IN_LINK = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

_EPS_APPROACH_M = 1e-3  # a point must come this much closer to count as approached (rotation round-off)
_MAX_SWEEP_POSES = 400
_MIN_SPEED = 1e-6  # m/s and rad/s: slower counts as standing still (one threshold for every rule)
# A forward motion whose footprint moves less than this (a tight circle: tiny v, large w) is turning on the
# spot for rule 4: the zone is a thin shell around the footprint that no camera sees.
_ON_THE_SPOT_M = 0.05


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(3, 3) rotation for URDF fixed-axis roll, pitch, yaw in radians: Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp, cy, sy = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


@dataclass(frozen=True)
class CameraMount:
    """Pose of `camera_link` (x forward, y left, z up) in `base_link`: metres and radians (URDF RPY).

    Example: the sim robot, `CameraMount(-0.07, 0.0, 0.95, pitch=math.radians(20))`.
    """

    x: float
    y: float
    z: float
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def __post_init__(self):
        for name in ("x", "y", "z", "roll", "pitch", "yaw"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"CameraMount.{name}: must be finite, got {getattr(self, name)}")

    def optical_to_base(self) -> tuple[np.ndarray, np.ndarray]:
        """(R (3, 3), t (3,)) with p_base = R @ p_optical + t, metres."""
        return rpy_matrix(self.roll, self.pitch, self.yaw) @ OPTICAL_IN_LINK, np.array([self.x, self.y, self.z], float)

    @classmethod
    def from_optical_transform(cls, rotation: np.ndarray, translation) -> "CameraMount":
        """The mount whose optical frame has this pose in base_link (e.g. from a TF lookup of the optical frame)."""
        r = np.asarray(rotation, float) @ OPTICAL_IN_LINK.T  # camera_link in base_link
        if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-6):
            raise ValueError("CameraMount.from_optical_transform: rotation must be a (3, 3) rotation matrix")
        pitch = math.asin(max(-1.0, min(1.0, -r[2, 0])))
        if abs(abs(r[2, 0]) - 1.0) < 1e-9:  # gimbal lock: fold roll into yaw
            roll, yaw = 0.0, math.atan2(-r[0, 1], r[1, 1])
        else:
            roll, yaw = math.atan2(r[2, 1], r[2, 2]), math.atan2(r[1, 0], r[0, 0])
        t = [float(v) for v in translation]
        return cls(t[0], t[1], t[2], roll, pitch, yaw)


@dataclass(frozen=True)
class Footprint:
    """The robot's outline in the floor plane of `base_link`, metres.

    `polygon` (vertices (x, y) in order, either direction) wins over `radius_m` when given.
    `padding_m` is added around it for the stop zone (not for the reported clearance).
    """

    radius_m: float = 0.2
    polygon: tuple[tuple[float, float], ...] = ()
    padding_m: float = 0.0

    def __post_init__(self):
        if self.polygon:
            poly = np.asarray(self.polygon, float)
            if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3 or not np.all(np.isfinite(poly)):
                raise ValueError(f"Footprint.polygon: need at least 3 finite (x, y) vertices, got {self.polygon}")
            object.__setattr__(self, "polygon", tuple((float(x), float(y)) for x, y in poly))
        elif not (math.isfinite(self.radius_m) and self.radius_m > 0):
            raise ValueError(f"Footprint.radius_m: must be > 0, got {self.radius_m}")
        if not (math.isfinite(self.padding_m) and self.padding_m >= 0):
            raise ValueError(f"Footprint.padding_m: must be >= 0, got {self.padding_m}")

    @property
    def bounding_radius_m(self) -> float:
        """Largest distance of the outline from the origin, metres."""
        if self.polygon:
            return float(np.max(np.hypot(*np.asarray(self.polygon).T)))
        return self.radius_m

    @property
    def half_width_m(self) -> float:
        """Largest |y| of the outline, metres."""
        return float(max(abs(y) for _, y in self.polygon)) if self.polygon else self.radius_m

    @property
    def front_x_m(self) -> float:
        """Forward extent of the outline (its largest x), metres."""
        return float(max(x for x, _ in self.polygon)) if self.polygon else self.radius_m

    def signed_distance(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) points (metres) -> (...) distance to the outline, negative inside."""
        xy = np.asarray(xy, float)
        if not self.polygon:
            return np.hypot(xy[..., 0], xy[..., 1]) - self.radius_m
        poly = np.asarray(self.polygon)
        ax, ay = poly[:, 0], poly[:, 1]
        bx, by = np.roll(ax, -1), np.roll(ay, -1)  # edges a -> b, (E,)
        abx, aby = bx - ax, by - ay
        px, py = xy[..., 0:1], xy[..., 1:2]  # (..., 1) against (E,)
        t = np.clip(((px - ax) * abx + (py - ay) * aby) / (abx * abx + aby * aby), 0.0, 1.0)
        qx, qy = px - ax - t * abx, py - ay - t * aby
        dist = np.sqrt(np.min(qx * qx + qy * qy, axis=-1))
        # Even-odd rule: count the edges crossed by a ray from the point towards +x.
        straddle = (ay > py) != (by > py)
        x_cross = ax + (py - ay) * abx / np.where(aby == 0.0, 1.0, aby)
        inside = np.count_nonzero(straddle & (px < x_cross), axis=-1) % 2 == 1
        return np.where(inside, -dist, dist)


@dataclass(frozen=True)
class ObstacleParams:
    """The tunables of the obstacle rule (metres, seconds); see the module docstring for their role.

    min_height_m / max_height_m: the obstacle band above the floor in base_link z (floor below, overhangs above).
    stop_distance_m: path length kept free ahead of the footprint at zero speed.
    time_to_stop_s: the zone grows by |v| * this (reaction latency + braking time at the base's deceleration).
    min_points: sampled points in the zone needed to block (rejects single-pixel speckle).
    min_valid_fraction: valid returns needed among the pixels that see the zone (forward motion).
    expected_range_m: a pixel whose ray meets the floor within this range must return something.
    max_samples: at most this many pixels per frame (regular grid subsampling).
    sweep_step_m: spacing of the swept footprint poses along the path.
    """

    min_height_m: float = 0.05
    max_height_m: float = 1.1
    stop_distance_m: float = 0.35
    time_to_stop_s: float = 0.5
    min_points: int = 3
    min_valid_fraction: float = 0.5
    expected_range_m: float = 4.0
    max_samples: int = 6000
    sweep_step_m: float = 0.02

    def __post_init__(self):
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        if not all(math.isfinite(v) for v in values.values()):
            raise ValueError(f"ObstacleParams: all values must be finite, got {values}")
        if self.max_height_m <= self.min_height_m:
            raise ValueError(f"ObstacleParams.max_height_m: {self.max_height_m} must be above min_height_m {self.min_height_m}")
        if self.stop_distance_m < 0 or self.time_to_stop_s < 0:
            raise ValueError("ObstacleParams: stop_distance_m and time_to_stop_s must be >= 0")
        if self.min_points < 1 or self.max_samples < 16 or self.sweep_step_m <= 0 or self.expected_range_m <= 0:
            raise ValueError("ObstacleParams: min_points >= 1, max_samples >= 16, sweep_step_m > 0 and expected_range_m > 0 required")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"ObstacleParams.min_valid_fraction: must be in [0, 1], got {self.min_valid_fraction}")


@dataclass(frozen=True)
class ObstacleDecision:
    """The verdict for one command.

    blocked: the command must not pass. reason: one line for logs, diagnostics and the planner.
    distance_m: clearance (floor plane, metres) between the footprint and the nearest obstacle point in
        the zone, NaN when none. points: sampled obstacle points in the zone.
    valid_fraction: valid returns among the pixels that see the zone, NaN when not assessed.
    zone_length_m: path length of the zone ahead of the footprint (0 when turning in place).
    """

    blocked: bool
    reason: str
    distance_m: float = float("nan")
    points: int = 0
    valid_fraction: float = float("nan")
    zone_length_m: float = 0.0


def depth_array_to_metres(array: np.ndarray, encoding: str) -> np.ndarray:
    """A depth image array -> (H, W) float32 metres with this module's conventions.

    16UC1/mono16: millimetres (REP-118), 0 = no return -> NaN. 32FC1: metres; finite values <= 0 -> NaN,
    +inf (beyond range) and -inf (too close) kept as REP-117 says. Other encodings raise ValueError.
    """
    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"depth: expected an (H, W) array, got shape {a.shape}")
    if encoding in ("16UC1", "mono16"):
        if a.dtype != np.uint16:
            raise ValueError(f"depth: {encoding} needs a uint16 array, got {a.dtype}")
        out = a.astype(np.float32) * np.float32(1e-3)
        out[a == 0] = np.nan
        return out
    if encoding == "32FC1":
        if a.dtype != np.float32:
            raise ValueError(f"depth: 32FC1 needs a float32 array, got {a.dtype}")
        out = a.astype(np.float32, copy=True)
        out[np.isfinite(out) & (out <= 0)] = np.nan
        return out
    raise ValueError(f"depth: encoding must be 16UC1/mono16 (mm) or 32FC1 (m), got '{encoding}'")


def sweep_poses(v: float, w: float, footprint: Footprint, params: ObstacleParams, extra_m: float = 0.0) -> tuple[np.ndarray, float]:
    """Poses (K, 3) = (x m, y m, yaw rad) in base_link along the commanded arc, k = 0 the current pose,
    and the path length of the zone (metres; 0 when turning in place). K = 1 when (v, w) = (0, 0).
    `extra_m`: added path length (the distance the base may have covered since the depth frame)."""
    radius = footprint.bounding_radius_m
    if abs(v) > _MIN_SPEED:
        length = abs(v) * params.time_to_stop_s + params.stop_distance_m + max(0.0, extra_m)
        duration = length / abs(v)
        if abs(w) > 1e-9:
            duration = min(duration, 2.0 * math.pi / abs(w))  # a closed circle covers everything it can
    elif abs(w) > _MIN_SPEED:
        length = 0.0
        angle = min(abs(w) * params.time_to_stop_s + (params.stop_distance_m + max(0.0, extra_m)) / radius, 2.0 * math.pi)
        duration = angle / abs(w)
    else:
        return np.zeros((1, 3)), 0.0
    travel = max(abs(v) * duration, abs(w) * duration * radius)
    n = int(min(_MAX_SWEEP_POSES, max(1, math.ceil(travel / params.sweep_step_m))))
    t = np.linspace(0.0, duration, n + 1)
    theta = w * t
    if abs(w) > 1e-9:
        x, y = v / w * np.sin(theta), v / w * (1.0 - np.cos(theta))
    else:
        x, y = v * t, np.zeros_like(t)
    return np.stack([x, y, theta], axis=1), length


def footprint_displacement(poses: np.ndarray, footprint: Footprint) -> float:
    """Largest distance any point of the outline moves along the poses (metres): the centre's for a circle
    (rotation leaves it unchanged), the vertices' for a polygon."""
    if footprint.polygon:
        verts = np.asarray(footprint.polygon)  # (V, 2)
        c, s = np.cos(poses[:, 2:3]), np.sin(poses[:, 2:3])  # (K, 1)
        moved_x = poses[:, 0:1] + c * verts[:, 0] - s * verts[:, 1]
        moved_y = poses[:, 1:2] + s * verts[:, 0] + c * verts[:, 1]
        return float(np.max(np.hypot(moved_x - verts[:, 0], moved_y - verts[:, 1])))
    return float(np.max(np.hypot(poses[:, 0], poses[:, 1])))


def approached_in_zone(xy: np.ndarray, poses: np.ndarray, footprint: Footprint) -> tuple[np.ndarray, np.ndarray]:
    """For (N, 2) floor-plane points in base_link: (in_zone (N,) bool, clearance now (N,) metres).

    A point is in the zone when the padded footprint at some pose k >= 1 reaches it and the motion brings
    the footprint closer to it than it is now (rule 2 of the module docstring).
    """
    xy = np.asarray(xy, float).reshape(-1, 2)
    sd0 = footprint.signed_distance(xy)
    in_zone = np.zeros(len(xy), bool)
    if len(poses) < 2 or len(xy) == 0:
        return in_zone, sd0
    # Only (pose, point) pairs within the padded bounding circle can touch: evaluate those alone.
    reach = footprint.bounding_radius_m + footprint.padding_m
    dx, dy = xy[None, :, 0] - poses[1:, 0:1], xy[None, :, 1] - poses[1:, 1:2]  # (K-1, N)
    k, n = np.nonzero(dx * dx + dy * dy <= reach * reach)
    if len(n) == 0:
        return in_zone, sd0
    th = poses[1:, 2][k]
    c, s = np.cos(th), np.sin(th)
    ex, ey = dx[k, n], dy[k, n]
    local = np.stack([c * ex + s * ey, -s * ex + c * ey], axis=-1)  # the points in each future base frame
    sd_min = np.full(len(xy), np.inf)
    np.minimum.at(sd_min, n, footprint.signed_distance(local))
    return (sd_min <= footprint.padding_m) & (sd_min < sd0 - _EPS_APPROACH_M), sd0


class ObstacleStop:
    """Depth frames in, a decision per command out (see the module docstring for the rules).

    Args:
        intrinsics: pinhole model of the depth image (width, height, fx, fy, cx, cy in pixels).
        mount: pose of the camera in base_link.
        footprint: the robot outline (base_link, metres).
        params: the rule's tunables.

    Call `update_depth(depth_m)` per frame (cheap: back-projection of at most `max_samples` pixels) and
    `check(v, w)` per command tick (cheap: the zone test on the stored points; the pixels that see the zone
    are cached per quantised command, see `_coverage`). About 2 ms per tick and frame together for
    320x240 depth on one desktop core.
    """

    def __init__(self, intrinsics: CameraIntrinsics, mount: CameraMount, footprint: Footprint, params: ObstacleParams | None = None):
        self.intrinsics, self.mount, self.footprint = intrinsics, mount, footprint
        self.params = params or ObstacleParams()
        h, w = intrinsics.height, intrinsics.width
        stride = max(1, math.ceil(math.sqrt(h * w / self.params.max_samples)))
        # Sample the centre of each stride x stride cell.
        self._rows = np.arange((stride - 1) // 2, h, stride)
        self._cols = np.arange((stride - 1) // 2, w, stride)
        self.stride = stride
        rot, self._origin = mount.optical_to_base()
        vv, uu = np.meshgrid(self._rows.astype(float), self._cols.astype(float), indexing="ij")
        rays_opt = np.stack([(uu - intrinsics.cx) / intrinsics.fx, (vv - intrinsics.cy) / intrinsics.fy, np.ones_like(uu)], -1)
        # Ray per sampled pixel in base_link, scaled so that a point at depth z is origin + z * ray.
        self._rays = (rays_opt.reshape(-1, 3) @ rot.T).astype(np.float64)  # (P, 3)
        self._band = self._band_segments()
        self._coverage_cache: dict[tuple[int, int, int], np.ndarray] = {}
        self._points: np.ndarray | None = None  # (M, 2) obstacle points in the floor plane
        self._valid: np.ndarray | None = None  # (P,) bool
        self.frames = 0

    # -- geometry that does not depend on the depth ---------------------------------------------
    def _band_segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pixel index (Q,), t0 (Q,), t1 (Q,)): the rays that meet the floor within `expected_range_m`, and
        the depths between which each ray lies inside the obstacle height band."""
        p = self.params
        oz, dz = self._origin[2], self._rays[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_floor = np.where(dz < 0, -oz / dz, np.inf)  # depth at which the ray meets z = 0
            t_lo = np.where(dz < 0, (p.max_height_m - oz) / dz, 0.0)
            t_hi = np.where(dz < 0, (p.min_height_m - oz) / dz, 0.0)
        horizontal = np.hypot(self._rays[:, 0], self._rays[:, 1]) * t_floor
        keep = np.isfinite(t_floor) & (horizontal <= p.expected_range_m) & (t_hi > 0)
        return np.flatnonzero(keep), np.maximum(t_lo[keep], 0.0), t_hi[keep]

    @property
    def floor_blind_distance_m(self) -> float:
        """How far ahead of the footprint's front the sampled pixels first see the floor within the
        footprint's width (metres; inf if never): nearer, only taller objects are visible."""
        oz, rays = self._origin[2], self._rays
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(rays[:, 2] < 0, -oz / rays[:, 2], np.nan)
        xy = self._origin[None, :2] + t[:, None] * rays[:, :2]
        half_width = self.footprint.half_width_m
        ok = np.isfinite(t) & (np.abs(xy[:, 1]) <= half_width) & (xy[:, 0] > 0)
        return float(np.min(xy[ok, 0]) - self.footprint.front_x_m) if np.any(ok) else math.inf

    def _coverage(self, v: float, w: float, extra_m: float, per_ray: int = 8) -> np.ndarray:
        """(Q,) indices of sampled pixels whose rays pass through the zone of this command (rule 4).

        Which pixels count only shapes a statistic, so the zone is computed for the command quantised
        (v up to the next 0.1 m/s, w to 0.25 rad/s, extra up to 5 cm) and cached: a controller streaming
        ever-changing commands costs one computation per bucket, not one per tick. Each ray's in-band part
        is clipped to the zone's bounding box in the floor plane and sampled there, so small zones near
        the robot are sampled as densely as large ones."""
        key = (math.ceil(v / 0.1 - 1e-9), round(w / 0.25), math.ceil(extra_m / 0.05 - 1e-9))
        hit = self._coverage_cache.get(key)
        if hit is not None:
            return hit
        poses, _ = sweep_poses(key[0] * 0.1, key[1] * 0.25, self.footprint, self.params, key[2] * 0.05)
        idx, t0, t1 = self._band
        reach = self.footprint.bounding_radius_m + self.footprint.padding_m
        lo, hi = poses[:, :2].min(axis=0) - reach, poses[:, :2].max(axis=0) + reach
        o, d = self._origin[:2], self._rays[idx, :2]
        with np.errstate(divide="ignore", invalid="ignore"):
            ta, tb = (lo - o) / d, (hi - o) / d  # (Q, 2) slab entry/exit per axis
        # An axis the ray runs parallel to: inside the slab -> no limit, outside -> empty.
        inside = (o >= lo) & (o <= hi)
        enter = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(ta, tb))
        leave = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(ta, tb))
        c0, c1 = np.maximum(t0, enter.max(axis=1)), np.minimum(t1, leave.min(axis=1))
        crosses = c1 >= c0
        idx, c0, c1 = idx[crosses], c0[crosses], c1[crosses]
        t = c0[:, None] + (c1 - c0)[:, None] * np.linspace(0.0, 1.0, per_ray)[None, :]  # (Q', per_ray)
        pts = o[None, None, :] + t[..., None] * self._rays[idx][:, None, :2]
        # Coarser poses suffice for "which pixels see the zone" (about 2 cm apart, the last one kept).
        every = max(1, int(round(0.02 / self.params.sweep_step_m)))
        coarse = np.concatenate([poses[:-1:every], poses[-1:]])
        in_zone, _ = approached_in_zone(pts.reshape(-1, 2), coarse, self.footprint)
        hit = idx[np.any(in_zone.reshape(len(idx), per_ray), axis=1)]
        if len(self._coverage_cache) > 256:
            self._coverage_cache.clear()
        self._coverage_cache[key] = hit
        return hit

    # -- per frame ----------------------------------------------------------------------------------
    def update_depth(self, depth_m: np.ndarray) -> int:
        """A depth frame (H, W) in metres (conventions in the module docstring). Returns the number of
        obstacle points (sampled pixels with a valid return inside the height band)."""
        depth = np.asarray(depth_m)
        if depth.shape != (self.intrinsics.height, self.intrinsics.width):
            raise ValueError(
                f"depth: shape {depth.shape} does not match the camera model "
                f"{(self.intrinsics.height, self.intrinsics.width)} (use the depth stream's CameraInfo)"
            )
        z = depth[np.ix_(self._rows, self._cols)].astype(np.float64).reshape(-1)
        finite = np.isfinite(z) & (z > 0)
        # Rule 4 only asks pixels whose rays must meet the floor within expected_range_m: there "+inf,
        # nothing in range" is no more valid than NaN (a blind sensor, a hole or a drop-off).
        self._valid = finite
        pts = self._origin[None, :] + z[finite, None] * self._rays[finite]
        band = (pts[:, 2] >= self.params.min_height_m) & (pts[:, 2] <= self.params.max_height_m)
        self._points = pts[band, :2]
        self.frames += 1
        return int(len(self._points))

    def check(self, v: float, w: float, extra_m: float = 0.0) -> ObstacleDecision:
        """The decision for a command of v m/s (base_link +x) and w rad/s (counter-clockwise).

        `extra_m`: metres added to the zone because the stored points are older than the command (the
        supervisor passes speed x age of the depth frame: the base may have moved that far towards them).
        """
        if not (math.isfinite(v) and math.isfinite(w) and math.isfinite(extra_m)):
            return ObstacleDecision(True, f"obstacle check: non-finite command ({v}, {w}, extra {extra_m})")
        if self._points is None:
            return ObstacleDecision(True, "obstacle check: no depth frame yet")
        poses, length = sweep_poses(v, w, self.footprint, self.params, extra_m)
        if len(poses) < 2:
            return ObstacleDecision(False, "no motion", zone_length_m=0.0)
        valid_fraction = float("nan")
        if v > _MIN_SPEED and footprint_displacement(poses, self.footprint) >= _ON_THE_SPOT_M:
            seen = self._coverage(v, w, extra_m)
            if len(seen) == 0:
                return ObstacleDecision(
                    True, "blocked: the stop zone ahead is outside the camera's view (check the mounting pose)", zone_length_m=length
                )
            valid_fraction = float(np.count_nonzero(self._valid[seen])) / len(seen)
            if valid_fraction < self.params.min_valid_fraction:
                return ObstacleDecision(
                    True,
                    f"blocked: only {valid_fraction:.0%} valid depth where the camera sees the stop zone "
                    f"(< {self.params.min_valid_fraction:.0%}; blinded, or an object inside the sensor's minimum range)",
                    valid_fraction=valid_fraction,
                    zone_length_m=length,
                )
        in_zone, clearance = approached_in_zone(self._points, poses, self.footprint)
        count = int(np.count_nonzero(in_zone))
        if count >= self.params.min_points:
            distance = float(max(0.0, np.min(clearance[in_zone])))
            motion = "turning" if abs(v) <= _MIN_SPEED else ("forward" if v > 0 else "reverse")
            return ObstacleDecision(
                True,
                f"blocked by obstacle at {distance:.2f} m ({motion}; {count} points in the stop zone)",
                distance, count, valid_fraction, length,
            )
        return ObstacleDecision(False, "clear", float("nan"), count, valid_fraction, length)
