"""Issue 11 holes closed in the safety_supervisor node, over real rclpy (each test failed before):

* the obstacle rule in base_link from the depth stream's CameraInfo and the camera mounting
  parameters (a wall 0.3 m ahead of the footprint, rendered for the sim robot's camera), with the
  gate state on `vlm_agent/safety/state` (reliable, transient-local: blocked, which way, why, how far);
* an accepted command is forwarded on arrival, not at the next output tick;
* the e-stop survives a supervisor restart through `estop_latch_file`.

Each test runs its own supervisor in its own namespace (a camera model, once given, stays).
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

W, H = 64, 48
VFOV = math.radians(60.0)


def _intrinsics():
    fy = (H / 2.0) / math.tan(VFOV / 2.0)
    return fy, fy, (W - 1) / 2.0, (H - 1) / 2.0


def render_wall_depth(wall_x_m: float | None, mount) -> np.ndarray:
    """(H, W) float32 depth (optical z, metres) seen by a camera at `mount` over a flat floor, with an
    infinite vertical wall at base_link x = `wall_x_m` (None: floor only); no return = +inf."""
    fx, fy, cx, cy = _intrinsics()
    rot, t = mount.optical_to_base()
    u, v = np.meshgrid(np.arange(W), np.arange(H))
    d_opt = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u, dtype=float)], axis=-1)
    d_base = d_opt @ rot.T  # base_link direction per unit optical depth
    with np.errstate(divide="ignore", invalid="ignore"):
        s_floor = np.where(d_base[..., 2] < 0, -t[2] / d_base[..., 2], np.inf)
        s_wall = np.inf if wall_x_m is None else np.where(d_base[..., 0] > 0, (wall_x_m - t[0]) / d_base[..., 0], np.inf)
    s = np.minimum(s_floor, s_wall)
    return np.where(s > 0, s, np.inf).astype(np.float32)


class Gate:
    """A supervisor in `namespace` and a helper that streams stamped depth (+ CameraInfo) and commands."""

    def __init__(self, context, executor, namespace, params, camera_info=True):
        from geometry_msgs.msg import Twist
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, bring_up
        from vlm_agent.nodes.safety_supervisor import SafetySupervisorNode
        from vlm_agent.sensors.image_conversion import numpy_to_image

        self.executor = executor
        self.ns = namespace
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.supervisor = SafetySupervisorNode(context=context, namespace=namespace, parameter_overrides=overrides)
        assert bring_up(self.supervisor)
        self.node = Node("gate_helper", namespace=namespace, context=context)
        executor.add_node(self.supervisor)
        executor.add_node(self.node)
        self.Twist, self.String, self._numpy_to_image = Twist, String, numpy_to_image
        self.depth_m = np.full((H, W), np.inf, np.float32)
        self.command = None
        self.received: list[tuple[float, float, float]] = []
        self.states: list[dict] = []
        self.camera_info = camera_info
        fx, fy, cx, cy = _intrinsics()
        self.info = CameraInfo(width=W, height=H, k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])
        self.depth_pub = self.node.create_publisher(Image, "camera/depth/image_rect_raw", SENSOR_QOS)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera/depth/camera_info", SENSOR_QOS)
        self.cmd_pub = self.node.create_publisher(Twist, "vlm_agent/cmd_vel_raw", COMMAND_QOS)
        self.sub = self.node.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, COMMAND_QOS)
        self.state_sub = self.node.create_subscription(String, "vlm_agent/safety/state", self._on_state, LATCHED_QOS)
        self.node.create_timer(1.0 / 30.0, self._sensors)
        self.node.create_timer(1.0 / 20.0, self._commands)
        for pub in (self.depth_pub, self.info_pub, self.cmd_pub):
            assert wait_for_subscribers(pub)
        assert wait_for_publishers(self.sub) and wait_for_publishers(self.state_sub)

    def _sensors(self):
        stamp = self.node.get_clock().now().to_msg()
        depth = self._numpy_to_image(self.depth_m, "32FC1")
        depth.header.stamp = stamp
        self.depth_pub.publish(depth)
        if self.camera_info:
            self.info.header.stamp = stamp
            self.info_pub.publish(self.info)

    def _commands(self):
        if self.command is not None:
            self.publish_command(*self.command)

    def publish_command(self, v, w):
        msg = self.Twist()
        msg.linear.x, msg.angular.z = float(v), float(w)
        self.cmd_pub.publish(msg)

    def _on_cmd_vel(self, msg):
        self.received.append((time.monotonic(), msg.linear.x, msg.angular.z))

    def _on_state(self, msg):
        self.states.append(json.loads(msg.data))

    def spin(self, seconds):
        spin_until(self.executor, lambda: False, timeout=seconds, step=0.005)

    def wait_for(self, predicate, timeout=5.0):
        start = len(self.received)
        return spin_until(self.executor, lambda: any(predicate(v, w) for _, v, w in self.received[start:]), timeout=timeout, step=0.005)


SIM_PARAMS = {
    "camera_timeout_s": 0.0,
    "odom_timeout_s": 0.0,
    "depth_timeout_s": 0.5,
    "obstacle_stop_distance_m": 0.4,
    "max_linear_accel_mps2": 20.0,
    "max_angular_accel_radps2": 40.0,
}


def test_obstacle_stop_in_base_frame_publishes_the_blocked_state():
    """A wall 0.3 m ahead of the footprint's front, seen by the sim robot's camera (0.95 m high, pitched
    20 degrees down): its lower part is below the camera's view, and the old image-region percentile
    (a return closer than the stop distance *from the camera*) never fires because every return is
    > 0.8 m from the camera. The base-frame rule blocks forward motion, lets the robot turn, and says
    why on `vlm_agent/safety/state`."""
    from vlm_agent.safety.supervisor import SafetyConfig

    mount = SafetyConfig().camera_mount()  # the sim robot's camera (the parameter defaults)
    with ros_session() as (context, executor):
        gate = Gate(context, executor, "/gate_obstacle", SIM_PARAMS)
        sup = gate.supervisor
        gate.depth_m = render_wall_depth(None, mount)  # open floor: free
        gate.command = (0.3, 0.0)
        assert gate.wait_for(lambda v, w: v > 0.25)
        assert sup.supervisor.obstacle_stop is not None
        assert "base_link" in sup.status_extra()["obstacle.model"]
        blind = float(sup.status_extra()["obstacle.floor_blind_distance_m"])
        assert 0.3 < blind < 0.8  # the floor is hidden by the camera's pitch near the base
        wall_depth = render_wall_depth(0.20 + 0.30, mount)
        assert np.nanmin(wall_depth[np.isfinite(wall_depth)]) > 0.4  # every return farther than the stop distance
        gate.depth_m = wall_depth
        assert gate.wait_for(lambda v, w: v == 0.0, timeout=2.0)
        gate.spin(0.3)
        assert all(v == 0.0 for _, v, _ in gate.received[-4:])
        assert sup.status_extra()["state"] == "obstacle"
        assert spin_until(executor, lambda: gate.states and gate.states[-1]["blocked_forward"], timeout=2.0), gate.states[-3:]
        state = gate.states[-1]
        assert state["state"] == "obstacle" and state["blocked"] and "blocked by obstacle" in state["reason"], state
        assert state["distance_m"] == pytest.approx(0.28, abs=0.05)  # clearance from the padded footprint
        assert "blocked by obstacle" in sup.status_extra()["obstacle.last_reason"]
        gate.command = (0.0, 0.6)  # turning in place stays allowed
        assert gate.wait_for(lambda v, w: v == 0.0 and w > 0.55)
        gate.command = (0.0, 0.0)
        gate.spin(0.3)
        assert not gate.states[-1]["blocked"]


def test_accepted_command_is_forwarded_on_arrival():
    """With a 1 Hz output timer a command used to wait up to a whole period (0.5 s on average) for the
    next tick; on arrival it goes out at once (as Nav2's collision monitor gates)."""
    params = {
        "camera_timeout_s": 0.0, "odom_timeout_s": 0.0, "depth_timeout_s": 0.0, "obstacle_stop_distance_m": 0.0,
        "publish_rate_hz": 1.0, "command_timeout_s": 3.0, "max_linear_accel_mps2": 50.0, "max_angular_accel_radps2": 100.0,
    }
    with ros_session() as (context, executor):
        gate = Gate(context, executor, "/gate_arrival", params, camera_info=False)
        gate.spin(0.2)
        waits = []
        for i in range(5):
            target = 0.1 + 0.05 * i  # every command distinct, so its echo is recognisable
            t0 = time.monotonic()
            gate.publish_command(target, 0.0)
            assert gate.wait_for(lambda v, w, target=target: v == pytest.approx(target), timeout=3.0)
            first = next(t for t, v, _ in gate.received if t >= t0 and v == pytest.approx(target))
            waits.append(first - t0)
            gate.spin(0.05)
        # Five waits all under 0.2 s by chance with a 1 s tick: 0.2 ** 5 = 0.03 %.
        assert max(waits) < 0.2, waits


def test_estop_survives_a_supervisor_restart_with_a_latch_file(tmp_path):
    from std_srvs.srv import SetBool

    latch = str(tmp_path / "estop.json")
    params = {
        "camera_timeout_s": 0.0, "odom_timeout_s": 0.0, "depth_timeout_s": 0.0, "obstacle_stop_distance_m": 0.0,
        "estop_latch_file": latch,
    }
    with ros_session() as (context, executor):
        gate = Gate(context, executor, "/gate_estop1", params, camera_info=False)
        client = gate.node.create_client(SetBool, "vlm_agent/estop")
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(SetBool.Request(data=True))
        assert spin_until(executor, future.done, timeout=5.0) and future.result().success
    with ros_session() as (context, executor):  # the supervisor restarts
        gate = Gate(context, executor, "/gate_estop2", params, camera_info=False)
        assert gate.supervisor.supervisor.estop_active
        gate.command = (0.3, 0.0)
        gate.spin(0.8)
        assert gate.received and all(v == 0.0 for _, v, _ in gate.received)
        assert gate.supervisor.status_extra()["estop"] == "True"
        assert spin_until(executor, lambda: gate.states and gate.states[-1]["state"] == "estop", timeout=2.0)


def test_depth_that_does_not_match_its_camera_info_is_not_fresh_and_uncalibrated_info_is_no_model():
    """A depth image whose size differs from the depth CameraInfo cannot be back-projected: it must not
    keep the depth stream fresh (zero output). A CameraInfo with fx = 0 (uncalibrated) is no camera
    model: the image-region rule stays, and the reason is on /diagnostics."""
    from vlm_agent.safety.supervisor import SafetyConfig

    mount = SafetyConfig().camera_mount()
    with ros_session() as (context, executor):
        gate = Gate(context, executor, "/gate_mismatch", dict(SIM_PARAMS, depth_timeout_s=0.3))
        sup = gate.supervisor
        gate.depth_m = render_wall_depth(None, mount)
        gate.command = (0.3, 0.0)
        assert gate.wait_for(lambda v, w: v > 0.25)
        fx = gate.info.k[0]
        gate.info.width, gate.info.height = W * 2, H * 2  # the driver changed resolution, the image did not
        gate.info.k = [fx * 2, 0.0, W - 0.5, 0.0, fx * 2, H - 0.5, 0.0, 0.0, 1.0]
        assert gate.wait_for(lambda v, w: v == 0.0, timeout=2.0)
        gate.spin(0.3)
        assert all(v == 0.0 for _, v, _ in gate.received[-4:])
        assert "does not match" in sup.health.key_values().get("dropped.last_reason", ""), sup.health.key_values()
    with ros_session() as (context, executor):
        gate = Gate(context, executor, "/gate_uncalibrated", SIM_PARAMS)
        gate.info.k = [0.0] * 9
        gate.depth_m = np.full((H, W), 3.0, np.float32)
        gate.command = (0.3, 0.0)
        assert gate.wait_for(lambda v, w: v > 0.25)
        extra = gate.supervisor.status_extra()
        assert gate.supervisor.supervisor.obstacle_stop is None and "image region" in extra["obstacle.model"]
        assert "focal lengths" in extra["obstacle.camera_info_error"]


def test_a_blocked_forward_primitive_aborts_at_once_through_the_real_nodes():
    """supervisor + motion_executor + a kinematic base, a wall 0.3 m ahead: the forward primitive is
    aborted within a fraction of a second with the supervisor's reason (before: the executor pushed
    against the gate until its 4.5 s+ primitive timeout, and the planner asked for the same move)."""
    from std_msgs.msg import String

    from tests.helpers.kinematic_base import KinematicBase
    from vlm_agent.nodes.base import LATCHED_QOS
    from vlm_agent.nodes.motion_executor import STATE_QOS, MotionExecutorNode
    from vlm_agent.safety.supervisor import SafetyConfig

    ns = "/gate_wall"
    with ros_session() as (context, executor):
        gate = Gate(context, executor, ns, SIM_PARAMS)
        gate.depth_m = render_wall_depth(0.20 + 0.30, SafetyConfig().camera_mount())
        motion = MotionExecutorNode(context=context, namespace=ns)
        executor.add_node(motion)
        base = KinematicBase(gate.node, cmd_topic=f"{ns}/cmd_vel", odom_topic=f"{ns}/odom")
        states = []
        gate.node.create_subscription(String, f"{ns}/vlm_agent/executor/state", lambda m: states.append(json.loads(m.data)), STATE_QOS)
        plan_pub = gate.node.create_publisher(String, f"{ns}/vlm_agent/plan", LATCHED_QOS)
        assert wait_for_subscribers(plan_pub) and wait_for_subscribers(base.odom_pub)
        gate.spin(0.5)  # depth + camera model in
        plan = {"plan_id": 1, "instruction": "go", "step": 0, "raw_text": "move forward 25 cm",
                "primitives": [{"kind": "forward", "value": 25}], "latency_s": 0.0, "error": None}
        t0 = time.monotonic()
        plan_pub.publish(String(data=json.dumps(plan)))
        assert spin_until(executor, lambda: any(s["plan_id"] == 1 and s["state"] == "aborted" for s in states), timeout=5.0), states
        elapsed = time.monotonic() - t0
        final = next(s for s in states if s["plan_id"] == 1 and s["state"] == "aborted")
        assert "blocked by safety supervisor: blocked by obstacle" in final["reason"], final
        print(f"forward primitive aborted {elapsed * 1e3:.0f} ms after the plan")
        assert elapsed < 1.0, f"aborted after {elapsed:.2f} s"
        assert base.x < 0.01  # it never moved towards the wall
