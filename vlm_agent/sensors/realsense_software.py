"""A RealSense without hardware: `rs.software_device()` with a depth (Z16) and a colour (RGB8) sensor.

Used by the tests, the benchmark and anyone who wants to push simulated frames through the real
librealsense processing (filters, alignment, recording to `.db3`). Frames injected with
`inject()` come out of `source()` (a `SyncerSource` for `RealSenseCamera`). With `record_to` an
`rs.recorder` writes everything injected to a `.db3` file (librealsense 2.58+) that
`RealSenseConfig(playback_file=...)` plays back; the file is complete after `close()`.
"""
from __future__ import annotations

import numpy as np

from vlm_agent.sensors.camera_model import CameraIntrinsics
from vlm_agent.sensors.realsense import SyncerSource


def _rs_intrinsics(intr: CameraIntrinsics):
    import pyrealsense2 as rs

    out = rs.intrinsics()
    out.width, out.height = intr.width, intr.height
    out.fx, out.fy, out.ppx, out.ppy = intr.fx, intr.fy, intr.cx, intr.cy
    out.model = rs.distortion.brown_conrady
    out.coeffs = (list(intr.distortion) + [0.0] * 5)[:5]
    return out


class SoftwareRealSense:
    """A software RealSense with depth + colour streams.

    Args:
        color_intrinsics, depth_intrinsics: the two cameras' pinhole models.
        fps: nominal stream rate (metadata only; frames go out when injected).
        depth_units_m: metres per Z16 count (D400: 0.001, L515: 0.00025).
        depth_to_color_m: translation of the colour camera seen from the depth camera, metres
            (D435: about 15 mm along +x); rotation is identity.
        record_to: optional `.db3` path for an `rs.recorder`.
    """

    def __init__(
        self,
        color_intrinsics: CameraIntrinsics,
        depth_intrinsics: CameraIntrinsics,
        fps: int = 30,
        depth_units_m: float = 0.001,
        depth_to_color_m: tuple[float, float, float] = (0.0, 0.0, 0.0),
        record_to: str | None = None,
    ):
        import pyrealsense2 as rs

        self._rs = rs
        self.depth_units_m = depth_units_m
        self.device = rs.software_device()
        self.device.register_info(rs.camera_info.name, "vlm_agent software RealSense")
        self.device.register_info(rs.camera_info.serial_number, "000000000000")
        self._depth_sensor = self.device.add_sensor("Depth")
        self._color_sensor = self.device.add_sensor("Color")
        self._depth_profile = self._add_stream(self._depth_sensor, rs.stream.depth, rs.format.z16, 2, depth_intrinsics, fps, uid=0)
        self._color_profile = self._add_stream(self._color_sensor, rs.stream.color, rs.format.rgb8, 3, color_intrinsics, fps, uid=1)
        self._depth_sensor.add_read_only_option(rs.option.depth_units, depth_units_m)
        self.device.create_matcher(rs.matchers.default)
        extrinsics = rs.extrinsics()
        extrinsics.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        extrinsics.translation = list(depth_to_color_m)
        self._depth_profile.register_extrinsics_to(self._color_profile, extrinsics)
        self._recorder = rs.recorder(record_to, self.device) if record_to else None
        self.syncer = rs.syncer()
        self._streaming = False
        self.frame_number = 0

    @staticmethod
    def _add_stream(sensor, stream, fmt, bpp, intr: CameraIntrinsics, fps: int, uid: int):
        import pyrealsense2 as rs

        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = stream, 0, uid
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = intr.width, intr.height, fps, bpp, fmt
        vs.intrinsics = _rs_intrinsics(intr)
        return sensor.add_video_stream(vs)

    def start(self) -> None:
        if self._streaming:
            return
        self._depth_sensor.open(self._depth_profile)
        self._color_sensor.open(self._color_profile)
        self._depth_sensor.start(self.syncer)
        self._color_sensor.start(self.syncer)
        self._streaming = True

    def stop(self) -> None:
        if not self._streaming:
            return
        self._streaming = False
        for sensor in (self._depth_sensor, self._color_sensor):
            sensor.stop()
            sensor.close()

    def source(self, name: str = "software device") -> SyncerSource:
        """A `FrameSource` that starts/stops this device's sensors."""
        return SyncerSource(self.syncer, on_start=self.start, on_stop=self.stop, name=name)

    def inject(self, depth: np.ndarray, color: np.ndarray, timestamp_ms: float, frame_number: int | None = None,
               domain: str = "system_time") -> None:
        """Push one depth (Hd, Wd) uint16 in depth units and one colour (H, W, 3) uint8 RGB frame."""
        rs = self._rs
        depth = np.ascontiguousarray(depth, dtype=np.uint16)
        color = np.ascontiguousarray(color, dtype=np.uint8)
        number = self.frame_number if frame_number is None else frame_number
        self.frame_number = number + 1
        dom = getattr(rs.timestamp_domain, domain)
        for sensor, profile, pixels, bpp in (
            (self._depth_sensor, self._depth_profile, depth, 2),
            (self._color_sensor, self._color_profile, color, 3),
        ):
            vp = profile.as_video_stream_profile()
            expected = (vp.height(), vp.width()) + ((3,) if bpp == 3 else ())
            if pixels.shape != expected:
                raise ValueError(f"inject: frame shape {pixels.shape} != stream {expected}")
            frame = rs.software_video_frame()
            frame.pixels = pixels
            frame.bpp = bpp
            frame.stride = pixels.shape[1] * bpp
            frame.timestamp = float(timestamp_ms)
            frame.domain = dom
            frame.frame_number = number
            frame.profile = vp
            if bpp == 2:
                frame.depth_units = self.depth_units_m
            sensor.on_video_frame(frame)

    def close(self) -> None:
        """Stop streaming and finish the recording (the recorder writes its file when released)."""
        self.stop()
        self._recorder = None
