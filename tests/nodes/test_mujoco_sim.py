"""mujoco_sim in a second process: /cmd_vel moves /odom and changes the images; NaN is dropped;
reset/result services answer with JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.ros_harness import NodeProcess, spin_until, wait_for_publishers, wait_for_subscribers

pytestmark = pytest.mark.ros


def _episode_with_free_path(min_free_m: float = 1.5):
    """(seed, index) of a val nav episode whose start has `min_free_m` of free floor straight ahead."""
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.sim.geometry import CollisionModel

    for index in range(50):
        ep = make_episode("nav", "val", 0, index)
        x, y, yaw = ep.start_pose
        _, _, travelled, blocked = CollisionModel.from_world(ep.world()).sweep(x, y, yaw, min_free_m)
        if not blocked:
            return index
    raise AssertionError("no episode with a free path ahead")


def _yaw(q):
    return math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))


def test_cmd_vel_drives_odom_and_images(ros_node, ros_executor):
    from geometry_msgs.msg import Twist
    from nav_msgs.msg import OccupancyGrid, Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image, JointState
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
    from vlm_agent.sensors.image_conversion import depth_to_metres, image_to_rgb8

    index = _episode_with_free_path()
    got = {"odom": [], "rgb": [], "depth": [], "info": [], "joints": [], "clock": [], "instruction": []}
    ros_node.create_subscription(Odometry, "/odom", got["odom"].append, SENSOR_QOS)
    rgb_sub = ros_node.create_subscription(Image, "/camera/color/image_raw", lambda m: got["rgb"].append(image_to_rgb8(m)), SENSOR_QOS)
    ros_node.create_subscription(Image, "/camera/depth/image_rect_raw", lambda m: got["depth"].append(depth_to_metres(m)), SENSOR_QOS)
    ros_node.create_subscription(CameraInfo, "/camera/color/camera_info", got["info"].append, SENSOR_QOS)
    ros_node.create_subscription(JointState, "/joint_states", got["joints"].append, SENSOR_QOS)
    ros_node.create_subscription(Clock, "/clock", got["clock"].append, 10)
    ros_node.create_subscription(String, "/vlm_agent/instruction", lambda m: got["instruction"].append(m.data), LATCHED_QOS)
    maps = []
    ros_node.create_subscription(OccupancyGrid, "/map", maps.append, LATCHED_QOS)
    cmd = ros_node.create_publisher(Twist, "/cmd_vel", COMMAND_QOS)
    result_client = ros_node.create_client(Trigger, "/mujoco_sim/result")
    reset_client = ros_node.create_client(Trigger, "/mujoco_sim/reset")

    params = ["-p", "width:=64", "-p", "height:=48", "-p", "camera_rate_hz:=10.0", "-p", f"episode_index:={index}",
              "-p", "real_time_factor:=2.0"]
    with NodeProcess("vlm_agent.nodes.mujoco_sim", ros_args=params) as sim:
        assert wait_for_publishers(rgb_sub, 1, timeout=30), "simulator did not come up"
        assert wait_for_subscribers(cmd, 1)
        assert spin_until(ros_executor, lambda: len(got["rgb"]) >= 2 and got["odom"] and got["instruction"] and got["info"], timeout=20), sim.output
        first_rgb, odom0 = got["rgb"][-1].copy(), got["odom"][-1]
        assert first_rgb.shape == (48, 64, 3)
        assert got["depth"][-1].shape == (48, 64) and np.nanmin(got["depth"][-1]) > 0
        assert odom0.header.frame_id == "odom" and odom0.child_frame_id == "base_link"
        assert got["info"][-1].header.frame_id == "camera_color_optical_frame" and got["info"][-1].k[0] > 0
        assert set(got["joints"][-1].name) >= {"arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist"}
        x0, y0, yaw0 = odom0.pose.pose.position.x, odom0.pose.pose.position.y, _yaw(odom0.pose.pose.orientation)
        # the room's map (walls and furniture, latched): the start cell is free, the walls are occupied
        assert spin_until(ros_executor, lambda: maps, timeout=10), sim.output
        from vlm_agent.skills.grid_navigator import OccupancyMap

        info = maps[-1].info
        assert maps[-1].header.frame_id == "odom" and info.resolution == pytest.approx(0.05)
        grid = OccupancyMap.from_message_fields(maps[-1].data, info.width, info.height, info.resolution, info.origin.position.x,
                                                info.origin.position.y)
        assert not grid.occupied[grid.cell(x0, y0)] and grid.occupied[:, 0].mean() > 0.9  # free start, the outer wall

        # a NaN command is dropped (logged), the robot does not move
        cmd.publish(Twist())
        bad = Twist()
        bad.linear.x = float("nan")
        cmd.publish(bad)
        n = len(got["odom"])
        spin_until(ros_executor, lambda: len(got["odom"]) > n + 20, timeout=10)
        p = got["odom"][-1].pose.pose.position
        assert math.hypot(p.x - x0, p.y - y0) < 1e-9 and sim.alive()

        # drive forward 0.5 m/s for ~1 s of sim time: odom advances along the start heading
        fwd = Twist()
        fwd.linear.x = 0.5
        t_start = got["clock"][-1].clock.sec + got["clock"][-1].clock.nanosec * 1e-9

        def sim_t():
            c = got["clock"][-1].clock
            return c.sec + c.nanosec * 1e-9

        while sim_t() - t_start < 1.0:
            cmd.publish(fwd)
            spin_until(ros_executor, lambda: False, timeout=0.05)
        cmd.publish(Twist())
        spin_until(ros_executor, lambda: False, timeout=0.5)
        p = got["odom"][-1].pose.pose.position
        dx, dy = p.x - x0, p.y - y0
        travelled = math.hypot(dx, dy)
        assert 0.35 < travelled < 1.0, travelled
        assert abs(math.remainder(math.atan2(dy, dx) - yaw0, 2 * math.pi)) < 0.05
        n_rgb = len(got["rgb"])
        assert spin_until(ros_executor, lambda: len(got["rgb"]) > n_rgb, timeout=5)
        assert np.abs(got["rgb"][-1].astype(int) - first_rgb.astype(int)).mean() > 1.0, "image did not change after moving"

        # turn in place: yaw changes, position does not
        turn = Twist()
        turn.angular.z = 1.0
        t_start = sim_t()
        p_before = got["odom"][-1].pose.pose.position
        while sim_t() - t_start < 0.5:
            cmd.publish(turn)
            spin_until(ros_executor, lambda: False, timeout=0.05)
        cmd.publish(Twist())
        spin_until(ros_executor, lambda: False, timeout=0.5)
        o = got["odom"][-1].pose.pose
        assert math.hypot(o.position.x - p_before.x, o.position.y - p_before.y) < 1e-6
        assert abs(math.remainder(_yaw(o.orientation) - math.atan2(dy, dx), 2 * math.pi)) > 0.3

        # arm: a trajectory is followed (joint_states approach the targets); a NaN one is dropped
        from builtin_interfaces.msg import Duration
        from std_msgs.msg import Float64
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        arm = ros_node.create_publisher(JointTrajectory, "/arm_controller/joint_trajectory", COMMAND_QOS)
        grip = ros_node.create_publisher(Float64, "/gripper/command", COMMAND_QOS)
        assert wait_for_subscribers(arm, 1) and wait_for_subscribers(grip, 1)
        target = [0.3, 0.8, -1.6, -0.5]
        traj = JointTrajectory(joint_names=["arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist"])
        traj.points = [JointTrajectoryPoint(positions=target, time_from_start=Duration(sec=0, nanosec=500_000_000))]
        arm.publish(traj)
        grip.publish(Float64(data=1.0))
        bad = JointTrajectory(joint_names=traj.joint_names)
        bad.points = [JointTrajectoryPoint(positions=[float("nan")] * 4, time_from_start=Duration(sec=1))]
        arm.publish(bad)

        def joints_at_target():
            js = got["joints"][-1]
            pos = dict(zip(js.name, js.position))
            return all(abs(pos[n] - t) < 0.05 for n, t in zip(traj.joint_names, target)) and pos["gripper_left"] < 0.01

        assert spin_until(ros_executor, joints_at_target, timeout=15), dict(zip(got["joints"][-1].name, got["joints"][-1].position))

        assert result_client.wait_for_service(timeout_sec=10)
        future = result_client.call_async(Trigger.Request())
        assert spin_until(ros_executor, future.done, timeout=10)
        metrics = json.loads(future.result().message)
        assert metrics["trajectory_length"] == pytest.approx(travelled, abs=0.05)
        future = reset_client.call_async(Trigger.Request())
        assert spin_until(ros_executor, future.done, timeout=10)
        info = json.loads(future.result().message)
        assert info["instruction"] == got["instruction"][0]
    assert sim.returncode == 0, sim.output
    assert "non-finite" in sim.output and "dropping trajectory" in sim.output
