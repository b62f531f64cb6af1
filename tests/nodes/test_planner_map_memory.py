"""navid_planner with a map-memory NaVid model over real rclpy: colour + depth (32FC1) + depth
camera_info + odometry in, plans out.

A tiny untrained map model (saved to a temporary directory, loaded by the node from `model_dir`):
the node pairs each frame with its depth image and pose, the planner's map grows, plans are made
(constrained decoding: always grammatical). Faults: depth stops -> a stop plan saying so;
non-finite odometry -> a stop plan naming it. The test plays the executor (reports `done`, moves
the odometry pose on).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.ros_harness import ros_session, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros

SIZE = 16


@pytest.fixture(scope="module")
def map_model_dir(tmp_path_factory):
    from tests.helpers.tiny_navid import save_untrained_navid
    from vlm_agent.actions import ACTIONS

    return save_untrained_navid(tmp_path_factory.mktemp("navid_map"), seed=0, image_size=SIZE, patch_size=4, vision_stem="film_cnn",
                                cnn_channels=[8], current_grid_size=4, max_history_frames=4, recent_history_frames=2, map_cells=8,
                                map_grid_size=2, ego_map={"cells": 8, "resolution_m": 0.25}, aux_action_classes=len(ACTIONS))


class Rig:
    def __init__(self, context, executor, model_dir):
        from nav_msgs.msg import Odometry
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS, bring_up
        from vlm_agent.nodes.navid_planner import NavidPlannerNode
        from vlm_agent.sensors.camera_info import intrinsics_to_camera_info
        from vlm_agent.sensors.camera_model import CameraIntrinsics
        from vlm_agent.sensors.image_conversion import numpy_to_image

        self.executor = executor
        self.planner_node = NavidPlannerNode(context=context, namespace="/mapmem", parameter_overrides=[
            Parameter("model_dir", value=model_dir), Parameter("num_threads", value=1), Parameter("history_period_s", value=0.1),
            Parameter("model_timeout_s", value=20.0), Parameter("max_steps", value=3),
            Parameter("camera_height_m", value=0.5), Parameter("camera_pitch_rad", value=0.0),
            Parameter("blocked_frame_delta", value=0.0),  # one still image: every forward step would read as blocked
        ])
        assert bring_up(self.planner_node)
        assert self.planner_node._planner.needs_depth
        self.node = Node("map_memory_test_helper", context=context)
        for n in (self.planner_node, self.node):
            executor.add_node(n)
        self.String, self.Odometry = String, Odometry
        self.plans: list[dict] = []
        self.pose = [0.0, 0.0, 0.0]
        self.odom_override = None
        self.depth_on = True
        self.intrinsics = CameraIntrinsics(SIZE, SIZE, 12.0, 12.0, 7.5, 7.5, frame_id="camera_color_optical_frame")
        self.info = intrinsics_to_camera_info(self.intrinsics)
        self.frame = numpy_to_image(np.full((SIZE, SIZE, 3), 90, np.uint8), "rgb8")
        self.depth = numpy_to_image(np.full((SIZE, SIZE), 1.5, np.float32), "32FC1")
        self.camera_pub = self.node.create_publisher(Image, "/mapmem/camera/color/image_raw", SENSOR_QOS)
        self.depth_pub = self.node.create_publisher(Image, "/mapmem/camera/depth/image_rect_raw", SENSOR_QOS)
        self.info_pub = self.node.create_publisher(CameraInfo, "/mapmem/camera/depth/camera_info", SENSOR_QOS)
        self.odom_pub = self.node.create_publisher(Odometry, "/mapmem/odom", SENSOR_QOS)
        self.instr_pub = self.node.create_publisher(String, "/mapmem/vlm_agent/instruction", COMMAND_QOS)
        self.state_pub = self.node.create_publisher(String, "/mapmem/vlm_agent/executor/state", LATCHED_QOS)
        self.plan_sub = self.node.create_subscription(String, "/mapmem/vlm_agent/plan", self._on_plan, LATCHED_QOS)
        self.node.create_timer(1.0 / 15.0, self._camera)
        self.node.create_timer(1.0 / 50.0, self._odom)
        for pub in (self.camera_pub, self.depth_pub, self.info_pub, self.odom_pub, self.instr_pub, self.state_pub):
            assert wait_for_subscribers(pub)
        assert wait_for_publishers(self.plan_sub)

    def _camera(self):
        stamp = self.node.get_clock().now().to_msg()
        self.frame.header.stamp = stamp
        self.camera_pub.publish(self.frame)
        if self.depth_on:  # after colour, as the simulator publishes them
            self.depth.header.stamp = self.info.header.stamp = stamp
            self.depth_pub.publish(self.depth)
            self.info_pub.publish(self.info)

    def _odom(self):
        x, y, yaw = self.odom_override or self.pose
        msg = self.Odometry()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id, msg.child_frame_id = "odom", "base_link"
        msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2.0), math.cos(yaw / 2.0)
        self.odom_pub.publish(msg)

    def _on_plan(self, msg):
        plan = json.loads(msg.data)
        self.plans.append(plan)
        if plan["error"] is None and plan["primitives"][0]["kind"] != "stop":
            # The executor: the robot moves 25 cm ahead, then reports the plan done.
            def done():
                timer.cancel()
                self.pose[0] += 0.25
                self.state_pub.publish(self.String(data=json.dumps({"plan_id": plan["plan_id"], "state": "done", "reason": ""})))

            timer = self.node.create_timer(0.3, done)

    def instruct(self, text):
        self.plans.clear()
        self.instr_pub.publish(self.String(data=text))

    def wait_plan(self, predicate, timeout=20.0):
        ok = spin_until(self.executor, lambda: any(predicate(p) for p in self.plans), timeout=timeout, step=0.01)
        assert ok, self.plans[-3:]
        return next(p for p in self.plans if predicate(p))


@pytest.fixture(scope="module")
def rig(map_model_dir):
    with ros_session() as (context, executor):
        yield Rig(context, executor, map_model_dir)


def _is_stop(plan):
    return [p["kind"] for p in plan["primitives"]] == ["stop"]


def test_plans_from_colour_depth_and_pose_and_the_map_grows(rig):
    rig.instruct("go to the red ball")
    rig.wait_plan(lambda p: p["step"] >= 1 and p["error"] is None, timeout=40)
    node, planner = rig.planner_node, rig.planner_node._planner
    good = [p for p in rig.plans if p["error"] is None]
    assert good and all(p["primitives"] for p in good), rig.plans
    assert planner.ego_map is not None and planner.ego_map.updates >= 2  # current and history frames went into the map
    assert planner.ego_map.intrinsics == rig.intrinsics  # from camera/depth/camera_info, not the FOV default
    assert planner.ego_map.config.camera_height_m == 0.5 and planner.ego_map.config.camera_pitch_rad == 0.0
    assert planner.ego_map.grid.any()
    status = node.status_extra()
    assert status["map_memory"].endswith("updates") and status["depth_intrinsics"] == "camera_info"
    assert "dropped.no_depth_or_pose" not in node.health.key_values()


def test_no_depth_gives_a_stop_plan_that_says_so(rig):
    rig.depth_on = False
    try:
        spin_until(rig.executor, lambda: False, timeout=0.3)
        rig.instruct("go to the blue box")
        plan = rig.wait_plan(lambda p: p["instruction"] == "go to the blue box")
        assert _is_stop(plan) and "no depth image within 0.05 s" in plan["error"], plan
        assert int(rig.planner_node.health.key_values()["dropped.no_depth_or_pose"]) >= 1
    finally:
        rig.depth_on = True


def test_non_finite_odometry_gives_a_stop_plan_never_motion(rig):
    rig.odom_override = (math.nan, 0.0, 0.0)
    try:
        spin_until(rig.executor, lambda: False, timeout=0.3)  # the last good pose is older than pose_max_dt_s
        rig.instruct("go to the green chair")
        plan = rig.wait_plan(lambda p: p["instruction"] == "go to the green chair")
        assert _is_stop(plan) and "no odometry pose" in plan["error"] and "NaN" in plan["error"], plan
        assert int(rig.planner_node.health.key_values()["dropped.odom"]) >= 1
    finally:
        rig.odom_override = None
    rig.instruct("go to the red ball")  # a good pose again: plans again
    assert rig.wait_plan(lambda p: p["instruction"] == "go to the red ball")["error"] is None
