"""recorder: the agent's inputs and outputs to an MCAP file with ROS 2 encoding (`vlm-agent record`).

Topics are relative by default (the contract's names, resolved in the recorder's namespace, so
`-r __ns:=/robot1` records robot1's graph); absolute names are taken as they are.
Subscribes *raw* (CDR bytes, never deserialised) to each topic and appends to an MCAP file through
`vlm_agent.sensors.recording.McapRecordingWriter` (`ros2msg` schemas, `cdr` messages), which
Foxglove and `ros2 bag` (MCAP storage) read. Topic types come from the topic contract or, for any
other topic, from the ROS graph once a publisher appears. QoS adapts to the publishers like
rosbag2: reliable / transient-local when every publisher offers it (so latched plans are
recorded), best-effort otherwise; a topic subscribed before any publisher existed is
re-subscribed once publishers show up. Log times are the node clock (sim time under
`use_sim_time`). The file is finalised on shutdown or when `duration_s` has elapsed.
"""
from __future__ import annotations

import datetime
import importlib
import os
import time
from dataclasses import dataclass

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from vlm_agent.config import ConfigBase, param
from vlm_agent.nodes.base import DIAGNOSTICS_TOPIC, AgentNode, run_node
from vlm_agent.sensors.recording import COMPRESSIONS, McapRecordingWriter, canonical_type

NODE_CLASS = "RecorderNode"

# The topic contract (ARCHITECTURE.md): what `vlm-agent record` captures by default. Names are
# relative, as the nodes publish them: they resolve in the recorder's namespace (`-r __ns:=/robot1`).
CONTRACT_TYPES = {
    "camera/color/image_raw": "sensor_msgs/msg/Image",
    "camera/color/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
    "camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "camera/depth/image_rect_raw": "sensor_msgs/msg/Image",
    "camera/depth/camera_info": "sensor_msgs/msg/CameraInfo",
    "odom": "nav_msgs/msg/Odometry",
    "joint_states": "sensor_msgs/msg/JointState",
    "vlm_agent/instruction": "std_msgs/msg/String",
    "vlm_agent/plan": "std_msgs/msg/String",
    "vlm_agent/executor/state": "std_msgs/msg/String",
    "vlm_agent/cmd_vel_raw": "geometry_msgs/msg/Twist",
    "cmd_vel": "geometry_msgs/msg/Twist",
    "goal_pose": "geometry_msgs/msg/PoseStamped",
    "arm_controller/joint_trajectory": "trajectory_msgs/msg/JointTrajectory",
    "gripper/command": "std_msgs/msg/Float64",
    "vlm_agent/segmentation/mask": "sensor_msgs/msg/Image",
    DIAGNOSTICS_TOPIC: "diagnostic_msgs/msg/DiagnosticArray",
}
DEFAULT_TOPICS = [t for t in CONTRACT_TYPES if t not in ("vlm_agent/segmentation/mask", DIAGNOSTICS_TOPIC)]


@dataclass
class RecorderConfig(ConfigBase):
    """Recorder parameters.

    Attributes:
        output_path: the `.mcap` file; "" = `recordings/vlm_agent_<UTC time>.mcap` in the working dir.
        topics: topics to record, relative (resolved in the node's namespace) or absolute; types from
            the contract, else from the graph.
        record_all: also record every other topic that appears in the graph (except rosout/parameter events).
        duration_s: stop recording after this many seconds (0 = until shutdown).
        compression: MCAP chunk compression.
        discovery_period_s: how often to look for publishers of not-yet-subscribed topics.
    """

    output_path: str = param("", "output .mcap path; empty = recordings/vlm_agent_<time>.mcap", read_only=True)
    topics: list[str] = param(DEFAULT_TOPICS, "topics to record", read_only=True)
    record_all: bool = param(False, "also record every other topic in the graph", read_only=True)
    duration_s: float = param(0.0, "stop after this many seconds; 0 = until shutdown", min=0.0, read_only=True)
    compression: str = param("zstd", "MCAP chunk compression", choices=COMPRESSIONS, read_only=True)
    discovery_period_s: float = param(0.5, "period of the graph scan for new publishers (s)", min=0.05, max=60.0)

    def __post_init__(self):
        super().__post_init__()
        if self.output_path and not self.output_path.endswith(".mcap"):
            raise ValueError(f"RecorderConfig.output_path: '{self.output_path}' must end in .mcap")
        bad = [t for t in self.topics if not t.strip("/") or t.startswith("~") or " " in t]
        if bad:
            raise ValueError(f"RecorderConfig.topics: not topic names: {bad}")


def message_class(type_name: str):
    """'sensor_msgs/msg/Image' -> the Python message class."""
    package, _, name = canonical_type(type_name).split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


_IGNORED = ("/rosout", "/parameter_events")


