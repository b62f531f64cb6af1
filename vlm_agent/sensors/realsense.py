"""Intel RealSense driver core over pyrealsense2: colour + depth aligned to colour, filters, reconnects.

Plain Python (no ROS); the `realsense_camera` node only publishes what `RealSenseCamera.poll()`
returns. The frame source is injectable so everything but the USB layer is testable without a
camera:

* `PipelineSource`: a live device (optionally chosen by serial number) or playback of a recorded
  `.bag`/`.db3` file through `rs.pipeline` (`config.enable_device_from_file`).
* `SyncerSource`: frames from an `rs.syncer` fed by anything, e.g. `rs.software_device()` (tests,
  see `vlm_agent.sensors.realsense_software`). A pipeline over a software device fails in 2.55+,
  which is why this exists.

Processing per frameset (the order realsense-ros uses): decimation -> depth-to-disparity ->
spatial -> temporal -> disparity-to-depth -> hole filling -> align depth to colour. Output depth is
uint16 **millimetres** (REP-118, 0 = no return) whatever the device's depth units; colour is
(H, W, 3) uint8 RGB. With alignment the depth image has the colour image's size, intrinsics and
optical frame (`camera_color_optical_frame`).

Failure handling: `poll()` is a small state machine (`connecting` -> `streaming` -> `connecting`
...; `finished` at the end of a non-looping playback). A source that fails to start is retried
with exponential backoff; no frames for `frame_timeout_s`, or an exception from the device, counts
a disconnect, stops the source and reconnects. Nothing raises out of `poll()`.
"""
from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from vlm_agent.config import ConfigBase, param
from vlm_agent.sensors.camera_model import CameraIntrinsics

HOLE_FILLING = ("off", "fill_from_left", "farthest_from_around", "nearest_from_around")
STAMP_SOURCES = ("auto", "device", "host")
PLAYBACK_EXTENSIONS = (".bag", ".db3")
COLOR_FRAME_ID = "camera_color_optical_frame"
DEPTH_FRAME_ID = "camera_depth_optical_frame"

log = logging.getLogger(__name__)


