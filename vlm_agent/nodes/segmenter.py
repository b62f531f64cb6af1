"""segmenter: referring segmentation of the camera stream, and the object's 3D position from depth.

Subscribes (relative names): `camera/color/image_raw` (sensor_msgs/Image, any colour encoding,
best-effort), `camera/depth/image_rect_raw` (16UC1 mm or 32FC1 m, aligned to colour) with
`camera/depth/camera_info` (optional: without them no 3D target), `camera/color/camera_info`,
`segmentation/query` (std_msgs/String: the referring expression) and
`vlm_agent/instruction` (used as the query while `use_instruction` is set and no explicit query came).
Publishes:
* `segmentation/mask`: sensor_msgs/Image mono8 (255 = object), the source frame's header;
* `segmentation/overlay`: rgb8, the frame with the mask tinted (for people; `publish_overlay`);
* `segmentation/label`: std_msgs/String JSON {query, score, bbox [x0, y0, x1, y1] (max
  exclusive), area, source (detected / re-detected / tracked / held / oracle / rejected), tracked, frame_index,
  latency_ms, stamp, frame_id, target [x, y, z] or null, target_frame, target_reason}; errors (a bad
  query, a failed model call) are labels with an `error` field;
* `segmentation/target`: geometry_msgs/PointStamped, where the object is (depth back-projection,
  `vlm_agent.sensors.backprojection`): its centre estimated from the visible surface
  (`target_point: centre`, the default; needs the camera's roll and pitch on the robot to know
  "up") or the visible surface's centroid (`target_point: surface`), in the depth camera's optical
  frame (the colour optical frame for aligned depth), stamped with the colour frame's stamp.
Names are relative (`segmentation/*` under the node's namespace; a namespace or `-r` moves them);
`segmentation/query` -> `segmentation/label` is what the ROS skill adapter's `SegmentationPerception`
(nodes/ros_skills.py) asks and reads (the label names its query and frame stamp; a PointStamped cannot).

A managed node: **configure** builds the segmenter (`backend`: `sa2va` loads `model_dir`; a load
that fails fails the transition with the reason), **activate** starts segmenting, **deactivate**
stops (frames are ignored), **cleanup** releases the model.

Results computed for a query that has since been replaced are discarded (`stale_query`); one
published just before a new query arrives can still reach its reader after that query was sent,
so readers match the label's query and stamp. Frames are never queued: the model runs on one worker thread, and a frame that arrives while it is
busy goes into a one-frame slot (replacing an older waiting frame, counted as `superseded` on
/diagnostics). When the model is free it takes the newest frame, which the segmenter's tracker
usually handles as a *tracked* frame (SAM 2's memory, no VLM call); the VLM runs only on its
keyframes. Everything wrong with an input is logged with its reason and the node carries on: a
wrong encoding or a malformed image (dropped), NaN or missing depth (no target, `target_reason`),
an empty, over-long or control-character query (refused, the previous query stays), a model call
that raises (an error label; the tracker restarts from a detection on the next frame).

`backend: oracle` is the privileged ground-truth mask source for tests in the embedded simulator: a
mirror of the simulator's episode (`oracle_episode_id`, or asked from `oracle_result_service`, again
after every new query, so a simulator reset followed by a query is mirrored: what `vlm-agent eval
--suite seg --ros` does per episode), posed from `odom`, renders the target's mask
(`vlm_agent.evaluation.oracle_segmenter`).

`verifier_model_dir` (off by default) adds a second look at every mask, whatever the backend (the
oracle's included, to measure the verifier's false rejections): the attribute verifier
(`vlm_agent.skills.verification.VerifiedSegmenter`) reads the mask's crop and, when it does not show
the colour and shape the query names (match below `verifier_min_match`), the frame publishes an
empty mask and a label with `source: "rejected"`, score 0, `rejected` (why, e.g. "the mask shows a
red cube, not a red ball (match 0.00)"), `rejected_area` and the verdict (`verifier`); accepted
masks pass with the verdict in the label. A reader sees the object as not in this view. A verifier
that fails to load fails **configure** with the reason.
"""
from __future__ import annotations

import collections
import concurrent.futures
import json
import math
import queue
import time
from dataclasses import dataclass

from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import Trigger

