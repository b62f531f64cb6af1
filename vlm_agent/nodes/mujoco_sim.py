"""mujoco_sim: the embedded MuJoCo simulator as a ROS 2 node (a drop-in for the robot's drivers).

Publishes (topic contract; relative names, so a namespace or `-r` remaps move them; sensor
publishers reliable per REP-2003): `camera/color/image_raw` (rgb8), `camera/color/camera_info`,
`camera/depth/image_rect_raw` (32FC1, metres, aligned to colour) and `camera/depth/camera_info`, `odom` (frame `odom`, child `base_link`),
`joint_states`, `map` (nav_msgs/OccupancyGrid of the room at each reset: walls, furniture and
the objects on the floor; latched; `publish_map`), and `/clock` (absolute, as every ROS clock source; stamps on every message are sim time,
so the safety supervisor, which judges freshness from stamps, must run with `use_sim_time`).
Subscribes: `cmd_vel` (Twist: linear.x m/s, angular.z rad/s; non-finite commands are dropped with
a logged reason; commands older than `cmd_vel_timeout_s` decay to zero), `arm_controller/joint_trajectory`
(JointTrajectory, interpolated over `time_from_start`), `gripper/command` (Float64, 0 open .. 1 closed).
Services: `~/reset` (`/mujoco_sim/reset` without a namespace; Trigger: load the episode chosen by
`suite`, `split`, `episode_seed`, `episode_index`; message = JSON with the episode and its
instruction), `~/result` (Trigger: message = JSON metrics of the current episode, scored as if the
robot stopped now). With `publish_instruction`, the instruction goes out on `vlm_agent/instruction`
(latched) after reset.
The simulation itself is `vlm_agent.sim.env.NavEnv` (plain Python).

Time: each tick advances the simulation by `1 / physics_rate_hz` of sim time and publishes `/clock`
first, then odometry, joints and (at `camera_rate_hz`) the camera. Every other node of the graph runs
with `use_sim_time: true` (this node is the clock source and stays on the wall clock itself), so
their timers, timeouts and profiles count simulated seconds.

* `real_time_factor > 0`: a wall-clock timer ticks at `physics_rate_hz * real_time_factor`.
* `real_time_factor = 0`: **as fast as the graph keeps up.** The tick timer has period 0: it runs once
  per turn of the executor, between the callbacks of whatever else is ready, so the sim never queues
  up more than a tick or two of sensor data ahead of the nodes that share its executor. While the
  robot is commanded to move (the last `cmd_vel` was not zero) the simulator runs in **lock-step with
  the controller**: at every `1 / lockstep_rate_hz` of sim time (the motion executor's control
  period) it pauses until a `cmd_vel` has arrived since the previous such boundary, i.e. until the
  control loop has answered the odometry of that period; after `lockstep_timeout_s` of wall time
  without one it goes on (a dead or absent controller cannot freeze the world; the count is on
  /diagnostics). While the robot rests, nothing depends on reaction time and the sim runs freely.
  Safety semantics hold because every timeout in the graph is in sim time (the supervisor's command
  and sensor watchdogs, the executor's profile, timeouts and odometry age), while the steady-clock
  watchdogs of the supervisor and the executor catch a `/clock` that stops.
The achieved factor (sim seconds per wall second over the last diagnostics period) is on /diagnostics.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

from geometry_msgs.msg import Twist
from nav_msgs.msg import OccupancyGrid, Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from vlm_agent.config import ConfigBase, param
from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_PUB_QOS, AgentNode, run_node
from vlm_agent.sensors.frames import seconds_to_stamp

NODE_CLASS = "MujocoSimNode"


@dataclass
class MujocoSimConfig(ConfigBase):
    """Episode choice, camera, rates and limits of the simulator node."""

    suite: str = param("nav", "episode suite loaded by reset", choices=("nav", "manip", "seg"))
    split: str = param("val", "episode split", choices=("train", "val", "test"))
    episode_seed: int = param(0, "seed of the episode list", min=0)
    episode_index: int = param(0, "index of the episode in that list", min=0, max=100000)
    width: int = param(320, "camera width (px)", min=16, max=1280, read_only=True)
    height: int = param(240, "camera height (px)", min=16, max=960, read_only=True)
    vertical_fov_deg: float = param(60.0, "camera vertical field of view (deg)", min=20.0, max=120.0, read_only=True)
    shadows: bool = param(False, "render shadows (slow in software GL)", read_only=True)
    physics_rate_hz: float = param(50.0, "simulation tick rate in sim time (odom, joint_states, clock)", min=5.0, max=1000.0)
    camera_rate_hz: float = param(10.0, "camera publish rate in sim time", min=0.5, max=60.0)
    real_time_factor: float = param(
        1.0, "sim seconds per wall second; 0 = as fast as the graph keeps up (lock-step with cmd_vel while moving)", min=0.0, max=20.0
    )
    lockstep_rate_hz: float = param(
        20.0, "real_time_factor 0, robot moving: pause every 1/rate s of sim time until a cmd_vel arrived (the controller's rate)",
        min=1.0, max=1000.0,
    )
    lockstep_timeout_s: float = param(
        0.2, "real_time_factor 0: go on after this much wall time without that cmd_vel (dead or absent controller)", min=0.001, max=10.0
    )
    cmd_vel_timeout_s: float = param(0.5, "a /cmd_vel older than this (sim time) is treated as zero", min=0.05, max=10.0)
    max_linear_mps: float = param(1.0, "base speed limit (m/s); larger commands are clipped", min=0.0, max=5.0)
    max_angular_radps: float = param(2.0, "base turn-rate limit (rad/s)", min=0.0, max=10.0)
    publish_instruction: bool = param(True, "publish the episode instruction on vlm_agent/instruction after reset")
    publish_map: bool = param(True, "publish the room's map on map after reset (OccupancyGrid, latched: walls, furniture and "
                                    "the objects on the floor), as map_server would on a robot")
    map_resolution_m: float = param(0.05, "cell size of the published map (m)", min=0.01, max=1.0, read_only=True)
    reset_on_start: bool = param(True, "load the configured episode at start-up")
    odom_frame: str = param("odom", "odometry frame", read_only=True)
    base_frame: str = param("base_link", "robot base frame", read_only=True)
    camera_frame: str = param("camera_color_optical_frame", "camera optical frame", read_only=True)

    def __post_init__(self):
        super().__post_init__()
        if 0.0 < self.real_time_factor < 0.05:
            raise ValueError(f"MujocoSimConfig.real_time_factor: {self.real_time_factor} must be 0 (as fast as possible) or at least 0.05")

    def tick_period_s(self) -> float:
        """Wall-clock period of the tick timer (0 = once per executor turn)."""
        return 0.0 if self.real_time_factor == 0.0 else 1.0 / (self.physics_rate_hz * self.real_time_factor)


class MujocoSimNode(AgentNode):
    def __init__(self, **kwargs):
        super().__init__("mujoco_sim", MujocoSimConfig, **kwargs)
        if self.get_parameter("use_sim_time").value:
            # This node is the clock source: on sim time its own timers would wait for itself.
            from rclpy.parameter import Parameter

            self.get_logger().warning("mujoco_sim publishes /clock; ignoring use_sim_time:=true for itself")
            self.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, False)])
        from vlm_agent.sim.env import NavEnv, SimConfig  # heavy (MuJoCo, GL) and ROS-free

        c = self.config
        self.env = NavEnv(SimConfig(width=c.width, height=c.height, vertical_fov_deg=c.vertical_fov_deg, shadows=c.shadows))
        self.sim_time = 0.0
        self._cmd = (0.0, 0.0)
        self._cmd_stamp = -math.inf
        self._trajectory = None  # (start sim time, [(t, positions)])
        self._next_camera = 0.0
        # Lock-step (real_time_factor 0): cmd_vel count, the count at the last boundary passed, and
        # since when (steady) the tick timer has been paused waiting for the controller.
        self._cmd_count = 0
        self._boundary_count = 0
        self._boundary = 0
        self._paused_since: float | None = None
        self._lockstep = {"pauses": 0, "timeouts": 0}
        self._rtf_window = (time.monotonic(), 0.0)
        self._rtf_achieved = float("nan")
        self.pub_rgb = self.create_publisher(Image, "camera/color/image_raw", SENSOR_PUB_QOS)
        self.pub_info = self.create_publisher(CameraInfo, "camera/color/camera_info", SENSOR_PUB_QOS)
        self.pub_depth = self.create_publisher(Image, "camera/depth/image_rect_raw", SENSOR_PUB_QOS)
        # Depth is rendered aligned to colour: the same intrinsics (the safety supervisor's obstacle model reads it).
        self.pub_depth_info = self.create_publisher(CameraInfo, "camera/depth/camera_info", SENSOR_PUB_QOS)
        self.pub_odom = self.create_publisher(Odometry, "odom", SENSOR_PUB_QOS)
        self.pub_joints = self.create_publisher(JointState, "joint_states", SENSOR_PUB_QOS)
        self.pub_clock = self.create_publisher(Clock, "/clock", 10)
        self.pub_instruction = self.create_publisher(String, "vlm_agent/instruction", LATCHED_QOS)
        self.pub_map = self.create_publisher(OccupancyGrid, "map", LATCHED_QOS)
        self.create_subscription(Twist, "cmd_vel", self._on_cmd_vel, COMMAND_QOS)
        self.create_subscription(JointTrajectory, "arm_controller/joint_trajectory", self._on_trajectory, COMMAND_QOS)
        self.create_subscription(Float64, "gripper/command", self._on_gripper, COMMAND_QOS)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/result", self._on_result)
        if c.reset_on_start:
            self.reset_episode()
        self._timer = self.create_timer(c.tick_period_s(), self._tick)
        self._lockstep_watchdog = self.create_steady_timer(c.lockstep_timeout_s / 4.0, self._check_lockstep)

    def on_config_changed(self, old, new) -> None:
        # Rates apply immediately; the episode choice applies at the next /mujoco_sim/reset.
        if (old.physics_rate_hz, old.real_time_factor) != (new.physics_rate_hz, new.real_time_factor):
            self.destroy_timer(self._timer)
            self._timer = self.create_timer(new.tick_period_s(), self._tick)
            self._paused_since = None
        if old.lockstep_timeout_s != new.lockstep_timeout_s:
            self.destroy_timer(self._lockstep_watchdog)
            self._lockstep_watchdog = self.create_steady_timer(new.lockstep_timeout_s / 4.0, self._check_lockstep)

    # -- episodes -------------------------------------------------------------------------------
    def reset_episode(self) -> dict:
        from vlm_agent.sim.episodes import make_episode

        c = self.config
        episode = make_episode(c.suite, c.split, c.episode_seed, c.episode_index)
        self.env.reset(episode)
        self._cmd, self._cmd_stamp, self._trajectory = (0.0, 0.0), -math.inf, None
        self._next_camera = self.sim_time
        info = {
            "sim_time": self.sim_time,
            "episode_id": episode.episode_id,
            "suite": episode.suite,
            "split": episode.split,
            "task": episode.task,
            "instruction": episode.instruction,
            "start_pose": list(episode.start_pose),
            "episode": episode.to_dict(),
        }
        if c.publish_map:
            self.pub_map.publish(self._map_message())
        if c.publish_instruction:
            self.pub_instruction.publish(String(data=episode.instruction))
        self.health.set("episode", episode.episode_id)
        self.get_logger().info(f"episode {episode.episode_id}: {episode.instruction}")
        return info

    def _map_message(self) -> OccupancyGrid:
        """The episode's map as the room is at the reset (`sim.geometry.static_occupancy`: walls,
        furniture, objects on the floor), 100 = occupied, 0 = free, in `odom` (the simulator's
        odometry frame is its world frame)."""
        from vlm_agent.sim.geometry import static_occupancy

        occupied, origin = static_occupancy(self.env.world, self.config.map_resolution_m)
        msg = OccupancyGrid()
        msg.header.stamp = seconds_to_stamp(self.sim_time)
        msg.header.frame_id = self.config.odom_frame
        msg.info.map_load_time = msg.header.stamp
        msg.info.resolution = float(self.config.map_resolution_m)
        msg.info.height, msg.info.width = (int(v) for v in occupied.shape)
        msg.info.origin.position.x, msg.info.origin.position.y = (float(v) for v in origin)
        msg.info.origin.orientation.w = 1.0
        msg.data = (occupied.astype("int8") * 100).ravel().tolist()
        return msg

    def _on_reset(self, request, response):
        try:
            response.message = json.dumps(self.reset_episode())
            response.success = True
        except Exception as exc:  # noqa: BLE001 (a bad episode choice must not kill the simulator)
            response.success, response.message = False, f"reset failed: {exc}"
            self.get_logger().error(response.message)
        return response

    def _on_result(self, request, response):
        if self.env.episode is None:
            response.success, response.message = False, "no episode loaded; call /mujoco_sim/reset"
            return response
        if self.env.episode.suite == "nav":
            metrics = self.env.metrics(assume_stopped=True)
        elif self.env.episode.suite == "manip":
            metrics = self.env.manip_metrics()
        else:
            metrics = {}
        metrics.update(episode_id=self.env.episode.episode_id, pose=list(self.env.pose), sim_time=self.sim_time)
        response.success, response.message = True, json.dumps(metrics)
        return response

    # -- inputs ---------------------------------------------------------------------------------
    def _on_cmd_vel(self, msg: Twist) -> None:
        v, w = msg.linear.x, msg.angular.z
        others = (msg.linear.y, msg.linear.z, msg.angular.x, msg.angular.y)
        if not all(math.isfinite(x) for x in (v, w) + others):
            self.health.drop("non_finite_cmd_vel", f"v={v} w={w}")
            self.get_logger().warning(f"dropping cmd_vel with non-finite values (v={v}, w={w}); keeping the previous command")
            return
        c = self.config
        self._cmd = (max(-c.max_linear_mps, min(c.max_linear_mps, v)), max(-c.max_angular_radps, min(c.max_angular_radps, w)))
        self._cmd_stamp = self.sim_time
        self._cmd_count += 1
        self.health.tick("cmd_vel")
        if self._paused_since is not None:
            self._resume()  # the controller answered: step on

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        from vlm_agent.sim.env import ARM_JOINTS

        names = list(msg.joint_names)
        if not msg.points or not set(names) >= set(ARM_JOINTS):
            self.health.drop("bad_trajectory", f"joints {names}, {len(msg.points)} points")
            self.get_logger().warning(f"dropping trajectory: need points for {ARM_JOINTS}, got joints {names} and {len(msg.points)} points")
            return
        idx = [names.index(j) for j in ARM_JOINTS]
        points = []
        for p in msg.points:
            pos = [float(p.positions[i]) if i < len(p.positions) else math.nan for i in idx]
            t = p.time_from_start.sec + p.time_from_start.nanosec * 1e-9
            if not all(math.isfinite(x) for x in pos + [t]):
                self.health.drop("bad_trajectory", "non-finite positions or times")
                self.get_logger().warning("dropping trajectory with non-finite positions or times")
                return
            points.append((t, pos))
        points.sort(key=lambda tp: tp[0])
        start_pos = [float(x) for x in self.env.arm_targets()]
        self._trajectory = (self.sim_time, [(0.0, start_pos)] + points)

    def _on_gripper(self, msg: Float64) -> None:
        if not math.isfinite(msg.data):
            self.health.drop("non_finite_gripper", str(msg.data))
            self.get_logger().warning(f"dropping /gripper/command {msg.data}")
            return
        if self.env.episode is not None:
            self.env.set_gripper(min(1.0, max(0.0, msg.data)))

    # -- lock-step (real_time_factor 0) ---------------------------------------------------------
    def _at_boundary(self) -> bool:
        """After a tick: True when it crossed a lock-step boundary while the robot is commanded to move
        and no cmd_vel arrived since the previous boundary (then the tick timer pauses)."""
        c = self.config
        boundary = math.floor(self.sim_time * c.lockstep_rate_hz + 1e-9)
        if c.real_time_factor != 0.0 or boundary == self._boundary:
            return False
        self._boundary = boundary
        answered = self._cmd_count > self._boundary_count
        self._boundary_count = self._cmd_count
        return self._cmd != (0.0, 0.0) and not answered

    def _pause(self) -> None:
        self._paused_since = time.monotonic()
        self._lockstep["pauses"] += 1
        self._timer.cancel()

    def _resume(self) -> None:
        self._paused_since = None
        self._boundary_count = self._cmd_count
        self._timer.reset()

    def _check_lockstep(self) -> None:
        """Steady clock: a pause ends after lockstep_timeout_s even without a cmd_vel."""
        if self._paused_since is not None and time.monotonic() - self._paused_since > self.config.lockstep_timeout_s:
            self._lockstep["timeouts"] += 1
            self._resume()

    # -- simulation loop -------------------------------------------------------------------------
    def _tick(self) -> None:
        if self.env.episode is None or self._paused_since is not None:
            return
        t0 = time.perf_counter()
        c = self.config
        dt = 1.0 / c.physics_rate_hz
        if self.sim_time - self._cmd_stamp > c.cmd_vel_timeout_s:
            self._cmd = (0.0, 0.0)
        v, w = self._cmd
        if v or w:
            self.env.step_velocity(v, w, dt)
        self._follow_trajectory()
        self.env.step_physics(dt)
        self.sim_time += dt
        stamp = self._stamp()
        self.pub_clock.publish(Clock(clock=stamp))
        self._publish_odom(stamp, v, w)
        self._publish_joints(stamp)
        if self.sim_time + 1e-9 >= self._next_camera:
            self._next_camera += 1.0 / c.camera_rate_hz
            self._publish_camera(stamp)
        self.health.latency("tick", time.perf_counter() - t0)
        self.health.tick("tick")
        if self._at_boundary():
            self._pause()

    def _follow_trajectory(self):
        if self._trajectory is None:
            return
        start, points = self._trajectory
        t = self.sim_time - start
        if t >= points[-1][0]:
            self.env.set_arm_targets(points[-1][1])
            self._trajectory = None
            return
        for (t0, p0), (t1, p1) in zip(points, points[1:]):
            if t0 <= t <= t1:
                a = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                self.env.set_arm_targets([x0 + a * (x1 - x0) for x0, x1 in zip(p0, p1)])
                return

    def _stamp(self):
        return seconds_to_stamp(self.sim_time)

    def _publish_odom(self, stamp, v, w):
        x, y, yaw = self.env.pose
        msg = Odometry()
        msg.header.stamp = stamp
        msg.header.frame_id = self.config.odom_frame
        msg.child_frame_id = self.config.base_frame
        msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
        msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        msg.twist.twist.linear.x, msg.twist.twist.angular.z = v, w
        # exact kinematic odometry: small, non-zero covariances keep fusion filters well conditioned
        msg.pose.covariance[0] = msg.pose.covariance[7] = 1e-4
        msg.pose.covariance[35] = 1e-4
        msg.twist.covariance[0] = msg.twist.covariance[35] = 1e-4
        self.pub_odom.publish(msg)

    def _publish_joints(self, stamp):
        names, pos, vel = self.env.joint_state()
        msg = JointState()
        msg.header.stamp = stamp
        msg.name = list(names)
        msg.position = [float(p) for p in pos]
        msg.velocity = [float(v) for v in vel]
        self.pub_joints.publish(msg)

    def _publish_camera(self, stamp):
        from vlm_agent.sensors.camera_info import intrinsics_to_camera_info
        from vlm_agent.sensors.image_conversion import numpy_to_image

        t0 = time.perf_counter()
        rgb, depth = self.env.render()
        frame = self.config.camera_frame
        img = numpy_to_image(rgb, "rgb8")
        img.header.stamp, img.header.frame_id = stamp, frame
        self.pub_rgb.publish(img)
        d = numpy_to_image(depth, "32FC1")
        d.header.stamp, d.header.frame_id = stamp, frame
        self.pub_depth.publish(d)
        info = intrinsics_to_camera_info(self.env.camera_intrinsics(), stamp=stamp)
        info.header.frame_id = frame
        self.pub_info.publish(info)
        self.pub_depth_info.publish(info)
        self.health.latency("render", time.perf_counter() - t0)
        self.health.tick("camera")

    def status_extra(self) -> dict[str, str]:
        wall0, sim0 = self._rtf_window
        wall = time.monotonic()
        if wall - wall0 > 0.5:
            self._rtf_achieved = (self.sim_time - sim0) / (wall - wall0)
            self._rtf_window = (wall, self.sim_time)
        return {
            "sim_time_s": f"{self.sim_time:.2f}",
            "pose": "%.2f %.2f %.2f" % self.env.pose if self.env.episode else "",
            "real_time_factor": "max (lock-step)" if self.config.real_time_factor == 0.0 else f"{self.config.real_time_factor:g}",
            "real_time_factor_achieved": f"{self._rtf_achieved:.2f}",
            "lockstep_pauses": str(self._lockstep["pauses"]),
            "lockstep_timeouts": str(self._lockstep["timeouts"]),
        }

    def destroy_node(self):
        self.env.close()
        return super().destroy_node()


def main(args=None):
    return run_node(MujocoSimNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