@dataclass
class RealSenseConfig(ConfigBase):
    """RealSense camera parameters (the `realsense_camera` node's ROS parameters).

    Attributes:
        serial_number: device to open; "" takes the first one found.
        playback_file: a recorded `.bag`/`.db3` to play instead of a device ("" = live).
        playback_loop: restart the file at its end (otherwise the camera reports `finished`).
        playback_realtime: pace playback at the recorded rate (False: as fast as it is read).
        width, height, fps: colour stream profile; depth_width/depth_height the depth profile
            (D400 depth: 640x480 or 848x480; 0 = same as colour).
        align_depth_to_color: reproject depth into the colour camera (same size, same pixels).
        decimation: depth decimation factor (1 = off, 2..8), before alignment.
        spatial_filter / temporal_filter: edge-preserving spatial and temporal smoothing, with
            their alpha (0..1, weight of the new sample) and delta (step in depth units that counts
            as an edge) parameters.
        hole_filling: hole-filling mode, or "off".
        frame_timeout_s: no complete frameset for this long means the device is gone.
        reconnect_backoff_s / reconnect_backoff_max_s: first and largest wait between reconnects.
        stamp_source: "device" uses the frame's global/system timestamp; "host" the receive time;
            "auto" uses device time for live global/system-time frames and host time otherwise
            (playback and hardware-clock frames would be in the past or on another clock).
    """

    serial_number: str = param("", "serial number of the device to open; empty = first found", read_only=True)
    playback_file: str = param("", "recorded .bag/.db3 file to play back instead of a device", read_only=True)
    playback_loop: bool = param(False, "restart the playback file at its end", read_only=True)
    playback_realtime: bool = param(True, "pace playback at the recorded rate", read_only=True)
    width: int = param(640, "colour width (px)", min=1, max=4096, read_only=True)
    height: int = param(480, "colour height (px)", min=1, max=4096, read_only=True)
    fps: int = param(30, "frame rate (Hz)", min=1, max=300, read_only=True)
    depth_width: int = param(0, "depth width (px); 0 = colour width", min=0, max=4096, read_only=True)
    depth_height: int = param(0, "depth height (px); 0 = colour height", min=0, max=4096, read_only=True)
    align_depth_to_color: bool = param(True, "reproject depth into the colour camera")
    decimation: int = param(1, "depth decimation factor (1 = off)", min=1, max=8)
    spatial_filter: bool = param(False, "edge-preserving spatial depth filter")
    spatial_alpha: float = param(0.5, "spatial filter alpha", min=0.25, max=1.0)
    spatial_delta: int = param(20, "spatial filter delta (depth units)", min=1, max=50)
    temporal_filter: bool = param(False, "temporal depth filter")
    temporal_alpha: float = param(0.4, "temporal filter alpha", min=0.0, max=1.0)
    temporal_delta: int = param(20, "temporal filter delta (depth units)", min=1, max=100)
    hole_filling: str = param("off", "depth hole filling mode", choices=HOLE_FILLING)
    frame_timeout_s: float = param(2.0, "no frames for this long = device lost (s)", min=0.05, max=60.0)
    reconnect_backoff_s: float = param(0.5, "first wait before a reconnect (s)", min=0.0, max=60.0)
    reconnect_backoff_max_s: float = param(8.0, "largest wait between reconnects (s)", min=0.0, max=600.0)
    stamp_source: str = param("auto", "which clock stamps frames", choices=STAMP_SOURCES)
    color_frame_id: str = param(COLOR_FRAME_ID, "frame_id of colour (and aligned depth) images", read_only=True)
    depth_frame_id: str = param(DEPTH_FRAME_ID, "frame_id of unaligned depth images", read_only=True)

    def __post_init__(self):
        super().__post_init__()
        if self.playback_file and not self.playback_file.endswith(PLAYBACK_EXTENSIONS):
            raise ValueError(f"RealSenseConfig.playback_file: '{self.playback_file}' must end in {PLAYBACK_EXTENSIONS}")
        if self.reconnect_backoff_max_s < self.reconnect_backoff_s:
            raise ValueError("RealSenseConfig.reconnect_backoff_max_s: must be >= reconnect_backoff_s")
        if (self.depth_width == 0) != (self.depth_height == 0):
            raise ValueError("RealSenseConfig.depth_width/depth_height: set both or neither")


@dataclass
class RGBDFrame:
    """One processed frameset.

    Attributes:
        stamp_s: the stamp to publish (seconds, chosen by `stamp_source`).
        device_stamp_s: the frame's own timestamp in seconds (its domain in `timestamp_domain`).
        host_stamp_s: host wall-clock time when the frameset was received.
        frame_number: the colour frame's counter.
        color: (H, W, 3) uint8 RGB.
        depth_mm: (Hd, Wd) uint16 millimetres, 0 = no return; (H, W) when aligned.
        color_intrinsics, depth_intrinsics: pinhole models; equal (same frame) when aligned.
    """

    stamp_s: float
    device_stamp_s: float
    host_stamp_s: float
    frame_number: int
    color: np.ndarray
    depth_mm: np.ndarray
    color_intrinsics: CameraIntrinsics
    depth_intrinsics: CameraIntrinsics
    timestamp_domain: str = ""


class FrameSource(Protocol):
    """Where framesets come from. `wait` returns None on timeout and raises when the device fails."""

    name: str
    is_playback: bool

    def start(self) -> None: ...

    def wait(self, timeout_s: float): ...

    def stop(self) -> None: ...


def _has_depth_and_color(frames) -> bool:
    return bool(frames) and bool(frames.get_depth_frame()) and bool(frames.get_color_frame())