from vlm_agent.config import ConfigBase, param
from vlm_agent.nodes.base import COMMAND_QOS, SENSOR_PUB_QOS, SENSOR_QOS, WORKER_EXIT_WAIT_S, ManagedAgentNode, ModelWorker, run_node

NODE_CLASS = "SegmenterNode"

COLOR_TOPIC = "camera/color/image_raw"
COLOR_INFO_TOPIC = "camera/color/camera_info"
DEPTH_TOPIC = "camera/depth/image_rect_raw"
DEPTH_INFO_TOPIC = "camera/depth/camera_info"
QUERY_TOPIC = "segmentation/query"
INSTRUCTION_TOPIC = "vlm_agent/instruction"
ODOM_TOPIC = "odom"
MASK_TOPIC = "segmentation/mask"
OVERLAY_TOPIC = "segmentation/overlay"
LABEL_TOPIC = "segmentation/label"
TARGET_TOPIC = "segmentation/target"


@dataclass
class SegmenterNodeConfig(ConfigBase):
    """Backend, model, tracking and 3D-target settings of the segmentation node."""

    backend: str = param("sa2va", "segmenter backend", choices=("sa2va", "sa2va_official", "oracle"), read_only=True)
    model_dir: str = param("", "model directory (sa2va: a project sa2va directory; sa2va_official: a released checkpoint)", read_only=True)
    device: str = param("cpu", "torch device of the model (cpu, cuda, cuda:N)", read_only=True)
    num_threads: int = param(1, "torch intra-op threads (0 = torch's default)", min=0, max=64, read_only=True)
    query: str = param("", "referring expression to segment from the start (empty: wait for a query or an instruction)")
    use_instruction: bool = param(True, "use vlm_agent/instruction as the query until a segmentation/query arrives")
    redetect_every: int = param(10, "run the VLM on every k-th frame; SAM 2's memory tracks in between", min=1, max=100000, read_only=True)
    min_score: float = param(0.2, "re-detect at once when a tracked frame scores below this", min=0.0, max=1.0, read_only=True)
    mask_threshold: float = param(0.0, "mask logit threshold (0 = probability 0.5)", min=-20.0, max=20.0, read_only=True)
    keep_largest_component: bool = param(True, "keep only the largest connected region of a mask", read_only=True)
    seg_decoding: str = param("forced", "forced: read [SEG]'s hidden state always; generate: only when the LM emits [SEG]",
                              choices=("forced", "generate"), read_only=True)
    publish_overlay: bool = param(True, "publish segmentation/overlay (rgb8, for people)")
    overlay_alpha: float = param(0.5, "overlay tint strength", min=0.0, max=1.0)
    depth_max_dt_s: float = param(0.05, "pair a depth image with a colour frame only when their stamps differ by at most this (s)", min=0.0, max=1.0)
    depth_wait_s: float = param(0.1, "while depth images are arriving, wait this long (wall time) for a colour frame's depth before segmenting it without", min=0.0, max=2.0)
    depth_outlier_m: float = param(0.25, "ignore mask pixels whose depth is farther than this from the mask's median depth (m)", min=0.01, max=10.0)
    min_depth_points: int = param(5, "mask pixels with a valid depth needed for a 3D target", min=1, max=100000)
    max_depth_m: float = param(10.0, "depth beyond this is not used for the target (m)", min=0.1, max=100.0)
    target_point: str = param("centre", "centre: the object's centre estimated from its visible surface (what a grasp needs); "
                              "surface: the visible surface's centroid (about half the object's depth nearer)", choices=("centre", "surface"))
    camera_roll_rad: float = param(0.0, "target_point centre: the camera's roll on the robot (URDF rpy of camera_link), for 'up'",
                                   min=-math.pi, max=math.pi)
    camera_pitch_rad: float = param(0.0, "target_point centre: the camera's pitch (positive = looking down), for 'up'", min=-math.pi, max=math.pi)
    oracle_episode_id: str = param("", "backend oracle: the simulator's episode id (empty: ask oracle_result_service)", read_only=True)
    oracle_result_service: str = param("mujoco_sim/result", "backend oracle: the simulator's result service (its JSON names episode_id)", read_only=True)
    verifier_model_dir: str = param("", "attribute verifier (skills.verification): a mask it does not read as the query's colour and shape "
                                    "is published empty (label source 'rejected', with the reason); '' = off, 'default' = the shipped "
                                    "checkpoints/attribute_verifier, else a model directory", read_only=True)
    verifier_min_match: float = param(0.3, "the verifier's smallest accepted match: P(colour) x P(shape) of the words the query names",
                                      min=0.0, max=1.0, read_only=True)


