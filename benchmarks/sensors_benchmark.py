"""Sensor pipeline costs on this machine: RealSense core processing, sync + history, ingest, MCAP writing.

    .venv/bin/python benchmarks/sensors_benchmark.py [--frames 200] [--out benchmarks/sensors_results.md]

Everything runs without hardware: RealSense frames go through a `rs.software_device()` (the same
librealsense filters and alignment a real camera uses, but no USB transfer and no ASIC timing).
Images are synthetic "scene-like" frames (smooth gradients + blocks + mild noise) so compression
ratios are neither the best case (flat) nor the worst (white noise). Prints a markdown table and
writes it with the machine description to `--out`.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vlm_agent.ros_env import configure_ros_environment  # noqa: E402

W, H = 640, 480


def scene(i: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 colour and (H, W) uint16 depth (mm) that look roughly like an indoor view."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([(x * 255 // W + i) % 256, (y * 255 // H), ((x + y) // 5) % 256], axis=-1).astype(np.uint8)
    rgb[100:300, 200 + i % 50 : 350 + i % 50] = (180, 40, 40)
    rgb = np.clip(rgb.astype(np.int16) + rng.integers(-4, 5, rgb.shape), 0, 255).astype(np.uint8)
    depth = (1000 + y * 6 + (x // 64) * 10).astype(np.uint16)
    depth[100:300, 200 + i % 50 : 350 + i % 50] = 900
    depth[rng.random((H, W)) < 0.02] = 0  # invalid pixels, as a stereo camera has
    return rgb, depth


def timed(fn, n):
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    samples.sort()
    return statistics.mean(samples) * 1e3, samples[len(samples) // 2] * 1e3, samples[int(0.95 * (len(samples) - 1))] * 1e3


def bench_realsense(n, rows, rng):
    from vlm_agent.sensors.camera_model import CameraIntrinsics
    from vlm_agent.sensors.realsense import RealSenseCamera, RealSenseConfig
    from vlm_agent.sensors.realsense_software import SoftwareRealSense

    color = CameraIntrinsics(W, H, 615.0, 615.0, 320.0, 240.0)
    depth = CameraIntrinsics(W, H, 385.0, 385.0, 320.0, 240.0)
    frames = [scene(i, rng) for i in range(8)]
    for label, cfg in (
        ("RealSense core: no alignment, no filters", RealSenseConfig(align_depth_to_color=False)),
        ("RealSense core: aligned to colour", RealSenseConfig()),
        ("RealSense core: aligned + decimation 2 + spatial + temporal + hole filling",
         RealSenseConfig(decimation=2, spatial_filter=True, temporal_filter=True, hole_filling="farthest_from_around")),
    ):
        dev = SoftwareRealSense(color, depth, depth_to_color_m=(0.015, 0.0, 0.0))
        cam = RealSenseCamera(cfg, source_factory=dev.source, on_event=lambda *a: None)
        cam.poll(0.01)
        got = []

        def step(i, dev=dev, cam=cam, got=got):
            rgb, d = frames[i % len(frames)]
            dev.inject(d, rgb, timestamp_ms=i * 33.3)
            f = cam.poll(0.5)
            if f is not None:
                got.append(f)

        for i in range(5):
            step(i)
        mean, p50, p95 = timed(lambda i: step(i + 5), n)
        cam.close()
        rows.append((label, f"{W}x{H}", f"{mean:.2f}", f"{p50:.2f}", f"{p95:.2f}", f"{1e3 / mean:.0f} frames/s", f"{len(got)} frames out"))


def bench_ingest(n, rows, rng):
    from nav_msgs.msg import Odometry

    from vlm_agent.sensors.frame_history import FrameHistory
    from vlm_agent.sensors.image_conversion import numpy_to_compressed, numpy_to_image
    from vlm_agent.sensors.ingest import IngestConfig, SensorIngest
    from vlm_agent.sensors.sync import ApproximateTimeSynchronizer

    sync = ApproximateTimeSynchronizer(("color", "depth", "odom"), slop_s=0.01)
    k = 20000
    t0 = time.perf_counter()
    for i in range(k):
        t = i / 30
        sync.add("odom", t - 0.003, None)
        sync.add("depth", t + 0.002, None)
        sync.add("color", t, None)
    dt = (time.perf_counter() - t0) / k * 1e6
    rows.append(("ApproximateTimeSynchronizer, 3 streams", "-", f"{dt / 1e3:.4f}", "-", "-", f"{dt:.1f} us per frame set", f"{sync.emitted} sets"))
    hist = FrameHistory(32, 0.0)
    img = np.zeros((H, W, 3), np.uint8)
    t0 = time.perf_counter()
    for i in range(k):
        hist.add(i / 30, img)
    dt = (time.perf_counter() - t0) / k * 1e6
    rows.append(("FrameHistory.add (32 frames, uniform eviction)", f"{W}x{H}", f"{dt / 1e3:.4f}", "-", "-", f"{dt:.1f} us per frame", "-"))

    rgb, depth = scene(0, rng)
    for label, compressed in (("SensorIngest: rgb8 + 16UC1 + odometry", False), ("SensorIngest: JPEG colour + 16UC1 + odometry", True)):
        ingest = SensorIngest(IngestConfig(use_depth=True, sample_period_s=0.0))
        cmsg = numpy_to_compressed(rgb, "rgb8", "jpeg", 90) if compressed else numpy_to_image(rgb, "rgb8")
        dmsg = numpy_to_image(depth, "16UC1")
        omsg = Odometry()
        omsg.pose.pose.orientation.w = 1.0

        def step(i, ingest=ingest, cmsg=cmsg, dmsg=dmsg, omsg=omsg):
            t = 100 + i / 30
            for m, dt_ in ((omsg, -0.003), (dmsg, 0.002), (cmsg, 0.0)):
                m.header.stamp.sec, m.header.stamp.nanosec = int(t + dt_), int(((t + dt_) % 1) * 1e9)
            ingest.add_odom(omsg)
            ingest.add_depth(dmsg)
            ingest.add_color(cmsg)

        mean, p50, p95 = timed(step, n)
        rows.append((label, f"{W}x{H}", f"{mean:.2f}", f"{p50:.2f}", f"{p95:.2f}", f"{1e3 / mean:.0f} frames/s", f"{ingest.observations} observations"))


def bench_recording(n, rows, rng):
    from rclpy.serialization import serialize_message

    from vlm_agent.sensors.image_conversion import numpy_to_image
    from vlm_agent.sensors.recording import McapRecordingWriter

    data = [serialize_message(numpy_to_image(scene(i, rng)[0], "rgb8")) for i in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        for compression in ("none", "lz4", "zstd"):
            path = os.path.join(tmp, f"{compression}.mcap")
            writer = McapRecordingWriter(path, compression=compression)
            writer.add_channel("/camera/color/image_raw", "sensor_msgs/msg/Image")
            mean, p50, p95 = timed(lambda i: writer.write("/camera/color/image_raw", data[i % 8], i), n)
            t0 = time.perf_counter()
            writer.close()
            close_s = time.perf_counter() - t0
            raw = n * len(data[0])
            size = os.path.getsize(path)
            total_s = mean * n / 1e3 + close_s
            rows.append((f"MCAP write rgb8 ({compression})", f"{W}x{H}", f"{total_s / n * 1e3:.2f}", f"{p50:.2f}", f"{p95:.2f}",
                         f"{raw / total_s / 1e6:.0f} MB/s", f"file {size / raw * 100:.0f}% of raw"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    configure_ros_environment()
    rng = np.random.default_rng(0)
    rows: list[tuple] = []
    load_before = os.getloadavg()[0]
    bench_realsense(args.frames, rows, rng)
    bench_ingest(args.frames, rows, rng)
    bench_recording(args.frames, rows, rng)
    load_after = os.getloadavg()[0]
    import pyrealsense2 as rs

    header = "| stage | size | mean ms | p50 ms | p95 ms | rate | notes |\n| --- | --- | ---: | ---: | ---: | ---: | --- |"
    table = header + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)
    machine = (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pyrealsense2 {rs.__version__}, numpy {np.__version__}. Load average before/after: {load_before:.1f} / {load_after:.1f} "
        f"(the CPU is shared with other jobs; treat the numbers as lower bounds for an idle machine). {args.frames} frames per row."
    )
    print(machine)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Sensor pipeline benchmark\n\n`benchmarks/sensors_benchmark.py` (see its docstring for what is measured).\n\n")
            f.write(machine + "\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