class PipelineSource:
    """A live RealSense (by serial number, or the first found) or a recorded file, via `rs.pipeline`."""

    def __init__(self, config: RealSenseConfig):
        self.config = config
        self.is_playback = bool(config.playback_file)
        self.name = config.playback_file if self.is_playback else (config.serial_number or "first device")
        self._pipeline = None

    def start(self) -> None:
        import pyrealsense2 as rs

        c = self.config
        rs_config = rs.config()
        if self.is_playback:
            if not os.path.isfile(c.playback_file):
                raise FileNotFoundError(f"playback_file {c.playback_file} does not exist")
            rs_config.enable_device_from_file(c.playback_file, repeat_playback=c.playback_loop)
            rs_config.enable_stream(rs.stream.depth)
            rs_config.enable_stream(rs.stream.color)
        else:
            devices = rs.context().query_devices()
            serials = [d.get_info(rs.camera_info.serial_number) for d in devices]
            if not serials:
                raise RuntimeError("no RealSense device connected")
            if c.serial_number and c.serial_number not in serials:
                raise RuntimeError(f"RealSense {c.serial_number} not connected (connected: {', '.join(serials)})")
            if c.serial_number:
                rs_config.enable_device(c.serial_number)
            dw, dh = (c.depth_width, c.depth_height) if c.depth_width else (c.width, c.height)
            rs_config.enable_stream(rs.stream.depth, dw, dh, rs.format.z16, c.fps)
            rs_config.enable_stream(rs.stream.color, c.width, c.height, rs.format.rgb8, c.fps)
        pipeline = rs.pipeline()
        profile = pipeline.start(rs_config)
        if self.is_playback:
            profile.get_device().as_playback().set_real_time(c.playback_realtime)
        self._pipeline = pipeline

    def wait(self, timeout_s: float):
        ok, frames = self._pipeline.try_wait_for_frames(max(1, int(timeout_s * 1000)))
        return frames if ok else None

    def stop(self) -> None:
        if self._pipeline is not None:
            pipeline, self._pipeline = self._pipeline, None
            try:
                pipeline.stop()
            except RuntimeError:
                pass  # already stopped by a device loss