@dataclass
class _Frame:
    rgb: object
    header: object
    stamp_s: float
    arrived: float = 0.0  # steady clock


class SegmenterNode(ManagedAgentNode):
    """Args (besides rclpy's): `segmenter`, an object with reset(query)/step(rgb) -> SegResult used
    instead of building one from the parameters in configure (tests, other backends)."""

    def __init__(self, segmenter=None, **kwargs):
        super().__init__("segmenter", SegmenterNodeConfig, **kwargs)
        self._injected = segmenter
        self._segmenter = None
        self._verifier = None  # skills.verification.AttributeVerifier (verifier_model_dir)
        self._worker = None
        self._entities: list = []
        self._query: str | None = None
        self._query_from = ""
        self._query_token = 0
        self._applied_token = -1
        self._slot: _Frame | None = None
        self._busy = False
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._depth: collections.deque = collections.deque(maxlen=8)
        self._depth_info = None
        self._color_info = None
        self._odom: collections.deque = collections.deque(maxlen=200)
        self._last_depth_arrival = -math.inf
        self._oracle_pending = False
        self._oracle_stale = False  # a new query came: ask the simulator's episode again (it may have reset)
        self._last_warn: dict[str, float] = {}
        self._last = None
        self._processed = 0

    # -- lifecycle ------------------------------------------------------------------------------
    def configure_node(self) -> None:
        cfg = self.config
        self._verifier = self._build_verifier() if cfg.verifier_model_dir else None
        self._segmenter = self._verified(self._injected if self._injected is not None else self._build_segmenter())
        self._worker = ModelWorker("segmenter_model", max_queued=4)
        self._results = queue.SimpleQueue()
        self._slot, self._busy, self._applied_token = None, False, -1
        self._mask_pub = self.create_publisher(Image, MASK_TOPIC, SENSOR_PUB_QOS)
        self._overlay_pub = self.create_publisher(Image, OVERLAY_TOPIC, SENSOR_PUB_QOS)
        self._label_pub = self.create_publisher(String, LABEL_TOPIC, COMMAND_QOS)
        self._target_pub = self.create_publisher(PointStamped, TARGET_TOPIC, SENSOR_PUB_QOS)
        subs = [
            self.create_subscription(Image, COLOR_TOPIC, self._on_image, SENSOR_QOS),
            self.create_subscription(Image, DEPTH_TOPIC, self._on_depth, SENSOR_QOS),
            self.create_subscription(CameraInfo, DEPTH_INFO_TOPIC, self._on_depth_info, SENSOR_QOS),
            self.create_subscription(CameraInfo, COLOR_INFO_TOPIC, self._on_color_info, SENSOR_QOS),
            self.create_subscription(String, QUERY_TOPIC, lambda m: self._on_query(m.data, "query"), COMMAND_QOS),
            self.create_subscription(String, INSTRUCTION_TOPIC, lambda m: self._on_query(m.data, "instruction"), COMMAND_QOS),
        ]
        self._oracle_client = None
        if cfg.backend == "oracle" and self._injected is None:
            subs.append(self.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS))
            self._oracle_client = self.create_client(Trigger, cfg.oracle_result_service)
        self._wake = self.create_guard_condition(self._drain)
        self._timer = self.create_steady_timer(0.05, self._drain)  # depth waits, oracle set-up
        self._entities = [("publisher", p) for p in (self._mask_pub, self._overlay_pub, self._label_pub, self._target_pub)]
        self._entities += [("subscription", s) for s in subs] + [("guard_condition", self._wake), ("timer", self._timer)]
        if self._oracle_client is not None:
            self._entities.append(("client", self._oracle_client))
        if cfg.query:
            self._on_query(cfg.query, "parameter")

    def _build_segmenter(self):
        cfg = self.config
        t0 = time.perf_counter()
        try:
            if cfg.backend == "oracle":
                segmenter = None  # built on the worker once the camera's size and the episode are known
            else:
                from vlm_agent.skills.segmentation import make_segmenter

                kwargs = {"model_dir": cfg.model_dir or None, "device": cfg.device}
                if cfg.backend == "sa2va":
                    kwargs.update(num_threads=cfg.num_threads, redetect_every=cfg.redetect_every, min_score=cfg.min_score,
                                  mask_threshold=cfg.mask_threshold, keep_largest_component=cfg.keep_largest_component, seg_decoding=cfg.seg_decoding)
                else:
                    kwargs.update(redetect_every=cfg.redetect_every)
                segmenter = make_segmenter(cfg.backend, **kwargs)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.health.set_level(self.health.ERROR, f"model unavailable: {reason}")
            raise RuntimeError(f"could not build the {cfg.backend} segmenter: {reason}") from exc
        self.health.set("model_load_s", f"{time.perf_counter() - t0:.2f}")
        self.health.set_level(self.health.OK, "segmenter ready")
        return segmenter

    def _build_verifier(self):
        """The attribute verifier of `verifier_model_dir` ("default": the shipped checkpoint); a load
        that fails fails configure with the reason, as a model that cannot load does."""
        cfg = self.config
        model_dir = None if cfg.verifier_model_dir == "default" else cfg.verifier_model_dir
        try:
            from vlm_agent.skills.verification import AttributeVerifier

            return AttributeVerifier(model_dir, device=cfg.device, min_match=cfg.verifier_min_match)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.health.set_level(self.health.ERROR, f"verifier unavailable: {reason}")
            raise RuntimeError(f"could not load the attribute verifier ({cfg.verifier_model_dir}): {reason}") from exc

    def _verified(self, segmenter):
        """`segmenter` behind the verifier when one is configured (None, the oracle before its mirror is built, stays None)."""
        if segmenter is None or self._verifier is None:
            return segmenter
        from vlm_agent.skills.verification import VerifiedSegmenter

        return VerifiedSegmenter(segmenter, self._verifier)

    def activate_node(self) -> None:
        self._slot = None

    def deactivate_node(self) -> None:
        self._slot = None

    def cleanup_node(self) -> None:
        for kind, entity in reversed(self._entities):
            getattr(self, f"destroy_{kind}")(entity)
        self._entities = []
        from vlm_agent.skills.verification import VerifiedSegmenter

        inner = self._segmenter.inner if isinstance(self._segmenter, VerifiedSegmenter) else self._segmenter
        close = getattr(inner, "close", None) if inner is not self._injected else None
        if self._worker is not None:
            if callable(close):
                # on the worker: the oracle mirror's GL context belongs to the thread that made it
                try:
                    self._worker.submit(close).result(timeout=WORKER_EXIT_WAIT_S)
                except Exception as exc:  # noqa: BLE001 (a hung or failed close is logged; cleanup goes on)
                    self.get_logger().warning(f"closing the segmenter on its worker failed: {type(exc).__name__}: {exc}")
                close = None
            self._worker.shutdown(wait=True, cancel_futures=True, timeout=WORKER_EXIT_WAIT_S)
            self._worker = None
        if callable(close):
            close()
        self._segmenter = None
        self._verifier = None
        self._busy = False

    def destroy_node(self):
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True, timeout=WORKER_EXIT_WAIT_S)
        return super().destroy_node()

    # -- inputs (executor thread; never block) ----------------------------------------------------
    def _on_query(self, data, origin: str) -> None:
        from vlm_agent.models.sa2va.processing_sa2va import validate_query

        self.health.tick(origin)
        if origin == "instruction" and (not self.config.use_instruction or self._query_from in ("query", "parameter")):
            return
        try:
            text = validate_query(data)
        except ValueError as exc:
            self.health.drop("bad_query", str(exc))
            self.get_logger().error(f"{origin} refused as a segmentation query, keeping {self._query!r}: {exc}")
            self._publish_label({"query": data if isinstance(data, str) and len(data) <= 300 else None, "error": f"query refused: {exc}", "origin": origin})
            return
        if text == self._query and origin != "query":
            return
        self._query, self._query_from = text, origin
        self._query_token += 1
        if self.config.backend == "oracle" and self._injected is None:
            self._oracle_stale = True
        self.get_logger().info(f"segmentation query ({origin}): {text!r}")

    def _on_image(self, msg: Image) -> None:
        from vlm_agent.sensors.frames import color_message_to_rgb, stamp_to_seconds

        self.health.tick("camera")
        if not self.is_active:
            return
        try:
            rgb = color_message_to_rgb(msg)
            stamp = stamp_to_seconds(msg.header.stamp)
        except ValueError as exc:
            self._drop("frame", f"bad colour image: {exc}")
            return
        if self._query is None:
            self._drop("no_query", "no query yet (segmentation/query or vlm_agent/instruction)", log=False)
            return
        if self._slot is not None:
            self.health.drop("superseded", "a newer frame arrived while the model was busy")
        self._slot = _Frame(rgb, msg.header, stamp, time.monotonic())
        self._kick()

    def _on_depth(self, msg: Image) -> None:
        from vlm_agent.sensors.frames import stamp_to_seconds

        self.health.tick("depth")
        try:
            self._depth.append((stamp_to_seconds(msg.header.stamp), msg))
        except ValueError as exc:
            self._drop("depth", f"bad depth stamp: {exc}")
            return
        self._last_depth_arrival = time.monotonic()
        self._kick()  # a frame may be waiting for this depth image

    def _on_depth_info(self, msg: CameraInfo) -> None:
        self._depth_info = msg

    def _on_color_info(self, msg: CameraInfo) -> None:
        self._color_info = msg

    def _on_odom(self, msg: Odometry) -> None:
        from vlm_agent.sensors.frames import odometry_to_state

        try:
            state = odometry_to_state(msg)
        except ValueError as exc:
            self._drop("odom", str(exc))
            return
        self._odom.append(state)

    # -- the model call --------------------------------------------------------------------------
    def _kick(self) -> None:
        if self._busy or self._slot is None or not self.is_active or self._worker is None:
            return
        if self.config.backend == "oracle" and self._injected is None and not self._oracle_ready():
            return
        if self._waiting_for_depth(self._slot):
            return
        frame, self._slot = self._slot, None
        depth = self._depth_for(frame.stamp_s)
        pose = self._pose_at(frame.stamp_s) if self.config.backend == "oracle" else None
        token, query = self._query_token, self._query
        self._busy = True
        try:
            future = self._worker.submit(self._step_job, frame, depth, pose, token, query)
        except (queue.Full, RuntimeError) as exc:
            self._busy = False
            self._drop("worker", f"model worker unavailable: {exc}")
            return
        future.add_done_callback(lambda f: self._job_done("step", f))

    def _step_job(self, frame: _Frame, depth, pose, token: int, query: str):
        """Worker thread: (re)set the query, segment, back-project, draw the overlay."""
        from vlm_agent.sensors.backprojection import mask_centroid_3d, mask_object_centre_3d
        from vlm_agent.skills.segmentation import overlay_mask

        seg = self._segmenter
        if pose is not None:
            seg.set_pose(*pose)
        if token != self._applied_token:
            seg.reset(query)
            self._applied_token = token
        try:
            result = seg.step(frame.rgb)
        except Exception:
            self._applied_token = -1  # the tracker may be half-updated: start over from a detection
            raise
        target, reason = None, ""
        if result.source == "rejected":  # skills.verification.VerifiedSegmenter: an empty mask
            reason = f"the attribute verifier rejected the mask: {result.extra.get('rejected', '')}"
        elif depth is None:
            reason = "no depth image or depth camera_info paired with this frame"
        elif not result.mask.any():
            reason = "empty mask"
        else:
            depth_m, intrinsics = depth
            cfg = self.config
            kw = {"outlier_m": cfg.depth_outlier_m, "min_points": cfg.min_depth_points, "max_depth_m": cfg.max_depth_m}
            try:
                if cfg.target_point == "surface":
                    target = mask_centroid_3d(result.mask, depth_m, intrinsics, **kw)
                else:
                    target = mask_object_centre_3d(result.mask, depth_m, intrinsics, self._camera_tilt(), **kw)
            except ValueError as exc:
                reason = f"depth unusable: {exc}"
            else:
                if target is None:
                    reason = f"fewer than {cfg.min_depth_points} mask pixels with a valid depth"
        overlay = overlay_mask(frame.rgb, result.mask, alpha=self.config.overlay_alpha) if self.config.publish_overlay else None
        return frame, result, target, reason, (depth[1].frame_id if depth is not None else ""), overlay, token

    def _camera_tilt(self):
        """Rotation from the optical frame into a frame at the camera with z up (camera_roll/pitch_rad)."""
        from vlm_agent.safety.obstacle import CameraMount

        cfg = self.config
        return CameraMount(0.0, 0.0, 0.0, cfg.camera_roll_rad, cfg.camera_pitch_rad, 0.0).optical_to_base()[0]

    def _job_done(self, tag: str, future) -> None:
        self._results.put((tag, future))
        try:
            self._wake.trigger()
        except Exception:  # noqa: BLE001 (destroyed guard condition or context during cleanup/shutdown)
            pass

    def _drain(self) -> None:
        while not self._results.empty():
            tag, future = self._results.get()
            if tag == "step":
                self._busy = False
                self._publish_result(future)
            elif tag == "oracle":
                self._oracle_pending = False
                if future.exception() is not None:
                    self._drop("oracle", f"oracle episode: {future.exception()}")
        if self.config.backend == "oracle" and self._injected is None:
            self._oracle_ready()
        self._kick()

    def _publish_result(self, future: concurrent.futures.Future) -> None:
        from vlm_agent.sensors.image_conversion import numpy_to_image

        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            reason = f"{type(exc).__name__}: {exc}"
            self.health.drop("model_error", reason[:300])
            self.get_logger().error(f"segmentation failed on a frame (the node carries on): {reason}")
            self._publish_label({"query": self._query, "error": f"model error: {reason[:500]}"})
            return
        frame, result, target, reason, target_frame, overlay, token = future.result()
        if not self.is_active:
            return
        if token != self._query_token:
            # The query changed while this frame was segmented: whoever asked the new one must not
            # take this answer for theirs (results already published are matched by query and stamp).
            self.health.drop("stale_query", "a result for the previous query was discarded")
            return
        import numpy as np

        self._processed += 1
        self._last = result
        self.health.tick("mask")
        self.health.latency("segment", result.latency_s)
        self._mask_pub.publish(numpy_to_image((result.mask.astype(np.uint8) * 255), "mono8", header=frame.header))
        if overlay is not None:
            self._overlay_pub.publish(numpy_to_image(overlay, "rgb8", header=frame.header))
        label = result.label()
        label.update(stamp=frame.stamp_s, frame_id=frame.header.frame_id, target=None, target_frame=None, target_reason=reason)
        if target is not None:
            msg = PointStamped()
            msg.header.stamp = frame.header.stamp
            msg.header.frame_id = target_frame or frame.header.frame_id
            msg.point.x, msg.point.y, msg.point.z = target.point
            self._target_pub.publish(msg)
            label.update(target=[round(v, 4) for v in target.point], target_frame=msg.header.frame_id, target_points=target.n_points)
        self._publish_label(label)

    def _publish_label(self, label: dict) -> None:
        self._label_pub.publish(String(data=json.dumps(label)))

    # -- depth pairing ------------------------------------------------------------------------------
    def _waiting_for_depth(self, frame: _Frame) -> bool:
        """True while a depth stream is live (a depth image within the last 2 s), this frame's depth
        has not come yet (cameras and the simulator may publish colour first) and the frame has
        waited less than depth_wait_s."""
        now = time.monotonic()
        if now - self._last_depth_arrival > 2.0 or now - frame.arrived >= self.config.depth_wait_s:
            return False
        return not any(abs(t - frame.stamp_s) <= self.config.depth_max_dt_s for t, _ in self._depth)

    def _depth_for(self, stamp_s: float):
        """(depth metres (H, W), CameraIntrinsics with frame_id) of the depth image nearest in time
        to the colour frame (within depth_max_dt_s), or None."""
        from vlm_agent.sensors.camera_info import camera_info_to_intrinsics
        from vlm_agent.sensors.frames import depth_message_to_metres

        if not self._depth:
            return None
        info = self._depth_info if self._depth_info is not None else self._color_info
        if info is None:
            self._drop("depth", "no camera_info for the depth image", log=False)
            return None
        dt, msg = min(((abs(t - stamp_s), m) for t, m in self._depth), key=lambda p: p[0])
        if dt > self.config.depth_max_dt_s:
            self._drop("depth", f"no depth image within {self.config.depth_max_dt_s} s of the colour frame (nearest {dt:.3f} s)", log=False)
            return None
        try:
            depth = depth_message_to_metres(msg)
            intrinsics = camera_info_to_intrinsics(info)
        except ValueError as exc:
            self._drop("depth", f"bad depth image or camera_info: {exc}")
            return None
        if depth.shape != (intrinsics.height, intrinsics.width):
            self._drop("depth", f"depth image {depth.shape[1]}x{depth.shape[0]} does not match its camera_info {intrinsics.width}x{intrinsics.height}")
            return None
        if not intrinsics.frame_id:
            intrinsics.frame_id = msg.header.frame_id
        return depth, intrinsics

    # -- the oracle backend -------------------------------------------------------------------------
    def _oracle_ready(self) -> bool:
        """True once the oracle mirror is built and holds the simulator's episode; otherwise start
        what is missing (once at a time) and return False."""
        seg = self._segmenter
        if seg is not None and getattr(seg, "episode", None) is not None and not self._oracle_stale and not self._oracle_pending:
            return True
        if self._oracle_pending or self._color_info is None or self._worker is None:
            return False
        if self.config.oracle_episode_id:
            self._oracle_stale = False
            self._oracle_load(self.config.oracle_episode_id)
        elif self._oracle_client.service_is_ready():
            self._oracle_stale = False  # a query after this request asks again
            self._oracle_pending = True
            self._oracle_client.call_async(Trigger.Request()).add_done_callback(self._on_oracle_result)
        return False

    def _on_oracle_result(self, future) -> None:
        try:
            data = json.loads(future.result().message)
            episode_id = data["episode_id"]
        except Exception as exc:  # noqa: BLE001 (any malformed answer: logged, asked again later)
            self._oracle_pending = False
            self._drop("oracle", f"{self.config.oracle_result_service} gave no episode id: {exc}")
            return
        self._oracle_pending = False
        self._oracle_load(episode_id)

    def _oracle_load(self, episode_id: str) -> None:
        info = self._color_info
        width, height = int(info.width), int(info.height)
        fy = float(info.k[4])
        fov = math.degrees(2.0 * math.atan(0.5 * height / fy)) if fy > 0 else 60.0

        def load():
            from vlm_agent.evaluation.oracle_segmenter import OracleSegmenter

            seg = self._segmenter
            if seg is None:
                seg = self._verified(OracleSegmenter(width, height, fov))  # the verifier's false rejections on true masks
            seg.load_episode(episode_id)
            self._segmenter = seg
            self._applied_token = -1
            return episode_id

        self._oracle_pending = True
        self.get_logger().info(f"oracle: mirroring episode {episode_id} ({width}x{height}, {fov:.1f} deg)")
        self._worker.submit(load).add_done_callback(lambda f: self._job_done("oracle", f))

    def _pose_at(self, stamp_s: float):
        """Odometry (x, y, yaw) at the frame's stamp: the latest sample not after it (else the oldest)."""
        if not self._odom:
            return None
        best = None
        for state in self._odom:
            if state.stamp_s <= stamp_s + 1e-6:
                best = state
        best = best or self._odom[0]
        return best.x, best.y, best.yaw

    def on_config_changed(self, old: SegmenterNodeConfig, new: SegmenterNodeConfig) -> None:
        if new.query and new.query != old.query and self._worker is not None:
            self._on_query(new.query, "parameter")

    # -- helpers -----------------------------------------------------------------------------------
    def _drop(self, reason: str, detail: str, log: bool = True) -> None:
        self.health.drop(reason, detail[:300])
        now = time.monotonic()
        if log and now - self._last_warn.get(reason, -math.inf) > 5.0:
            self._last_warn[reason] = now
            self.get_logger().warning(detail)

    def status_extra(self) -> dict[str, str]:
        last = self._last
        values = {
            "backend": self.config.backend,
            "query": (self._query or "")[:120],
            "query_from": self._query_from,
            "frames_segmented": str(self._processed),
            "busy": str(self._busy),
            "model": "ready" if self._segmenter is not None else "not loaded",
            "verifier": self.config.verifier_model_dir or "off",
        }
        if last is not None:
            values.update(last_source=last.source, last_score=f"{last.score:.3f}", last_area=str(last.area), last_latency_ms=f"{1e3 * last.latency_s:.1f}")
        return values


def main(args=None):
    return run_node(SegmenterNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
