"""Frame-to-`/cmd_vel` latency through ROS: camera frame stamp -> the first `/cmd_vel` caused by it.

    .venv/bin/python benchmarks/ros_latency.py [--plans 40] [--rounds 2] [--out benchmarks/ros_latency_results.md]
    .venv/bin/python benchmarks/ros_latency.py --size 64x48 --depth-encoding 32FC1   # the old, tiny frames

Graph under test, in a second process (`vlm-agent up`): navid_planner (by default the shipped default
navigator, `models.registry.default_checkpoint_dir("navid")`: `checkpoints/navid_map` since it shipped, `navid_film`
in the runs of record; `--model untrained` builds the tiny untrained NaVid of the earlier
runs) -> motion_executor -> safety_supervisor. This process plays the robot: it publishes rgb8 camera frames and a far depth
image at what a RealSense D435 publishes by default (640x480 at 30 Hz; depth 16UC1 millimetres;
`--size`, `--depth-encoding`, `--fps` to change), header stamp = ROS system time at publish, and
odometry from a kinematic base that integrates the gated `/cmd_vel`, and it sends the instruction.
The colour image is a 64x48 random pattern scaled up (nearest neighbour), so the model sees the
same content at every size and only the transport and preprocessing costs change. When a plan is a
stop (the episode ended), the next of a few instructions is sent and a new episode starts.

Each plan carries `frame_stamp_s`, the stamp of the frame it was made from. For every plan:
  frame -> plan      plan received here minus the frame stamp (frame transport, wait for the
                     planner's tick, model call on the worker thread, plan transport);
  model              the model call itself (`latency_s` in the plan);
  plan -> /cmd_vel   the first `/cmd_vel` received here after the plan that speeds the base up the
                     way the plan's first primitive moves (linear.x for forward, angular.z up / down
                     for a left / right turn), minus the plan's arrival (executor,
                     `/vlm_agent/cmd_vel_raw`, supervisor, `/cmd_vel`); only plans that arrive while
                     the base is slowing down or at rest in that direction count (the previous plan
                     has ended), so that command cannot be the previous plan's;
  total              that `/cmd_vel` minus the frame stamp.
Configurations run in alternating rounds in one invocation (so load from other processes on a
shared machine hits them alike): the graph in one process (`vlm-agent up`) and one process per node
(plus lifecycle_manager, as `ros2 launch` runs it), both with the default 20 Hz executor and
supervisor timers (the supervisor forwards a command on arrival; its timer only enforces the
watchdogs and ramps). Reported: p50 / p90 / p99 (p99 needs >= 100 samples to mean more than "the worst one":
`--plans 50 --rounds 2`). Ratios are of medians. Nothing is asserted; the numbers are recorded.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# configuration -> (layout, executor / supervisor timer rate in Hz). "up": every node in one process
# (`vlm-agent up`, one executor); "processes": one process per node plus lifecycle_manager, as
# `ros2 launch vlm_agent robot.launch.py` runs them on a robot.
CONFIGS = {"one process (vlm-agent up), 20 Hz timers": ("up", 20.0), "process per node (ros2 launch), 20 Hz timers": ("processes", 20.0)}
DEFAULT_CONFIG = "one process (vlm-agent up), 20 Hz timers"
GRAPH_NODES = ("navid_planner", "motion_executor", "safety_supervisor")
SEED = 2  # with this seed the untrained model answers moves ("move forward 25 cm, move forward 25 cm, ..."), never stop
INSTRUCTIONS = ("go to the red ball", "find the blue box", "walk to the green cone", "head to the yellow plate")
# first primitive kind -> (index in a received /cmd_vel tuple (t, linear.x, angular.z), sign of the motion)
MOTION = {"forward": (1, 1.0), "turn_left": (2, 1.0), "turn_right": (2, -1.0)}


def build_model(directory: str) -> str:
    import torch

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import new_model

    torch.manual_seed(SEED)
    model, processor = new_model("navid", train_tokenizer(), image_size=64, patch_size=8, vision_hidden=32,
                                 vision_layers=1, text_hidden=32, text_layers=1, heads=4, film_layers=1)
    torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.05)
    model.eval().save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def graph_params(model_dir: str, rate_hz: float, encoder_backend: str = "torch") -> dict:
    import yaml  # noqa: F401 (checked early: the caller writes YAML)

    return {
        "/**": {"ros__parameters": {"use_sim_time": False}},
        "lifecycle_manager": {"ros__parameters": {"node_names": ["safety_supervisor", "navid_planner"], "autostart": True,
                                                  "transition_timeout_s": 120.0}},
        "navid_planner": {"ros__parameters": {"model_dir": model_dir, "history_period_s": 0.2, "max_steps": 100000,
                                              "num_threads": 1, "max_frame_age_s": 0.5, "encoder_backend": encoder_backend,
                                              "encoder_num_threads": 1}},
        "motion_executor": {"ros__parameters": {"control_rate_hz": rate_hz, "max_linear_speed_mps": 0.5, "linear_accel_mps2": 2.0,
                                                "max_angular_speed_radps": 1.5, "angular_accel_radps2": 6.0}},
        "safety_supervisor": {"ros__parameters": {"publish_rate_hz": rate_hz, "max_linear_speed_mps": 0.6, "max_linear_accel_mps2": 2.5,
                                                  "max_angular_speed_radps": 2.0, "max_angular_accel_radps2": 8.0}},
    }


def camera_images(width: int, height: int, depth_encoding: str):
    """(rgb8 frame, depth frame) arrays: a 64x48 random pattern scaled to width x height, depth 3 m."""
    import numpy as np

    small = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    rows = (np.arange(height) * 48 // height)[:, None]
    cols = (np.arange(width) * 64 // width)[None, :]
    rgb = np.ascontiguousarray(small[rows, cols])
    if depth_encoding == "16UC1":
        depth = np.full((height, width), 3000, np.uint16)  # millimetres (REP-118)
    else:
        depth = np.full((height, width), 3.0, np.float32)
    return rgb, depth


def start_graph(path: str, layout: str, log) -> list[subprocess.Popen]:
    """The graph under test in one process (`vlm-agent up`) or one process per node."""
    if layout == "up":
        cmds = [[sys.executable, "-m", "vlm_agent.cli", "up", "--config", path, "--nodes", ",".join(GRAPH_NODES)]]
    else:
        cmds = [[sys.executable, "-m", f"vlm_agent.nodes.{name}", "--ros-args", "--params-file", path]
                for name in GRAPH_NODES + ("lifecycle_manager",)]
    return [subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT) for cmd in cmds]


def run_config(model_dir: str, layout: str, rate_hz: float, n_plans: int, tmp: str, size=(640, 480), depth_encoding: str = "16UC1",
               fps: float = 30.0, encoder_backend: str = "torch") -> list[dict]:
    import numpy as np
    import rclpy
    import yaml
    from geometry_msgs.msg import Twist
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from tests.helpers.kinematic_base import KinematicBase
    from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
    from vlm_agent.sensors.image_conversion import numpy_to_image

    path = os.path.join(tmp, f"graph_{layout}_{int(rate_hz)}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(graph_params(model_dir, rate_hz, encoder_backend), f)
    log = open(os.path.join(tmp, f"graph_{layout}_{int(rate_hz)}.log"), "w")
    procs = start_graph(path, layout, log)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("ros_latency_bench", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    clock = node.get_clock()

    def now_s():
        return clock.now().nanoseconds * 1e-9

    plans, cmds = [], []
    KinematicBase(node, cmd_topic="/cmd_vel", rate_hz=100.0)
    rgb_array, depth_array = camera_images(size[0], size[1], depth_encoding)
    rgb = numpy_to_image(rgb_array, "rgb8")
    depth = numpy_to_image(depth_array, depth_encoding)
    cam_pub = node.create_publisher(Image, "/camera/color/image_raw", SENSOR_QOS)
    depth_pub = node.create_publisher(Image, "/camera/depth/image_rect_raw", SENSOR_QOS)
    instr_pub = node.create_publisher(String, "/vlm_agent/instruction", LATCHED_QOS)
    node.create_subscription(String, "/vlm_agent/plan", lambda m: plans.append((now_s(), json.loads(m.data))), LATCHED_QOS)
    node.create_subscription(Twist, "/cmd_vel", lambda m: cmds.append((now_s(), m.linear.x, m.angular.z)), COMMAND_QOS)

    def camera():
        stamp = clock.now().to_msg()
        rgb.header.stamp = depth.header.stamp = stamp
        cam_pub.publish(rgb)
        depth_pub.publish(depth)

    node.create_timer(1.0 / fps, camera)
    try:
        deadline = time.monotonic() + 120
        while instr_pub.get_subscription_count() < 1 or cam_pub.get_subscription_count() < 2:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"graph did not come up; see {log.name}")
            executor.spin_once(timeout_sec=0.05)
        episodes = 0
        instr_pub.publish(String(data=INSTRUCTIONS[0]))
        deadline = time.monotonic() + 60 + 5 * n_plans
        while len(plans) < n_plans + 1 and time.monotonic() < deadline:
            seen = len(plans)
            executor.spin_once(timeout_sec=0.01)
            if len(plans) > seen and any(p["kind"] == "stop" for p in plans[-1][1].get("primitives", [])):
                episodes += 1  # the episode ended: start the next one
                instr_pub.publish(String(data=INSTRUCTIONS[episodes % len(INSTRUCTIONS)]))
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            executor.spin_once(timeout_sec=0.01)
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()
        rclpy.shutdown(context=context)
        for proc in procs:
            proc.send_signal(2)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()

    samples = []
    if os.environ.get("ROS_LATENCY_DEBUG"):
        print([",".join(p["kind"] for p in plan["primitives"]) + f"@{plan.get('latency_s', 0) * 1e3:.0f}" for _, plan in plans], file=sys.stderr)
    for recv, plan in plans:
        kinds = [p["kind"] for p in plan["primitives"]]
        if plan.get("error") or "frame_stamp_s" not in plan or kinds[0] not in MOTION:
            continue
        channel, sign = MOTION[kinds[0]]
        before = [c[channel] * sign for c in cmds if c[0] < recv][-2:]
        after = [c for c in cmds if c[0] >= recv]
        # Attributable only when the base was slowing down or at rest in this plan's direction when
        # the plan arrived (the previous plan had ended): then the first /cmd_vel after the plan that
        # speeds up that way is this plan's, whatever the previous plan was.
        if len(before) < 2 or before[-1] > before[-2] + 1e-9 or not after:
            continue
        level, first = before[-1], None
        for c in after:
            if c[channel] * sign > level + 1e-6:
                first = c
                break
            level = c[channel] * sign
        if first is None:
            continue
        samples.append({
            "frame_to_plan_ms": (recv - plan["frame_stamp_s"]) * 1e3,
            "model_ms": plan["latency_s"] * 1e3,
            "plan_to_cmd_ms": (first[0] - recv) * 1e3,
            "total_ms": (first[0] - plan["frame_stamp_s"]) * 1e3,
        })
    return samples


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def summarise(samples: list[dict]) -> dict:
    """{"n", key: (p50, p90, p99)} per column (nearest-rank percentiles of the sorted samples)."""
    out = {"n": len(samples)}
    for key in ("frame_to_plan_ms", "model_ms", "plan_to_cmd_ms", "total_ms"):
        values = sorted(s[key] for s in samples)
        out[key] = (statistics.median(values), _pct(values, 0.9), _pct(values, 0.99)) if values else (float("nan"),) * 3
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores (shared with other work), Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=40, help="plans measured per configuration and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", default="640x480", help="camera WIDTHxHEIGHT (RealSense default 640x480; the old benchmark: 64x48)")
    parser.add_argument("--depth-encoding", default="16UC1", choices=("16UC1", "32FC1"), help="depth image encoding (RealSense: 16UC1 mm)")
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate (colour and depth)")
    parser.add_argument("--model", default="default",
                        help="navid_planner model_dir: 'default' (the shipped default navigator), 'untrained' (a tiny random NaVid), or a directory")
    parser.add_argument("--encoder-backend", default="torch", help="navid_planner encoder_backend (torch, onnxruntime, ...)")
    parser.add_argument("--out", default=None, help="write the markdown results here")
    args = parser.parse_args()
    try:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(size) == 2 and min(size) > 0
    except (ValueError, AssertionError):
        parser.error(f"--size must be WIDTHxHEIGHT, got {args.size!r}")

    from vlm_agent.ros_env import configure_ros_environment

    configure_ros_environment()
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="ros_latency_log_"))
    tmp = tempfile.mkdtemp(prefix="ros_latency_")
    if args.model == "untrained":
        model_dir = build_model(os.path.join(tmp, "navid_untrained"))
    elif args.model == "default":
        from vlm_agent.models.registry import default_checkpoint_dir

        model_dir = str(default_checkpoint_dir("navid"))
    else:
        model_dir = args.model
    results = {name: [] for name in CONFIGS}
    for r in range(args.rounds):
        for name, (layout, rate) in CONFIGS.items():
            samples = run_config(model_dir, layout, rate, args.plans, tmp, size, args.depth_encoding, args.fps, args.encoder_backend)
            print(f"round {r + 1} {name}: {len(samples)} samples", file=sys.stderr)
            results[name].extend(samples)
    summary = {name: summarise(s) for name, s in results.items()}
    base = summary[DEFAULT_CONFIG]["total_ms"][0]
    lines = [
        f"Camera {size[0]}x{size[1]} rgb8 + depth {args.depth_encoding} at {args.fps:g} Hz; model {os.path.relpath(model_dir, ROOT) if args.model != 'untrained' else 'untrained tiny NaVid'}; "
        f"encoder_backend {args.encoder_backend}.",
        "",
        "| configuration | n | frame -> plan ms (p50 / p90 / p99) | model ms | plan -> /cmd_vel ms | total frame -> /cmd_vel ms | total p50 vs default |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in summary.items():
        cell = lambda k: f"{s[k][0]:.1f} / {s[k][1]:.1f} / {s[k][2]:.1f}"  # noqa: E731
        lines.append(f"| {name} | {s['n']} | {cell('frame_to_plan_ms')} | {cell('model_ms')} | {cell('plan_to_cmd_ms')} | "
                     f"{cell('total_ms')} | {s['total_ms'][0] / base:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Frame-to-/cmd_vel latency through ROS\n\n")
            f.write(f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on: {machine()}.\n")
            f.write(f"Command: `.venv/bin/python benchmarks/ros_latency.py {' '.join(sys.argv[1:])}`\n\n")
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
