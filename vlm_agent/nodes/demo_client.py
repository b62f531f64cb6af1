"""The client side of `vlm-agent demo`: one ROS client per suite that watches the graph run an episode
and records what the demo shows (results row, captioned contact sheet, GIF).

Each client is a `RosEvalClient` (its own rclpy context and node, the simulator's standard services,
`/vlm_agent/executor/state`) against a graph that `vlm-agent demo` starts in a second process
(`GraphProcess`); it never decides anything itself, except the seg clip's camera motion:
* `NavDemoClient` (mujoco_sim + navid_planner + motion_executor + safety_supervisor): the simulator's
  reset publishes the instruction, the planner plans from camera frames, the executor drives. Records
  the camera stream, every plan on `/vlm_agent/plan` and the odometry path; the sheet shows the frame
  each plan was made from with the plan under it, beside the top-down map with the path.
* `SegDemoClient` (mujoco_sim + segmenter + motion_executor + safety_supervisor): the referring
  expression on `segmentation/query`, then a short clip: the robot sways and drives 30 cm
  (`CLIP_MOTION`, plans to the executor) while the segmenter tracks. Every mask on
  `segmentation/mask` after the reset is scored against the ground truth of a local `NavEnv` at the
  odometry pose of the mask's source frame (its header stamp); the sheet shows the camera frames with
  the predicted mask (magenta) and the ground-truth outline (green), IoU under each.
* `ManipDemoClient` (mujoco_sim + task_planner + motion_executor + safety_supervisor [+ segmenter]):
  the instruction on `vlm_agent/instruction`, the task's events on `vlm_agent/task/progress` until it
  finishes, the simulator's `mujoco_sim/result`; the sheet shows the camera frame at each skill call's
  report with the call and its feedback under it.
This module imports rclpy; import it lazily (the demo command does).
"""
from __future__ import annotations

import bisect
import collections
import json
import math
import os
import time

import numpy as np

from vlm_agent.actions import NavPrimitive
from vlm_agent.nodes.eval_client import EpisodeSpans, RosEvalClient

# The seg clip's camera motion (plans to the executor): about `sim/seg_clips.py`'s in-process clip,
# which teleports the robot 0.3 m ahead with a 5-degree heading sway; here the robot drives it.
CLIP_MOTION = (NavPrimitive.turn_left(5), NavPrimitive.forward(15), NavPrimitive.turn_right(10), NavPrimitive.forward(15),
               NavPrimitive.turn_left(5))
SHEET_FRAMES = 16  # frames per contact sheet (sampled evenly, first and last kept)
GIF_FRAMES = 120


class _FrameHistory:
    """Camera frames (RGB arrays) and odometry poses by header stamp (sim seconds), newest `maxlen`."""

    def __init__(self, maxlen: int = 400):
        self.frames: collections.OrderedDict[float, np.ndarray] = collections.OrderedDict()
        self.maxlen = maxlen
        self.pose_stamps: list[float] = []
        self.poses: list[tuple[float, float, float]] = []

    def add_frame(self, stamp: float, rgb: np.ndarray) -> None:
        self.frames[stamp] = rgb
        while len(self.frames) > self.maxlen:
            self.frames.popitem(last=False)

    def add_pose(self, stamp: float, pose) -> None:
        if self.pose_stamps and stamp < self.pose_stamps[-1]:  # a reset rewinds nothing, but be safe
            self.pose_stamps.clear()
            self.poses.clear()
        self.pose_stamps.append(stamp)
        self.poses.append(tuple(pose))
        if len(self.poses) > 20 * self.maxlen:
            del self.pose_stamps[: len(self.poses) // 2], self.poses[: len(self.poses) // 2]

    def frame_at(self, stamp: float) -> np.ndarray | None:
        if not self.frames:
            return None
        best = min(self.frames, key=lambda s: abs(s - stamp))
        return self.frames[best] if abs(best - stamp) < 0.2 else None

    def pose_at(self, stamp: float):
        if not self.poses:
            return None
        i = bisect.bisect_left(self.pose_stamps, stamp)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self.poses)]
        return self.poses[min(candidates, key=lambda j: abs(self.pose_stamps[j] - stamp))]