class SyncerSource:
    """Framesets from an `rs.syncer` (fed by a software device or any sensor started into it).

    `on_start`/`on_stop` open and close whatever feeds the syncer. Framesets missing depth or
    colour (the syncer emits a lone frame while it locks on) are skipped inside `wait`.
    """

    is_playback = False

    def __init__(self, syncer, on_start: Callable[[], None] | None = None, on_stop: Callable[[], None] | None = None, name: str = "syncer"):
        self.syncer = syncer
        self.name = name
        self._on_start, self._on_stop = on_start, on_stop
        self.incomplete = 0

    def start(self) -> None:
        if self._on_start:
            self._on_start()

    def wait(self, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            ok, frames = self.syncer.try_wait_for_frames(max(1, int(remaining * 1000)))
            if ok and _has_depth_and_color(frames):
                return frames
            if ok:
                self.incomplete += 1
            if remaining <= 0 or not ok:
                return None

    def stop(self) -> None:
        if self._on_stop:
            self._on_stop()


def intrinsics_from_rs(intr, frame_id: str) -> CameraIntrinsics:
    """`rs.intrinsics` -> `CameraIntrinsics` (Brown-Conrady -> plumb_bob, Kannala-Brandt4 -> equidistant)."""
    import pyrealsense2 as rs

    coeffs = [float(c) for c in intr.coeffs]
    if intr.model == rs.distortion.kannala_brandt4:
        model, coeffs = "equidistant", coeffs[:4]
    else:
        model = "plumb_bob"
    return CameraIntrinsics(
        width=int(intr.width),
        height=int(intr.height),
        fx=float(intr.fx),
        fy=float(intr.fy),
        cx=float(intr.ppx),
        cy=float(intr.ppy),
        distortion_model=model,
        distortion=coeffs,
        frame_id=frame_id,
    )


def depth_units_to_mm(raw: np.ndarray, units_m: float) -> np.ndarray:
    """Raw Z16 depth in `units_m` metres per count -> uint16 mm, rounded half up (0 stays 0, saturates at 65535)."""
    if not math.isfinite(units_m) or units_m <= 0:
        raise ValueError(f"depth units {units_m} m/count is not positive")
    if abs(units_m - 0.001) < 1e-9:
        return raw
    return np.clip(np.floor(raw.astype(np.float64) * (units_m * 1000.0) + 0.5), 0, 65535).astype(np.uint16)


class RealSenseCamera:
    """RealSense driver core: `poll()` returns the next `RGBDFrame` or None (see module docstring).

    Args:
        config: `RealSenseConfig`.
        source_factory: builds a fresh `FrameSource` per (re)connection; default `PipelineSource`.
        clock: monotonic seconds (tests pass a fake); sleep: waits while backing off.
        on_event: `(level, message)` for state changes ("info", "warning", "error").
    """

    def __init__(
        self,
        config: RealSenseConfig | None = None,
        source_factory: Callable[[], FrameSource] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_event: Callable[[str, str], None] | None = None,
    ):
        self.config = config or RealSenseConfig()
        self._factory = source_factory or (lambda: PipelineSource(self.config))
        self._clock, self._sleep = clock, sleep
        self._on_event = on_event or (lambda level, msg: getattr(log, level)(msg))
        self.state = "connecting"
        self.last_error = ""
        self.frames = 0
        self.disconnects = 0
        self.connect_attempts = 0
        self.connect_failures = 0
        self.malformed = 0
        self.skipped: dict[str, int] = {}  # framesets not published: "duplicate", "unpaired"
        self._last_color: tuple[int, float] | None = None
        self._source: FrameSource | None = None
        self._backoff = self.config.reconnect_backoff_s
        self._next_attempt = clock()
        self._last_frame = clock()
        self._filters = None
        self._filter_key = None

    # -- state machine ----------------------------------------------------------------------
    def poll(self, timeout_s: float = 0.1) -> RGBDFrame | None:
        """Advance the state machine by at most about `timeout_s`; returns a frame or None."""
        if self.state == "finished":
            self._sleep(timeout_s)
            return None
        if self._source is None:
            if not self._connect(timeout_s):
                return None
        try:
            frames = self._source.wait(min(timeout_s, self.config.frame_timeout_s))
        except Exception as exc:  # noqa: BLE001 (librealsense raises RuntimeError for everything)
            self._lost(f"device error: {exc}")
            return None
        now = self._clock()
        if frames is None:
            if now - self._last_frame > self.config.frame_timeout_s:
                if self._source.is_playback and not self.config.playback_loop:
                    self._finish()
                else:
                    self._lost(f"no frames for {now - self._last_frame:.1f} s")
            return None
        self._last_frame = now
        self._backoff = self.config.reconnect_backoff_s  # a delivering device resets the backoff
        skip = self._pairing_problem(frames)
        if skip is not None:
            self.skipped[skip] = self.skipped.get(skip, 0) + 1
            return None
        try:
            frame = self.process(frames)
        except (RuntimeError, ValueError) as exc:
            self.malformed += 1
            self.last_error = f"malformed frameset: {exc}"
            self._on_event("warning", self.last_error)
            return None
        self.frames += 1
        return frame

    def _pairing_problem(self, frames) -> str | None:
        """Why a frameset must not be published, or None.

        librealsense's syncer (and playback in particular) emits a frameset whenever *either*
        stream has a new frame, reusing the other stream's last frame. Publishing those would
        repeat colour frames or pair colour with depth from another instant, so a frameset is
        published only when its colour frame is new (`duplicate`) and its depth frame is within
        half a colour frame period of it (`unpaired`).
        """
        try:
            depth, color = frames.get_depth_frame(), frames.get_color_frame()
            if not depth or not color:
                return "unpaired"
            key = (int(color.get_frame_number()), float(color.get_timestamp()))
            if key == self._last_color:
                return "duplicate"
            fps = color.get_profile().fps() or 30
            if abs(depth.get_timestamp() - color.get_timestamp()) > 500.0 / fps:  # timestamps in ms
                return "unpaired"
        except RuntimeError:
            return None  # let process() report it as malformed
        self._last_color = key
        return None

    def _connect(self, timeout_s: float) -> bool:
        wait = self._next_attempt - self._clock()
        if wait > 0:
            self._sleep(min(wait, timeout_s))
            if self._next_attempt > self._clock():
                return False
        self.connect_attempts += 1
        source = None
        try:
            source = self._factory()
            source.start()
        except Exception as exc:  # noqa: BLE001 (a missing device, a bad file, a USB error)
            self.connect_failures += 1
            self.last_error = f"cannot open {getattr(source, 'name', 'camera')}: {exc}"
            self._next_attempt = self._clock() + self._backoff
            self._on_event("warning", f"{self.last_error}; retrying in {self._backoff:.1f} s")
            self._backoff = min(max(self._backoff * 2, 0.05), self.config.reconnect_backoff_max_s)
            return False
        self._source = source
        self._last_color = None
        self._filters = None  # temporal filter history must not span two connections
        self._last_frame = self._clock()
        self.state = "streaming"
        self._on_event("info", f"streaming from {source.name}")
        return True

    def _lost(self, reason: str) -> None:
        self.disconnects += 1
        self.last_error = reason
        self._on_event("error", f"camera lost ({reason}); reconnecting")
        self._stop_source()
        self.state = "connecting"
        self._next_attempt = self._clock() + self._backoff
        self._backoff = min(max(self._backoff * 2, 0.05), self.config.reconnect_backoff_max_s)

    def _finish(self) -> None:
        self._on_event("info", f"playback of {self._source.name} finished after {self.frames} frames")
        self._stop_source()
        self.state = "finished"

    def _stop_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.stop()
            except Exception as exc:  # noqa: BLE001 (stopping a vanished device may raise; it is gone either way)
                log.debug("stopping source failed: %s", exc)

    def close(self) -> None:
        self._stop_source()
        self.state = "finished"

    def stats(self) -> dict[str, object]:
        """Counters for status reports."""
        return {
            "state": self.state,
            "frames": self.frames,
            "disconnects": self.disconnects,
            "connect_attempts": self.connect_attempts,
            "connect_failures": self.connect_failures,
            "malformed": self.malformed,
            **{f"skipped.{k}": v for k, v in self.skipped.items()},
            "last_error": self.last_error,
        }

    # -- processing ---------------------------------------------------------------------------
    def _build_filters(self):
        import pyrealsense2 as rs

        c = self.config
        key = (c.decimation, c.spatial_filter, c.spatial_alpha, c.spatial_delta, c.temporal_filter, c.temporal_alpha,
               c.temporal_delta, c.hole_filling, c.align_depth_to_color)
        if self._filters is not None and key == self._filter_key:
            return self._filters
        chain = []
        if c.decimation > 1:
            f = rs.decimation_filter()
            f.set_option(rs.option.filter_magnitude, c.decimation)
            chain.append(f)
        if c.spatial_filter or c.temporal_filter:
            chain.append(rs.disparity_transform(True))  # smoothing works in disparity (1/depth), as in realsense-ros
            if c.spatial_filter:
                f = rs.spatial_filter()
                f.set_option(rs.option.filter_smooth_alpha, c.spatial_alpha)
                f.set_option(rs.option.filter_smooth_delta, c.spatial_delta)
                chain.append(f)
            if c.temporal_filter:
                f = rs.temporal_filter()
                f.set_option(rs.option.filter_smooth_alpha, c.temporal_alpha)
                f.set_option(rs.option.filter_smooth_delta, c.temporal_delta)
                chain.append(f)
            chain.append(rs.disparity_transform(False))
        if c.hole_filling != "off":
            f = rs.hole_filling_filter()
            f.set_option(rs.option.holes_fill, HOLE_FILLING.index(c.hole_filling) - 1)
            chain.append(f)
        align = rs.align(rs.stream.color) if c.align_depth_to_color else None
        self._filters, self._filter_key = (chain, align), key
        return self._filters

    def process(self, frames) -> RGBDFrame:
        """Filter, align and convert one `rs.composite_frame` holding depth and colour."""
        import pyrealsense2 as rs

        host_stamp = time.time()
        chain, align = self._build_filters()
        if not _has_depth_and_color(frames):
            raise ValueError("frameset lacks depth or colour")
        # Filters given a frameset process its depth frame and return a new frameset, so the
        # filtered depth stays paired with its colour frame for alignment.
        for f in chain:
            frames = f.process(frames).as_frameset()
        if align is not None:
            frames = align.process(frames)
        depth, color = frames.get_depth_frame(), frames.get_color_frame()
        if not depth or not color:
            raise ValueError("filtering/alignment produced no depth or colour frame")
        color_intr = intrinsics_from_rs(color.get_profile().as_video_stream_profile().get_intrinsics(), self.config.color_frame_id)
        if align is not None:
            depth_intr = color_intr
        else:
            depth_intr = intrinsics_from_rs(depth.get_profile().as_video_stream_profile().get_intrinsics(), self.config.depth_frame_id)
        rgb = _color_to_rgb(color)
        raw = np.asanyarray(depth.get_data())
        if raw.dtype != np.uint16 or raw.ndim != 2:
            raise ValueError(f"depth frame is {raw.dtype} {raw.shape}, expected Z16 (H, W)")
        depth_mm = np.array(depth_units_to_mm(raw, depth.get_units()), dtype=np.uint16, copy=True)
        domain = color.get_frame_timestamp_domain()
        device_stamp = color.get_timestamp() * 1e-3
        use_device = self.config.stamp_source == "device" or (
            self.config.stamp_source == "auto"
            and not getattr(self._source, "is_playback", False)
            and domain in (rs.timestamp_domain.global_time, rs.timestamp_domain.system_time)
        )
        return RGBDFrame(
            stamp_s=device_stamp if use_device else host_stamp,
            device_stamp_s=device_stamp,
            host_stamp_s=host_stamp,
            frame_number=int(color.get_frame_number()),
            color=rgb,
            depth_mm=depth_mm,
            color_intrinsics=color_intr,
            depth_intrinsics=depth_intr,
            timestamp_domain=str(domain).split(".")[-1],
        )


def _color_to_rgb(color) -> np.ndarray:
    """Colour frame in rgb8/bgr8/rgba8/bgra8/yuyv -> (H, W, 3) uint8 RGB copy."""
    import pyrealsense2 as rs

    fmt = color.get_profile().format()
    data = np.asanyarray(color.get_data())
    if fmt == rs.format.rgb8:
        return np.array(data, copy=True)
    if fmt == rs.format.bgr8:
        return np.ascontiguousarray(data[:, :, ::-1])
    if fmt == rs.format.rgba8:
        return np.ascontiguousarray(data[:, :, :3])
    if fmt == rs.format.bgra8:
        return np.ascontiguousarray(data[:, :, 2::-1])
    if fmt == rs.format.yuyv:
        import cv2

        return cv2.cvtColor(data.reshape(data.shape[0], -1, 2), cv2.COLOR_YUV2RGB_YUYV)
    raise ValueError(f"colour format {fmt} is not supported (rgb8, bgr8, rgba8, bgra8, yuyv)")
