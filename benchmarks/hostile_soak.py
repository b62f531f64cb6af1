"""Soak of hostile messages through ROS: nodes alive, `cmd_vel` within limits, memory bounded.

    .venv/bin/python benchmarks/hostile_soak.py [--messages 10000] [--rate 300] [--out benchmarks/hostile_soak_results.md]
    .venv/bin/python benchmarks/hostile_soak.py --messages 500          # a quick check that it works (prints only)

Graph under test, every node in a process of its own (`python -m vlm_agent.nodes.<name>`):
safety_supervisor, motion_executor, navid_planner (remote backend on a fake OpenAI-compatible model
server, a further process, that obeys prompt injections word for word) and lifecycle_manager. This
process plays the robot (camera, depth + CameraInfo at 20 Hz, odometry of a kinematic base driven by
the gated `cmd_vel`, a raw command stream of 0.2 m/s forward, 0.1 rad/s turning) and sends the
hostile messages of `tests/helpers/hostile_graph.py` in a cycle, at `--rate` per second, interleaved
with the good streams: 15 kinds of hostile sensor message (100000x100000 and 0x0 image headers,
step/size mismatch, wrong and unknown encodings, NaN/inf depth, absurd CameraInfo, NaN/inf
odometry), NaN/inf/huge raw commands, 13 malformed or oversized plans (not JSON, binary, > 64 KiB,
nested 5000 deep, NaN/inf, 1000 primitives, ...), junk safety states, hostile instructions (binary,
control characters, empty, prompt injection; a 1 MB one every 50th round).

Recorded: the resident memory (RSS) of every node process before, at every checkpoint and after;
messages per second actually sent; any node death; every `cmd_vel` checked (finite, within the
supervisor's limits); each node's drop counters from `/diagnostics`; that the robot still moves on
good input afterwards; and every node's exit code after SIGINT. "Memory bounded" is judged on the
growth between the first checkpoint (after warm-up: imports, caches, DDS buffers) and the end.
Exit status 1 when a node died, a `cmd_vel` broke the limits, or the robot did not recover.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores (shared with other work; load {load} at the start), Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000, help="hostile messages to send (the issue asks for >= 10,000)")
    parser.add_argument("--rate", type=float, default=300.0, help="hostile messages per second (target)")
    parser.add_argument("--checkpoints", type=int, default=10, help="RSS samples during the soak")
    parser.add_argument("--out", default="", help="write the results as Markdown here (default: print only)")
    args = parser.parse_args()

    from vlm_agent.ros_env import configure_ros_environment

    configure_ros_environment()
    os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="hostile_soak_log_"))

    from rclpy.node import Node

    from tests.helpers.hostile_graph import GRAPH_NODES, FakeModel, HostileGraph, Robot, flood
    from tests.ros_harness import ros_session, wait_for_subscribers

    started = datetime.datetime.now(datetime.timezone.utc)
    host = machine()
    work = tempfile.mkdtemp(prefix="hostile_soak_")
    ns = f"/soak_{os.getpid()}"
    rows, kinds_total, problems = [], {}, []
    with ros_session() as (context, executor):
        node = Node("soak_robot", context=context)
        executor.add_node(node)
        robot = Robot(node, executor, ns)
        with FakeModel(log_dir=work) as model, HostileGraph(ns, model.url, work) as graph:
            if not graph.wait_active(node, executor, timeout=180):
                print(graph.tails(), file=sys.stderr)
                raise SystemExit("graph did not come up")
            for pub in (robot.cmd_pub, robot.plan_pub, robot.instruction_pub, robot.cam_pub):
                wait_for_subscribers(pub, timeout=30)
            robot.spin_until(lambda: not robot.all_reporting(), 20)
            robot.command = (0.2, 0.1)
            moving = robot.wait_for(lambda v, w: v > 0.15, timeout=15)
            rss0 = graph.rss_mib()
            rows.append(("start", 0, 0.0, rss0))
            print(f"graph up; moving={moving}; RSS MiB {fmt(rss0)}", flush=True)
            chunk = max(1, math.ceil(args.messages / args.checkpoints))
            sent, t0 = 0, time.monotonic()
            while sent < args.messages:
                n = min(chunk, args.messages - sent)
                for kind, count in flood(robot, n, rate_hz=args.rate).items():
                    kinds_total[kind] = kinds_total.get(kind, 0) + count
                sent += n
                rss = graph.rss_mib()
                rows.append(("soak", sent, time.monotonic() - t0, rss))
                dead = graph.dead()
                print(f"{sent:6d} messages, {sent / (time.monotonic() - t0):6.1f}/s; RSS MiB {fmt(rss)}; dead {dead or '-'}; "
                      f"cmd_vel violations {len(robot.violations)}", flush=True)
                if dead:
                    problems.append(f"node(s) died: {dead}")
                    break
            elapsed = time.monotonic() - t0
            robot.command = None
            robot.spin(2.0)
            rows.append(("after 2 s", sent, time.monotonic() - t0, graph.rss_mib()))
            reporting = robot.all_reporting()
            robot.reset()
            recovered = False
            if not graph.dead():
                robot.command = (0.2, 0.1)
                recovered = robot.wait_for(lambda v, w: v > 0.15, timeout=15)
                robot.command = None
            drops = {name: {k: v for k, v in robot.status.get(name, (0, 0, "", {}))[3].items() if k.startswith(("dropped.", "safety.rejected", "safety.frames_rejected"))}
                     for name in GRAPH_NODES}
            violations = list(robot.violations)
            status_text = {name: robot.status.get(name, (0, 0, "", {}))[2] for name in GRAPH_NODES}
        exit_codes = dict(graph.returncodes)
        if model.proc is not None:
            model.stop()
    if violations:
        problems.append(f"{len(violations)} cmd_vel messages outside the limits, first: {violations[:3]}")
    if reporting:
        problems.append(f"nodes not reporting on /diagnostics after the soak: {reporting}")
    if not recovered:
        problems.append("the robot did not move again on good input after the soak")
    bad_exit = {n: c for n, c in exit_codes.items() if c != 0}
    if bad_exit:
        problems.append(f"exit codes after SIGINT: {bad_exit}")

    report = render(args, started, host, rows, kinds_total, sent, elapsed, drops, status_text, exit_codes, problems, moving, recovered)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        print(f"wrote {args.out}")
    return 1 if problems else 0


def fmt(rss: dict) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in rss.items())


def render(args, started, host, rows, kinds, sent, elapsed, drops, status_text, exit_codes, problems, moving, recovered) -> str:
    from tests.helpers.hostile_graph import GRAPH_NODES

    lines = [
        "# Hostile-message soak through ROS",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC on: {host}.",
        f"Command: `.venv/bin/python benchmarks/hostile_soak.py --messages {args.messages} --rate {args.rate:g}"
        + (f" --out {args.out}`" if args.out else "`"),
        "",
        f"**{sent} hostile messages in {elapsed:.1f} s ({sent / elapsed if elapsed else float('nan'):.0f}/s)**, every node in its own process; "
        f"{'no node died' if not any('died' in p for p in problems) else 'A NODE DIED'}; "
        f"{'every cmd_vel finite and within limits' if not any('cmd_vel' in p for p in problems) else 'CMD_VEL OUTSIDE THE LIMITS'}; "
        f"moving on good input before: {moving}, after: {recovered}.",
        "",
        "Sent, by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + ".",
        "",
        "| checkpoint | messages | s | " + " | ".join(f"{n} RSS MiB" for n in GRAPH_NODES) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in GRAPH_NODES) + " |",
    ]
    for label, count, t, rss in rows:
        lines.append(f"| {label} | {count} | {t:.1f} | " + " | ".join(f"{rss.get(n, float('nan')):.1f}" for n in GRAPH_NODES) + " |")
    soak = [r for r in rows if r[0] == "soak"]
    if len(soak) >= 2:
        first, last = soak[0][3], rows[-1][3]
        growth = ", ".join(f"{n} {last[n] - first[n]:+.1f}" for n in GRAPH_NODES)
        lines += ["", f"RSS growth from the first checkpoint ({soak[0][1]} messages) to the end, MiB: {growth}."]
    lines += ["", "Drop counters on `/diagnostics` at the end (what each node refused, and why the last one was):", ""]
    for name in GRAPH_NODES:
        values = drops.get(name, {})
        if values:
            lines.append(f"- {name}: " + "; ".join(f"{k}={v}" for k, v in sorted(values.items()))[:1500])
        lines.append(f"  status: {status_text.get(name, '')[:300]}")
    lines += ["", "Exit codes after SIGINT: " + ", ".join(f"{n} {c}" for n, c in exit_codes.items()) + "."]
    lines += ["", "Problems: " + ("none." if not problems else "; ".join(problems)), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