class RecorderNode(AgentNode):
    def __init__(self, **kwargs):
        super().__init__("recorder", RecorderConfig, **kwargs)
        c = self.config
        self.output_path = c.output_path or os.path.join(
            "recordings", f"vlm_agent_{datetime.datetime.now(datetime.timezone.utc):%Y%m%d_%H%M%S}.mcap"
        )
        self.writer = McapRecordingWriter(
            self.output_path, compression=c.compression,
            metadata={"topics": ",".join(c.topics), "record_all": str(c.record_all), "node": self.get_fully_qualified_name(),
                      "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat()},
        )
        # resolved name -> contract type (None: learn it from the graph)
        self._topics = {self.resolve_topic_name(t): CONTRACT_TYPES.get(t.lstrip("/") if t != DIAGNOSTICS_TOPIC else t) for t in c.topics}
        self._subs: dict[str, object] = {}
        self._qos_key: dict[str, tuple] = {}
        self._skip_repeat: dict[str, bytes] = {}
        self._last: dict[str, bytes] = {}
        self._unrecordable: set[str] = set()
        self.finished = False
        self._started_wall = time.monotonic()
        self.get_logger().info(f"recording {len(c.topics)} topics{' + all discovered' if c.record_all else ''} to {self.output_path}")
        self._scan()
        self._scan_timer = self.create_timer(c.discovery_period_s, self._scan)

    # -- subscriptions --------------------------------------------------------------------------
    def _wanted(self) -> dict[str, str | None]:
        """topic -> type name (None while unknown) for everything we should record."""
        graph = {name: types for name, types in self.get_topic_names_and_types()}
        wanted: dict[str, str | None] = {}
        for topic, contract_type in self._topics.items():
            types = graph.get(topic)
            wanted[topic] = types[0] if types else contract_type
        if self.config.record_all:
            for topic, types in graph.items():
                if topic not in wanted and topic not in _IGNORED and types:
                    wanted[topic] = types[0]
        return wanted

    def _qos_for(self, topic: str) -> tuple[QoSProfile, tuple]:
        infos = self.get_publishers_info_by_topic(topic)
        infos = [i for i in infos if i.node_name != self.get_name() or i.node_namespace != self.get_namespace()]
        reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
        latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
        # Best-effort + volatile matches every publisher; use it until publishers are known.
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=100,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )
        return qos, (reliable, latched)

    def _scan(self) -> None:
        if self.finished:
            return
        if self.config.duration_s and time.monotonic() - self._started_wall >= self.config.duration_s:
            self.stop_recording("duration reached")
            return
        for topic, type_name in self._wanted().items():
            if type_name is None:
                continue
            qos, key = self._qos_for(topic)
            if topic in self._subs and (self._qos_key[topic] == key or not self.count_publishers(topic)):
                continue  # subscribed with the QoS the publishers offer (or they left: keep it)
            try:
                cls = message_class(type_name)
                self.writer.add_channel(topic, type_name)
            except (ImportError, AttributeError, LookupError, ValueError) as exc:
                if topic not in self._unrecordable:
                    self._unrecordable.add(topic)
                    self.health.drop("unrecordable_topic", f"{topic}: {exc}")
                    self.get_logger().warning(f"cannot record {topic} ({type_name}): {exc}")
                continue
            if topic in self._subs:
                self.destroy_subscription(self._subs.pop(topic))
                if key[1]:  # a transient-local subscription re-delivers the latched message we may have
                    self._skip_repeat[topic] = self._last.get(topic, b"")
            self._subs[topic] = self.create_subscription(cls, topic, lambda data, t=topic: self._on_message(t, data), qos, raw=True)
            self._qos_key[topic] = key
        self.health.set("subscribed", len(self._subs))

    def _on_message(self, topic: str, data: bytes) -> None:
        if self.finished:
            return
        if topic in self._skip_repeat and self._skip_repeat.pop(topic) == data:
            return
        self._last[topic] = data
        self.writer.write(topic, data, self.get_clock().now().nanoseconds)
        self.health.tick(topic)

    def stop_recording(self, reason: str = "") -> None:
        """Close the file (idempotent); the node stays up and reports `finished` in its status."""
        if self.finished:
            return
        self.finished = True
        for sub in self._subs.values():
            self.destroy_subscription(sub)
        self._subs.clear()
        self.writer.close()
        counts = self.writer.counts()
        self.health.set_level(self.health.OK, f"finished: {reason}" if reason else "finished")
        self.get_logger().info(f"wrote {sum(counts.values())} messages ({self.writer.bytes_written / 1e6:.1f} MB) to {self.output_path}" + (f" ({reason})" if reason else ""))

    def status_extra(self) -> dict[str, str]:
        out = {f"recorded.{t}": str(n) for t, n in self.writer.counts().items()}
        out["output_path"] = self.output_path
        out["recorded_mb"] = f"{self.writer.bytes_written / 1e6:.2f}"
        out["state"] = "finished" if self.finished else "recording"
        return out

    def destroy_node(self):
        self.stop_recording("shutdown")
        return super().destroy_node()


def main(args=None):
    return run_node(RecorderNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
