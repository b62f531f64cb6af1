"""RealSense driver core without hardware: software device + syncer, recorder playback, reconnects."""
from __future__ import annotations

import time

import numpy as np
import pytest

rs = pytest.importorskip("pyrealsense2")

from vlm_agent.sensors.camera_model import CameraIntrinsics  # noqa: E402
from vlm_agent.sensors.realsense import RealSenseCamera, RealSenseConfig, depth_units_to_mm  # noqa: E402
from vlm_agent.sensors.realsense_software import SoftwareRealSense  # noqa: E402

W, H = 64, 48
COLOR = CameraIntrinsics(W, H, 60.0, 61.0, 31.5, 23.5, distortion=[0.01, -0.02, 0.0, 0.0, 0.003])
DEPTH = CameraIntrinsics(W, H, 50.0, 50.0, 32.0, 24.0)


def colour_frame(k: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = k % 256
    img[..., 1] = np.arange(W, dtype=np.uint8)[None, :]
    img[..., 2] = np.arange(H, dtype=np.uint8)[:, None]
    return img


def depth_frame(k: int, holes: bool = False) -> np.ndarray:
    d = np.full((H, W), 1000 + k, np.uint16)
    d[:, W // 2 :] += 500  # a step, to see that values survive as they are
    if holes:
        d[10:14, 10:14] = 0
    return d


def push_until_frame(cam: RealSenseCamera, dev: SoftwareRealSense, holes=False, tries: int = 4):
    """Inject framesets numbered on from the device's counter until the camera returns one (a
    syncer drops a lone first frame while it locks on). Frame n holds depth_frame(n), colour_frame(n)."""
    if cam.state != "streaming":
        cam.poll(0.01)  # connect (start the sensors) before injecting
    for _ in range(tries):
        n = dev.frame_number
        dev.inject(depth_frame(n, holes), colour_frame(n), timestamp_ms=1.7e12 + n * 33.3)
        frame = cam.poll(0.3)
        if frame is not None:
            return frame
    raise AssertionError(f"no frame after {tries} injections; stats {cam.stats()}")


def make(config: RealSenseConfig, **kwargs):
    dev = SoftwareRealSense(COLOR, DEPTH, **kwargs)
    cam = RealSenseCamera(config, source_factory=dev.source)
    return cam, dev


def test_unaligned_frames_and_intrinsics_read_back_exactly():
    cam, dev = make(RealSenseConfig(align_depth_to_color=False, stamp_source="device"))
    try:
        for k in range(1, 4):
            frame = push_until_frame(cam, dev)
            n = frame.frame_number
            np.testing.assert_array_equal(frame.color, colour_frame(n))
            np.testing.assert_array_equal(frame.depth_mm, depth_frame(n))
            assert frame.depth_mm.dtype == np.uint16 and frame.color.dtype == np.uint8
            assert frame.stamp_s == pytest.approx((1.7e12 + n * 33.3) * 1e-3)
        ci, di = frame.color_intrinsics, frame.depth_intrinsics
        assert (ci.width, ci.height, ci.fx, ci.fy, ci.cx, ci.cy) == pytest.approx((W, H, 60.0, 61.0, 31.5, 23.5))
        assert ci.distortion_model == "plumb_bob" and ci.distortion == pytest.approx(COLOR.distortion)
        assert (di.fx, di.cx) == pytest.approx((50.0, 32.0))
        assert ci.frame_id == "camera_color_optical_frame" and di.frame_id == "camera_depth_optical_frame"
        assert cam.state == "streaming" and cam.disconnects == 0
    finally:
        cam.close()


def test_aligned_depth_has_colour_geometry_and_values():
    cam, dev = make(RealSenseConfig(align_depth_to_color=True, stamp_source="host"))
    try:
        plane = np.full((H, W), 1500, np.uint16)  # a wall 1.5 m away
        frame = None
        for k in range(4):
            dev.inject(plane, colour_frame(k), timestamp_ms=k * 33.3, frame_number=k)
            frame = cam.poll(0.3) or frame
        assert frame is not None
        assert frame.depth_mm.shape == (H, W)
        assert frame.depth_intrinsics == frame.color_intrinsics
        assert frame.depth_intrinsics.frame_id == "camera_color_optical_frame"
        valid = frame.depth_mm[frame.depth_mm > 0]
        # Colour has a narrower field of view (fx 60 vs 50): the plane covers almost all of it.
        assert valid.size > 0.8 * H * W
        assert np.all(valid == 1500)
    finally:
        cam.close()


def test_depth_units_other_than_mm_are_converted():
    cam, dev = make(RealSenseConfig(align_depth_to_color=False), depth_units_m=0.00025)  # L515 units
    try:
        frame = push_until_frame(cam, dev)
        expected = np.floor(depth_frame(frame.frame_number) * 0.25 + 0.5).astype(np.uint16)  # round half up
        np.testing.assert_array_equal(frame.depth_mm, expected)
    finally:
        cam.close()
    assert depth_units_to_mm(np.array([[0, 4, 65535]], np.uint16), 0.01).tolist() == [[0, 40, 65535]]
    with pytest.raises(ValueError):
        depth_units_to_mm(np.zeros((2, 2), np.uint16), 0.0)


def test_filters_decimate_and_fill_holes():
    config = RealSenseConfig(align_depth_to_color=False, decimation=2, spatial_filter=True, temporal_filter=True, hole_filling="farthest_from_around")
    cam, dev = make(config)
    try:
        frame = push_until_frame(cam, dev, holes=True)
        assert frame.depth_mm.shape == (H // 2, W // 2)
        assert frame.depth_intrinsics.width == W // 2 and frame.depth_intrinsics.fx == pytest.approx(25.0)
        assert np.count_nonzero(frame.depth_mm == 0) == 0  # the 4x4 hole is filled
        assert frame.color.shape == (H, W, 3)
    finally:
        cam.close()


def test_device_that_stops_delivering_is_reported_and_reconnected():
    devices = [SoftwareRealSense(COLOR, DEPTH) for _ in range(2)]
    made = []

    def factory():
        dev = devices[len(made)] if len(made) < len(devices) else devices[-1]
        made.append(dev)
        return dev.source(name=f"device {len(made)}")

    events = []
    config = RealSenseConfig(align_depth_to_color=False, frame_timeout_s=0.5, reconnect_backoff_s=0.05)
    cam = RealSenseCamera(config, source_factory=factory, on_event=lambda level, msg: events.append((level, msg)))
    try:
        push_until_frame(cam, devices[0])
        push_until_frame(cam, devices[0])
        # The device vanishes: no more frames. poll never raises; after frame_timeout_s it reconnects.
        for _ in range(40):
            assert cam.poll(0.05) is None
            if cam.disconnects:
                break
        assert cam.disconnects == 1 and "no frames" in cam.last_error
        assert any(level == "error" and "camera lost" in msg for level, msg in events)
        frame = None
        for k in range(10, 20):
            if cam.state == "streaming" and made[-1] is devices[1]:
                devices[1].inject(depth_frame(k), colour_frame(k), timestamp_ms=k * 33.3, frame_number=k)
            frame = cam.poll(0.2)
            if frame is not None:
                break
        assert frame is not None, cam.stats()
        np.testing.assert_array_equal(frame.color, colour_frame(frame.frame_number))
        assert len(made) == 2 and cam.state == "streaming"
    finally:
        cam.close()


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_missing_device_retries_with_capped_exponential_backoff():
    clock = FakeClock()
    attempts = []

    def factory():
        attempts.append(clock.t)
        raise RuntimeError("No device connected")

    config = RealSenseConfig(reconnect_backoff_s=0.5, reconnect_backoff_max_s=4.0)
    cam = RealSenseCamera(config, source_factory=factory, clock=clock, sleep=clock.sleep, on_event=lambda *a: None)
    for _ in range(200):
        assert cam.poll(0.25) is None
    gaps = np.diff(attempts)
    assert gaps[:4] == pytest.approx([0.5, 1.0, 2.0, 4.0])
    assert np.all(gaps[4:] == pytest.approx(4.0))
    assert cam.connect_failures == len(attempts) and "No device connected" in cam.last_error
    assert cam.state == "connecting"


def test_recorded_db3_plays_back_with_the_same_frames(tmp_path):
    path = str(tmp_path / "session.db3")
    dev = SoftwareRealSense(COLOR, DEPTH, record_to=path)
    dev.start()
    for k in range(8):
        dev.inject(depth_frame(k), colour_frame(k), timestamp_ms=1000.0 + k * 33.3, frame_number=k)
        time.sleep(0.02)  # the recorder keeps arrival times; real-time playback replays them
    dev.close()
    del dev
    cam = RealSenseCamera(RealSenseConfig(playback_file=path, align_depth_to_color=False, frame_timeout_s=0.3), on_event=lambda *a: None)
    frames = []
    for _ in range(60):
        frame = cam.poll(0.1)
        if frame is not None:
            frames.append(frame)
        if cam.state == "finished":
            break
    assert cam.state == "finished" and cam.disconnects == 0
    numbers = [f.frame_number for f in frames]
    # Playback's syncer re-emits a frame with the other stream's next one; those framesets are
    # skipped, so every published frame is a true (depth n, colour n) pair, each once.
    assert len(frames) >= 4 and numbers == sorted(set(numbers)), numbers
    for f in frames:
        np.testing.assert_array_equal(f.color, colour_frame(f.frame_number))
        np.testing.assert_array_equal(f.depth_mm, depth_frame(f.frame_number))
    assert frames[0].color_intrinsics.fx == pytest.approx(60.0)
    assert frames[0].device_stamp_s == pytest.approx((1000.0 + numbers[0] * 33.3) * 1e-3)
    assert frames[0].stamp_s == frames[0].host_stamp_s  # playback is restamped with host time under "auto"


def test_missing_playback_file_is_retried_not_raised(tmp_path):
    clock = FakeClock()
    cam = RealSenseCamera(RealSenseConfig(playback_file=str(tmp_path / "nope.bag")), clock=clock, sleep=clock.sleep, on_event=lambda *a: None)
    for _ in range(5):
        assert cam.poll(1.0) is None
    assert cam.connect_failures >= 2 and "does not exist" in cam.last_error


def test_config_validation():
    with pytest.raises(ValueError, match="playback_file"):
        RealSenseConfig(playback_file="x.mp4")
    with pytest.raises(ValueError, match="decimation"):
        RealSenseConfig(decimation=9)
    with pytest.raises(ValueError, match="hole_filling"):
        RealSenseConfig(hole_filling="magic")
    with pytest.raises(ValueError, match="depth_width"):
        RealSenseConfig(depth_width=848)
