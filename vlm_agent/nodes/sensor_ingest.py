"""sensor_ingest: are colour, depth and odometry arriving, and in sync? (a sensor-health monitor).

Subscribes to colour (`sensor_msgs/Image`, or `CompressedImage` with `color_transport: compressed`),
optionally depth, and odometry, on relative names (`camera/color/image_raw` or
`camera/color/image_raw/compressed`, `camera/depth/image_rect_raw`, `odom`; namespaces and `-r`
remaps move them); runs `vlm_agent.sensors.ingest.SensorIngest` (the same synchroniser
and frame history the planners use) and reports on `/diagnostics`: synchronised observations
per second, the stamp spread inside each set (`latency.sync_spread`), the age of each observation
when it completed (`latency.age`, transport + sync delay on the node clock), history size, and
drops by reason (malformed, unmatched, out_of_order, queue_overflow, stale). It publishes nothing
else; run it next to a camera driver to check the `slop_s` a planner will need.
"""
from __future__ import annotations

from dataclasses import dataclass

from nav_msgs.msg import Odometry
from sensor_msgs.msg import CompressedImage, Image

from vlm_agent.config import param
from vlm_agent.nodes.base import SENSOR_QOS, AgentNode, run_node
from vlm_agent.sensors.ingest import IngestConfig, SensorIngest

NODE_CLASS = "SensorIngestNode"


@dataclass
class SensorIngestNodeConfig(IngestConfig):
    """IngestConfig plus the colour transport (see `IngestConfig` for sync and history fields)."""

    color_transport: str = param(
        "raw", "colour message type: raw = Image on camera/color/image_raw, compressed = CompressedImage on "
        "camera/color/image_raw/compressed", choices=("raw", "compressed"), read_only=True
    )


COLOR_TOPIC = "camera/color/image_raw"
DEPTH_TOPIC = "camera/depth/image_rect_raw"
ODOM_TOPIC = "odom"


class SensorIngestNode(AgentNode):
    def __init__(self, **kwargs):
        super().__init__("sensor_ingest", SensorIngestNodeConfig, **kwargs)
        c = self.config
        self.ingest = SensorIngest(c)
        self.health.set_level(self.health.WARN, "no synchronised observation yet")
        color_type = CompressedImage if c.color_transport == "compressed" else Image
        color_topic = COLOR_TOPIC + "/compressed" if c.color_transport == "compressed" else COLOR_TOPIC
        self.create_subscription(color_type, color_topic, lambda m: self._on("color", m), SENSOR_QOS)
        if c.use_depth:
            self.create_subscription(Image, DEPTH_TOPIC, lambda m: self._on("depth", m), SENSOR_QOS)
        if c.use_odom:
            self.create_subscription(Odometry, ODOM_TOPIC, lambda m: self._on("odom", m), SENSOR_QOS)

    def _on(self, stream: str, msg) -> None:
        self.health.tick(stream)
        now_s = self.get_clock().now().nanoseconds * 1e-9
        for obs in getattr(self.ingest, f"add_{stream}")(msg, now_s=now_s):
            if self.ingest.observations == 1:
                self.health.set_level(self.health.OK, "ok")
            self.health.tick("observations")
            self.health.latency("sync_spread", obs.spread_s)
            self.health.latency("age", max(0.0, now_s - obs.stamp_s))

    def status_extra(self) -> dict[str, str]:
        stats = self.ingest.stats()
        if self.ingest.last_drop_reason:
            stats["last_drop_reason"] = self.ingest.last_drop_reason
        return {k: str(v) for k, v in stats.items()}


def main(args=None):
    return run_node(SensorIngestNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