class NavDemoClient(RosEvalClient):
    """The ROS eval client (sim services, camera/odometry/executor subscriptions) that also watches
    plans and records the camera stream and the path, but never publishes plans itself: the planner
    node does."""

    def __init__(self, config):
        super().__init__(config)
        self.plans: list[dict] = []
        self.plan_frames: list[tuple[int, dict]] = []  # (index of the newest frame when the plan came, plan)
        self.frames: list = []
        self.trajectory: list[tuple[float, float, float]] = []
        self.recording = False
        self.instruction = ""
        self.planner_status: dict[str, str] = {}
        # The graph's planner limits (set from the demo's parameters before the episodes run).
        self.max_steps = 100
        self.max_consecutive_aborts = 3

    def __enter__(self):
        super().__enter__()
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import String

        from vlm_agent.nodes.base import DIAGNOSTICS_QOS, DIAGNOSTICS_TOPIC, LATCHED_QOS

        self.node.create_subscription(String, "/vlm_agent/plan", self._on_plan, LATCHED_QOS)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_status, DIAGNOSTICS_QOS)
        return self

    def _on_status(self, msg) -> None:
        for status in msg.status:
            if status.name == "/navid_planner":
                self.planner_status = {kv.key: kv.value for kv in status.values}

    def _on_plan(self, msg) -> None:
        try:
            plan = json.loads(msg.data)
        except ValueError:
            return
        self.plans.append(plan)
        if self.recording and plan.get("instruction") == self.instruction:
            self.plan_frames.append((len(self.frames) - 1, plan))

    def _on_rgb(self, msg) -> None:
        super()._on_rgb(msg)
        if self.recording and self.latest.rgb is not None:
            self.frames.append(self.latest.rgb)

    def _on_odom(self, msg) -> None:
        super()._on_odom(msg)
        if self.recording and self.latest.pose is not None:
            self.trajectory.append(self.latest.pose)

    def _episode_finished(self, instruction: str) -> str | None:
        """The end reason by the rule shared with `eval --ros` (`planner_loop.episode_end_reason`): the
        executor finished a `stop` plan of this episode, the planner ended the episode itself,
        `max_consecutive_aborts` of its plans aborted in a row, or `max_steps` plans; else None."""
        from vlm_agent.planners.planner_loop import episode_end_reason

        ours = {p.get("plan_id"): p for p in self.plans if p.get("instruction") == instruction}
        stopped_by, aborts_in_row, last_abort, final = None, 0, "", {}
        for state in self.latest.states:
            if state.get("plan_id") in ours and state.get("state") in ("done", "aborted"):
                final[state["plan_id"]] = state
        for plan_id in sorted(final):
            state = final[plan_id]
            if state["state"] == "done" and state.get("reason") == "stop":
                stopped_by = ours[plan_id].get("error") or "planner said stop"  # the model, or the goal approach once the goal was located
            if state["state"] == "aborted":
                aborts_in_row, last_abort = aborts_in_row + 1, str(state.get("reason") or "")
            else:
                aborts_in_row = 0
        status = self.planner_status
        planner_reason = None
        if ours and status.get("loop_state") == "finished" and instruction.startswith(status.get("instruction", "\0")):
            planner_reason = status.get("finish_reason") or "finished"
        return episode_end_reason(
            stopped_by=stopped_by, steps=len(final), max_steps=self.max_steps, aborts_in_row=aborts_in_row,
            max_consecutive_aborts=self.max_consecutive_aborts, last_abort_reason=last_abort, planner_reason=planner_reason,
        )

    def run_episode(self, ep, graph, timeout_s: float, out_dir: str) -> dict:
        from std_srvs.srv import Trigger

        self.plans.clear()
        self.plan_frames, self.frames, self.trajectory = [], [], []
        self.planner_status = {}
        self.latest.states.clear()
        self.instruction = ep.instruction
        info = self.reset_episode(ep, graph)
        self.recording = True
        print(f"[{ep.episode_id}] {info.get('instruction', ep.instruction)!r}")
        start = time.monotonic()
        try:
            self.spin_until(lambda: self._episode_finished(ep.instruction) is not None, timeout_s, "stop from the planner", graph)
            end_reason = self._episode_finished(ep.instruction)
        except TimeoutError:
            end_reason = f"demo timeout {timeout_s:g} s"
            stop = self.node.create_client(Trigger, "/vlm_agent/stop")
            if stop.wait_for_service(timeout_sec=2.0):
                self.call(stop, Trigger.Request(), "/vlm_agent/stop", graph)
        self.recording = False
        metrics = self.result(graph)
        ours = [p for p in self.plans if p.get("instruction") == ep.instruction]
        latencies = [p.get("latency_s") or 0.0 for p in ours]
        row = {
            "episode_id": ep.episode_id,
            "instruction": ep.instruction,
            "success": float(metrics.get("success", 0.0)),
            "spl": float(metrics.get("spl", 0.0)),
            "navigation_error": float(metrics.get("navigation_error", float("nan"))),
            "plans": len(ours),
            "planner_latency_ms": 1e3 * sum(latencies) / max(1, len(latencies)),
            "end_reason": end_reason,
            "wall_s": time.monotonic() - start,
            "sim_time_s": float(metrics.get("sim_time", float("nan"))) - float(info.get("sim_time", float("nan"))),
            "contact_sheet": "",
            "gif": "",
            "plan_texts": [f"{p.get('step', 0) + 1}: {plan_caption(p)}" for p in ours],
        }
        if self.frames:
            row["contact_sheet"], row["gif"] = self._pictures(ep, row, out_dir)
        print(
            f"[{ep.episode_id}] success={row['success']:.0f} SPL={row['spl']:.2f} "
            f"NE={row['navigation_error']:.2f} m plans={row['plans']} ({end_reason})"
        )
        return row

    def _pictures(self, ep, row: dict, out_dir: str) -> tuple[str, str]:
        """The frame each plan was made from with the plan under it (sampled), the last frame with the
        end reason, and the top-down map with the path; plus a GIF of the camera stream."""
        from vlm_agent.sim.video import sample_indices, topdown_map, write_contact_sheet, write_gif

        tiles = [(max(0, i), f"plan {p.get('step', 0) + 1}: {plan_caption(p)}") for i, p in self.plan_frames]
        tiles = [tiles[i] for i in sample_indices(len(tiles), SHEET_FRAMES - 1)]
        tiles.append((len(self.frames) - 1, f"end: {row['end_reason']}; success {row['success']:.0f}, "
                                             f"{row['navigation_error']:.2f} m from the goal"))
        map_img = topdown_map(ep.world(), self.trajectory or [tuple(ep.start_pose)], ep.goal_objects, height_px=384)
        title = f"{ep.episode_id}: {ep.instruction}  (NaVid through ROS; path in blue on the map, start green)"
        png = write_contact_sheet(os.path.join(out_dir, f"{ep.episode_id}.png"), title, [self.frames[i] for i, _ in tiles],
                                  [c for _, c in tiles], side=map_img)
        gif = write_gif(os.path.join(out_dir, f"{ep.episode_id}.gif"), self.frames[:: max(1, len(self.frames) // GIF_FRAMES)])
        return png, gif


def plan_caption(plan: dict) -> str:
    """A plan message's text for people: the model's raw text, else its primitives, plus its error."""
    text = (plan.get("raw_text") or "").strip()
    if not text:
        text = ", ".join(NavPrimitive.from_dict(p).to_text() for p in plan.get("primitives", []) if isinstance(p, dict)) or "(empty)"
    if plan.get("error"):
        text += f" [{plan['error']}]"
    return text


class SegDemoClient(RosEvalClient):
    """See the module docstring. `camera` = (width, height, vertical FOV degrees) of the simulator's
    camera (the ground truth renders the same view)."""

    def __init__(self, config, camera: tuple[int, int, float] = (320, 240, 60.0), mask_timeout_s: float = 120.0):
        super().__init__(config, sensors=False)
        self.camera = camera
        self.mask_timeout_s = mask_timeout_s
        self.history = _FrameHistory()
        self.masks: list[tuple[float, np.ndarray]] = []  # (source frame stamp, mask bool)
        self.labels: list[dict] = []
        self.truth = None

    def __enter__(self):
        super().__enter__()
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_QOS
        from vlm_agent.nodes.segmenter import LABEL_TOPIC, MASK_TOPIC, QUERY_TOPIC
        from vlm_agent.sim.env import NavEnv, SimConfig

        self.query_pub = self.node.create_publisher(String, QUERY_TOPIC, COMMAND_QOS)
        self.mask_sub = self.node.create_subscription(Image, MASK_TOPIC, self._on_mask, SENSOR_QOS)
        self.node.create_subscription(Image, "/camera/color/image_raw", self._on_camera, SENSOR_QOS)
        label_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=500, reliability=ReliabilityPolicy.RELIABLE)
        self.label_sub = self.node.create_subscription(String, LABEL_TOPIC, self._on_label, label_qos)
        width, height, fov = self.camera
        self.truth = NavEnv(SimConfig(width=width, height=height, vertical_fov_deg=fov, shadows=False, render_depth=False))
        return self

    def __exit__(self, *exc):
        if self.truth is not None:
            self.truth.close()
        return super().__exit__(*exc)

    def _on_camera(self, msg) -> None:
        from vlm_agent.sensors.frames import stamp_to_seconds
        from vlm_agent.sensors.image_conversion import image_to_rgb8

        try:
            self.history.add_frame(stamp_to_seconds(msg.header.stamp), np.array(image_to_rgb8(msg)))
        except ValueError:
            pass

    def _on_odom(self, msg) -> None:
        from vlm_agent.sensors.frames import stamp_to_seconds

        super()._on_odom(msg)
        self.history.add_pose(stamp_to_seconds(msg.header.stamp), self.latest.pose)

    def _on_mask(self, msg) -> None:
        from vlm_agent.sensors.frames import stamp_to_seconds
        from vlm_agent.sensors.image_conversion import image_to_numpy

        mask = np.asarray(image_to_numpy(msg)) > 127
        self.masks.append((stamp_to_seconds(msg.header.stamp), mask.reshape(mask.shape[:2])))

    def _on_label(self, msg) -> None:
        try:
            self.labels.append(json.loads(msg.data))
        except ValueError:
            pass

    def wait_ready(self, graph=None) -> None:
        from vlm_agent.nodes.segmenter import LABEL_TOPIC, MASK_TOPIC, QUERY_TOPIC

        super().wait_ready(graph)
        self.spin_until(lambda: self.query_pub.get_subscription_count() >= 1 and self.mask_sub.get_publisher_count() >= 1
                        and self.label_sub.get_publisher_count() >= 1, self.config.startup_timeout_s,
                        f"segmenter on {QUERY_TOPIC}, {MASK_TOPIC}, {LABEL_TOPIC}", graph)

    def run_episode(self, ep, graph, spans: EpisodeSpans, out_dir: str) -> dict:
        from vlm_agent.sim.metrics import iou

        w0 = time.perf_counter()
        n_masks, n_labels = len(self.masks), len(self.labels)
        info, sim_start = spans.reset(self, ep, graph)
        query = info.get("instruction", ep.instruction)
        print(f"[{ep.episode_id}] query {query!r}")
        sent = time.monotonic()
        self.query_pub.publish(self.String(data=query))

        def ours():
            """This episode's masks: after the reset, and labelled with this query (a frame after the
            reset can still be segmented for the previous query before the new one arrives)."""
            for_query = {round(float(lb.get("stamp", math.nan)), 6) for lb in self.labels[n_labels:]
                         if lb.get("query") == query and not lb.get("error")}
            return [(s, m) for s, m in self.masks[n_masks:] if s > sim_start + 1e-9 and round(s, 6) in for_query]

        def error():
            return next((lb for lb in self.labels[n_labels:] if lb.get("error") and lb.get("query") in (query, None)), None)

        self.spin_until(lambda: ours() or error() is not None, self.mask_timeout_s, f"a mask for '{query}'", graph)
        first_latency = time.monotonic() - sent
        motion_reports = []
        if ours():  # the clip: the robot moves while the segmenter tracks
            for k, primitive in enumerate(CLIP_MOTION):
                report = self.execute(primitive, query, k, graph)
                motion_reports.append(f"{primitive.to_text()}: {report.get('state')}")
            stopped_at = self.history.pose_stamps[-1] if self.history.pose_stamps else sim_start
            try:  # and the mask of a frame from after the motion
                self.spin_until(lambda: ours()[-1][0] >= stopped_at - 0.05, 10.0, "a mask after the motion", graph)
            except TimeoutError:
                pass
        _result, sim_end = spans.result(self, graph)
        self.truth.reset(ep)
        sources = {round(float(lb.get("stamp", math.nan)), 6): lb.get("source") for lb in self.labels[n_labels:] if not lb.get("error")}
        frames, captions = [], []
        m = {"frame_ious": [], "frame_intersections": [], "frame_unions": [], "frame_sim_times_s": [], "frame_sources": []}
        for stamp, pred in ours():
            pose = self.history.pose_at(stamp)
            if pose is not None:
                self.truth.set_pose(*pose)
            gt = self.truth.object_mask(ep.goal_object)
            if pred.shape != gt.shape:
                raise ValueError(f"the segmenter published a {pred.shape} mask for a {gt.shape} camera")
            value, inter, union = iou(pred, gt)
            source = sources.get(round(stamp, 6))
            m["frame_ious"].append(value)
            m["frame_intersections"].append(inter)
            m["frame_unions"].append(union)
            m["frame_sim_times_s"].append(stamp - sim_start)
            m["frame_sources"].append(source)
            rgb = self.history.frame_at(stamp)
            if rgb is not None:
                frames.append(_seg_picture(rgb, pred, gt))
                captions.append(f"t={stamp - sim_start:.1f} s  IoU {value:.2f}" + (f" ({source})" if source else ""))
        err = error()
        if not m["frame_ious"]:  # no mask at all: the episode scores 0 against the start view
            self.truth.reset(ep)
            gt = self.truth.object_mask(ep.goal_object)
            m.update(frame_ious=[0.0], frame_intersections=[0], frame_unions=[int(gt.sum())], frame_sources=[None], frame_sim_times_s=[0.0])
        m.update(iou=m["frame_ious"][0], intersection=m["frame_intersections"][0], union=m["frame_unions"][0],
                 clip_miou=float(np.mean(m["frame_ious"])), frames_scored=len(m["frame_ious"]) if frames else 0,
                 first_mask_latency_s=first_latency, error=(err or {}).get("error") if not frames else None,
                 motion=motion_reports, sim_time_s=sim_end - sim_start, wall_s=time.perf_counter() - w0,
                 episode_id=ep.episode_id, task=ep.task, held_out=ep.held_out, held_out_phrasing=ep.held_out_phrasing,
                 instruction=ep.instruction, contact_sheet="", gif="")
        if frames:
            from vlm_agent.sim.video import sample_indices, write_contact_sheet, write_gif

            idx = sample_indices(len(frames), SHEET_FRAMES)
            title = (f"{ep.episode_id}: '{query}'  (segmenter through ROS while the robot moves; predicted mask magenta, "
                     f"ground-truth outline green; clip mIoU {m['clip_miou']:.2f})")
            m["contact_sheet"] = write_contact_sheet(os.path.join(out_dir, f"{ep.episode_id}.png"), title, [frames[i] for i in idx],
                                                     [captions[i] for i in idx])
            m["gif"] = write_gif(os.path.join(out_dir, f"{ep.episode_id}.gif"), frames)
        print(f"[{ep.episode_id}] first-frame IoU {m['iou']:.2f}, clip mIoU {m['clip_miou']:.2f} over {m['frames_scored']} masks"
              + (f" (error: {m['error']})" if m["error"] else ""))
        return m


def _seg_picture(rgb: np.ndarray, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    from vlm_agent.sim.video import outline, overlay

    return outline(overlay(rgb, pred, (255, 0, 255)), gt, (0, 220, 0), width=2)


class ManipDemoClient(RosEvalClient):
    """See the module docstring."""

    def __init__(self, config, episode_timeout_s: float = 600.0, segmenter: bool = False, furniture_map: str = ""):
        """segmenter: the graph has the segmentation node; its masks are drawn on the frames.
        furniture_map: the task planner's furniture map file, rewritten with each episode's furniture
        before its instruction goes out (the robot's map of the simulated room)."""
        super().__init__(config, sensors=False)
        self.furniture_map = furniture_map
        self.episode_timeout_s = episode_timeout_s
        self.segmenter = segmenter
        self.progress: list[dict] = []
        self.shots: list[tuple[int, np.ndarray | None]] = []  # (index in progress, camera frame when it came)
        self.history = _FrameHistory(maxlen=30)
        self.masks: collections.OrderedDict[float, np.ndarray] = collections.OrderedDict()  # source frame stamp -> mask

    def __enter__(self):
        super().__enter__()
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        from vlm_agent.nodes.base import LATCHED_QOS, SENSOR_QOS
        from vlm_agent.nodes.task_planner import INSTRUCTION_TOPIC, PROGRESS_QOS, PROGRESS_TOPIC

        # Latched, like the simulator's instruction: task_planner listens on a volatile and (while a
        # latched publisher exists) a transient-local subscription and uses a sample seen on both
        # once; a volatile publisher would match only the first (rclpy warns of the other).
        self.instruction_pub = self.node.create_publisher(String, INSTRUCTION_TOPIC, LATCHED_QOS)
        self.node.create_subscription(String, PROGRESS_TOPIC, self._on_progress, PROGRESS_QOS)
        self.node.create_subscription(Image, "/camera/color/image_raw", self._on_camera, SENSOR_QOS)
        if self.segmenter:
            from vlm_agent.nodes.segmenter import MASK_TOPIC

            self.node.create_subscription(Image, MASK_TOPIC, self._on_mask, SENSOR_QOS)
        return self

    def _on_camera(self, msg) -> None:
        from vlm_agent.sensors.frames import stamp_to_seconds
        from vlm_agent.sensors.image_conversion import image_to_rgb8

        try:
            self.history.add_frame(stamp_to_seconds(msg.header.stamp), np.array(image_to_rgb8(msg)))
        except ValueError:
            pass

    def _on_mask(self, msg) -> None:
        from vlm_agent.sensors.frames import stamp_to_seconds
        from vlm_agent.sensors.image_conversion import image_to_numpy

        mask = np.asarray(image_to_numpy(msg)) > 127
        self.masks[stamp_to_seconds(msg.header.stamp)] = mask.reshape(mask.shape[:2])
        while len(self.masks) > 30:
            self.masks.popitem(last=False)

    def _shot(self) -> np.ndarray | None:
        """The newest camera frame; with the segmenter, the newest frame it has a mask for (drawn
        in magenta) when that is at most 0.5 s (sim) older."""
        from vlm_agent.sim.video import overlay

        if not self.history.frames:
            return None
        newest = max(self.history.frames)
        for stamp in reversed(self.masks):
            if stamp < newest - 0.5:
                break
            frame = self.history.frames.get(stamp)
            if frame is not None and frame.shape[:2] == self.masks[stamp].shape:
                return overlay(frame, self.masks[stamp], (255, 0, 255))
        return self.history.frames[newest]

    def _on_progress(self, msg) -> None:
        try:
            event = json.loads(msg.data)
        except ValueError:
            return
        self.progress.append(event)
        # Octopus answers with a program per round (its calls follow as skill events): shown too.
        if event.get("event") in ("skill", "started", "finished", "rejected") or (event.get("event") == "model" and event.get("style") == "octopus"):
            self.shots.append((len(self.progress) - 1, self._shot()))

    def wait_ready(self, graph=None) -> None:
        from vlm_agent.nodes.task_planner import INSTRUCTION_TOPIC

        super().wait_ready(graph)
        self.spin_until(lambda: self.instruction_pub.get_subscription_count() >= 1, self.config.startup_timeout_s,
                        f"task_planner on {INSTRUCTION_TOPIC}", graph)

    def run_episode(self, ep, graph, spans: EpisodeSpans, out_dir: str, planner: dict) -> dict:
        w0 = time.perf_counter()
        info, sim_start = spans.reset(self, ep, graph)
        text = info.get("instruction", ep.instruction)
        # Pictures only from this episode: a camera frame of the new scene before the task starts.
        self.history.frames.clear()
        self.masks.clear()
        self.spin_until(lambda: any(stamp >= sim_start for stamp in self.history.frames), self.config.frame_timeout_s,
                        "a camera frame after the reset", graph)
        seen = len(self.progress)
        if self.furniture_map:
            from vlm_agent.skills.object_memory import write_furniture_map

            write_furniture_map(self.furniture_map, ep.world().furniture)
        print(f"[{ep.episode_id}] {text!r}")
        self.instruction_pub.publish(self.String(data=text))

        def event(kind, task=None):
            return next((p for p in self.progress[seen:] if p.get("event") == kind and p.get("instruction") == text
                         and (task is None or p.get("episode") == task)), None)

        def ended():
            started = event("started")
            return (started is not None and event("finished", started["episode"]) is not None) or event("rejected") is not None

        timed_out = False
        try:
            self.spin_until(ended, self.episode_timeout_s + 30.0, f"end of the task '{text}'", graph)
        except TimeoutError:
            timed_out = True
        started = event("started")
        end = (event("finished", started["episode"]) if started is not None else event("rejected")) or {}
        task = started["episode"] if started is not None else None
        mine = [i for i in range(seen, len(self.progress)) if task is None or self.progress[i].get("episode") == task]
        events = [self.progress[i] for i in mine]
        result, sim_end = spans.result(self, graph)
        if result.get("episode_id") != ep.episode_id:
            raise RuntimeError(f"demo: the simulator's result is for {result.get('episode_id')}, expected {ep.episode_id}")
        skills = [p for p in events if p.get("event") == "skill"]
        m = {
            "episode_id": ep.episode_id, "task": ep.task, "held_out": ep.held_out, "instruction": ep.instruction,
            "success": float(result["success"]), "support": result.get("support"),
            "planner_state": end.get("state", "timeout" if timed_out else "?"),
            "planner_reason": end.get("reason", "demo timeout" if timed_out else ""),
            "perception": end.get("perception") or _perception_label(planner),
            "upper_bound": bool(end.get("upper_bound", planner.get("backend") == "sim_oracle")),
            "skill_calls": len(skills), "model_calls": sum(1 for p in events if p.get("event") == "model"),
            "calls": [f"{p.get('call')} -> {'ok' if p.get('success') else 'FAILED'}: {p.get('feedback', '')}" for p in skills],
            "model_replies": [str(p.get("raw_text", ""))[:500] for p in events if p.get("event") == "model"][:10],
            "sim_time_s": sim_end - sim_start, "wall_s": time.perf_counter() - w0, "contact_sheet": "",
        }
        m["contact_sheet"] = self._pictures(ep, text, m, set(mine), out_dir)
        print(f"[{ep.episode_id}] success={m['success']:.0f} planner {m['planner_state']} ({m['planner_reason']}), "
              f"{m['skill_calls']} skill calls, {m['sim_time_s']:.1f} s sim, {m['wall_s']:.1f} s wall")
        return m

    def _pictures(self, ep, text: str, m: dict, mine: set, out_dir: str) -> str:
        """The camera frame when the task started, at each skill call's report (the call and its
        feedback under it), and when it finished."""
        from vlm_agent.sim.video import sample_indices, write_contact_sheet

        tiles, k, rounds = [], 0, 0
        for index, rgb in self.shots:
            if index not in mine or rgb is None:
                continue
            p = self.progress[index]
            kind = p.get("event")
            if kind == "skill":
                k += 1
                caption = f"{k}. {p.get('call')} -> {'ok' if p.get('success') else 'FAILED'}: {p.get('feedback', '')}"
            elif kind == "model":
                rounds += 1
                caption = f"program {rounds}: {' '.join(str(p.get('raw_text', '')).split())}"
            elif kind == "started":
                caption = f"start ({p.get('style', '')}, {p.get('backend', '')})"
            else:
                caption = f"end: {p.get('state')} ({p.get('reason', '')}); simulator success {m['success']:.0f}"
                if p.get("feedback"):
                    caption += f"; feedback: {' '.join(str(p['feedback']).split())}"
            tiles.append((rgb, caption))
        if not tiles:
            return ""
        keep = sample_indices(len(tiles), SHEET_FRAMES)
        if len(keep) < len(tiles):
            print(f"[{ep.episode_id}] contact sheet: {len(keep)} of {len(tiles)} skill frames (all calls are in results.json)")
        tiles = [tiles[i] for i in keep]
        title = f"{ep.episode_id}: {text}  (perception: {m['perception']}; the camera at each skill call's report"
        title += ", the segmenter's newest mask in magenta)" if self.segmenter else ")"
        return write_contact_sheet(os.path.join(out_dir, f"{ep.episode_id}.png"), title, [t[0] for t in tiles], [t[1] for t in tiles],
                                   caption_lines=4)


def _perception_label(planner: dict) -> str:
    return "segmentation" if planner.get("perception") == "segmentation" else "ground_truth (upper bound)"
