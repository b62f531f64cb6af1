"""The skill API on a ROS robot: `RosSkills`, a `SkillAPI` that acts only through topics.

Navigation goes through the motion executor: a skill publishes plans (`PlanMessage` JSON on
`vlm_agent/plan`, `raw_text` naming the skill call) and follows `vlm_agent/executor/state` until
each is done or aborted, reads the new pose on `odom` and plans again (a `Navigator` from
`skills/approach.py`; with `navigation: map` a `skills/grid_navigator.GridNavigator` on the `map`
topic's OccupancyGrid, around walls and furniture; or the simulator's privileged one). With `navigation: nav2` the far part is a
Nav2 goal on `goal_pose` (Nav2's velocity output reaches `cmd_vel` through the safety supervisor,
see `composition.nav2_gate_remaps`), the final approach again through the executor. The arm moves
with `trajectory_msgs/JointTrajectory` on `arm_controller/joint_trajectory` (cosine-profiled
points, `ARM_JOINTS`), the gripper with `std_msgs/Float64` on `gripper/command` (0 open .. 1
closed); both are judged from `joint_states` (stamps and positions): an arm move is over when the
joints have reached the target after its duration plus a settle time on the robot's clock (the
stamps: sim time in the simulator), and a closed gripper holds something when its fingers stop
more than `gripper_held_min_m` apart. Nothing here publishes `cmd_vel`: the executor's output
passes the safety supervisor.

The arm geometry (IK, forward kinematics, standoffs, place points) is `skills/arm.py`, shared
with `SimSkills`, so the two implementations make the same moves.

Where objects are comes from a `Perception` provider (`skills/perception.py`); a provider may also
offer, by duck typing:
* `shape(detection) -> TargetShape` (object or furniture, half height, box, graspable),
* `observe_robot(pose, joints)` (called before every query with the robot's pose in `odom` and its
  joint positions by name), `observe_gripper(command, pose, joints) -> held scene id | None`
  (after every gripper command has settled),
* `supports() -> {state key: support label}` and `support_of(scene id) -> scene id | None`,
* `bind_turn(turn_fn)`: the adapter hands over `turn_fn(angle_rad)`, which turns the base in place
  through the executor, for a provider that searches by turning,
* `locate_in_view(phrase) -> Detection | None`: the current view only; `place_on` looks there for
  the released object when the provider cannot tell supports,
* `forget(phrase)`: `pick` calls it after a grasp that closed on nothing, so the next call does not
  reach for the same remembered point again.
`SimGroundTruth` (nodes/sim_ground_truth.py) implements all but the last for the embedded simulator
(an upper bound, labelled so in every result); `SegmentationPerception` below asks the segmentation
node (issue 13) for a 3D point, answers furniture from a map and the held object from the grasp,
remembers sightings and searches by turning (`shape`, `observe_robot`, `observe_gripper`,
`bind_turn`, `locate_in_view`); it knows positions only, not supports.

A provider that raises `ObjectNotFound` (it looked in view, in memory and turning a full circle) is
asked again from up to `search_places` other places on the map topic's OccupancyGrid
(`skills.search.vantage_points`: reachable, open, far from every spot already searched in this task),
driven to with a `GridNavigator` on that map whatever `navigation` says (crossing a room to look
needs to go round its furniture). Without a map, the miss is reported as it is.

Every skill call has a wall-clock deadline (`skill_timeout_s`), and every wait inside it a shorter
one; `cancel(reason)` (any thread) makes the running and every later call fail at once until
`reset()`. A timeout, a cancel or an aborted plan publishes a stop plan (the executor stops the
base) and becomes a failed `SkillResult` with the reason, never an exception out of `execute`.

Threading: the subscriptions' callbacks run on the node's executor thread and only record; the
skills run on another thread (the task planner's worker, or a test's main thread) and wait on a
condition variable. Never call a skill on the executor thread (it would wait for itself).
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import OccupancyGrid, Odometry
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vlm_agent.actions import NavPrimitive
from vlm_agent.config import ConfigBase, param
from vlm_agent.nodes.base import COMMAND_QOS, LATCHED_QOS, SENSOR_QOS
from vlm_agent.planners.planner_loop import ExecutorState, PlanMessage
from vlm_agent.sensors.frames import stamp_to_seconds, yaw_from_quaternion
from vlm_agent.skills.api import PREDICATES, ObjectNotFound, SkillAPI, SkillError, SkillResult
from vlm_agent.skills.approach import NavTarget, Navigator, StraightLineNavigator, TargetShape, turn
from vlm_agent.skills.arm import (
    APPROACH_ABOVE_M, ARM_CARRY, ARM_JOINTS, ARM_STOW, DEFAULT_ARM, GRIPPER_JOINTS, LIFT_M, PLACE_ABOVE_M, RETREAT_M,
    ArmGeometry, offset, place_point_on_object, reachable_place_point_on_box, smooth_trajectory, standoff_m,
)
from vlm_agent.skills.object_memory import FurnitureMap, ObjectMemory, load_furniture_map, phrase_key
from vlm_agent.skills.resolver import normalise_phrase

PLAN_TOPIC = "vlm_agent/plan"
EXECUTOR_STATE_TOPIC = "vlm_agent/executor/state"
ODOM_TOPIC = "odom"
JOINT_STATES_TOPIC = "joint_states"
ARM_TOPIC = "arm_controller/joint_trajectory"
GRIPPER_TOPIC = "gripper/command"
GOAL_TOPIC = "goal_pose"
MAP_TOPIC = "map"
SEGMENTATION_QUERY_TOPIC = "segmentation/query"
SEGMENTATION_LABEL_TOPIC = "segmentation/label"
DEFAULT_HALF_HEIGHT_M = 0.08  # an object's half height when perception does not know it
LOOK_AROUND_STOPS = 12
SEARCH_PLACE_STANDOFF_M = 0.3  # a search drives to within this of the place it picked
SEARCH_FACE_ALONG_M = 0.5  # ... after turning to face the point this far along the path there


@dataclass
class RosSkillsConfig(ConfigBase):
    """How the ROS skill adapter moves the robot and how long it waits. Times in seconds: `*_timeout_s`
    are wall-clock bounds; arm durations and settle times are on the robot's clock (message stamps)."""

    navigation: str = param("executor", "executor: plans on vlm_agent/plan; map: the same, planned around walls and furniture on "
                                        "the map topic (OccupancyGrid); nav2: goal_pose for the far part, then the executor",
                            choices=("executor", "map", "nav2"))
    skill_timeout_s: float = param(120.0, "wall-clock bound of one skill call (navigation included)", min=1.0, max=3600.0)
    plan_timeout_s: float = param(30.0, "wait this long for the executor to finish one plan", min=0.5, max=600.0)
    io_timeout_s: float = param(10.0, "wait this long for odometry / joint states / a subscriber / a segmentation answer", min=0.1, max=300.0)
    max_nav_plans: int = param(60, "plans per navigate_to before it gives up", min=1, max=10000)
    max_nav_aborts: int = param(3, "aborted plans in a row before navigate_to fails (a blocked robot)", min=1, max=100)
    max_primitives_per_plan: int = param(6, "primitives per navigation plan (at most the executor's max_primitives)", min=1, max=100)
    max_forward_cm: float = param(100.0, "longest forward primitive (at most the executor's max_forward_cm)", min=1.0, max=10000.0)
    distance_tolerance_m: float = param(0.03, "final approach: arrived within this of the standoff", min=0.005, max=0.5)
    table_standoff_m: float = param(0.24, "navigate_to a furniture piece stops this far from its edge (the arm must still reach "
                                          "0.16 m onto it)", min=0.05, max=1.0)
    dock_within_m: float = param(0.0, "the last this-many metres of an approach in short steps (0 = one move)", min=0.0, max=2.0)
    dock_step_cm: float = param(4.0, "step length of the docking creep", min=0.5, max=50.0)
    yaw_tolerance_rad: float = param(0.05, "final approach: facing the target within this", min=0.005, max=0.5)
    nav2_tolerance_m: float = param(0.25, "nav2 mode: the goal counts as reached within this distance", min=0.01, max=5.0)
    arm_move_s: float = param(0.8, "duration of one arm move (robot clock)", min=0.05, max=30.0)
    arm_settle_s: float = param(0.5, "wait after an arm move before judging it (robot clock)", min=0.0, max=10.0)
    arm_point_dt_s: float = param(0.05, "spacing of trajectory points", min=0.005, max=1.0)
    arm_tolerance_rad: float = param(0.02, "an arm move is done when every joint is within this of its target ...", min=0.001, max=1.0)
    arm_still_radps: float = param(0.05, "... and moves slower than this", min=0.001, max=10.0)
    reach_tolerance_m: float = param(0.03, "grasp point error (forward kinematics) above which a reach fails", min=0.001, max=0.5)
    gripper_settle_s: float = param(0.4, "wait after a gripper command (robot clock)", min=0.0, max=10.0)
    gripper_held_min_m: float = param(0.01, "a closed gripper holds something when its fingers stay this far open", min=0.0, max=0.2)
    gripper_open_m: float = param(0.09, "finger travel of the open gripper (joint_states, m)", min=0.005, max=0.5)
    gripper_still_mps: float = param(0.005, "the gripper has settled when its fingers move slower than this", min=0.0001, max=1.0)
    camera_x_m: float = param(-0.07, "segmentation perception: camera position in base_link (m)", min=-10.0, max=10.0)
    camera_y_m: float = param(0.0, "segmentation perception: camera position in base_link (m)", min=-10.0, max=10.0)
    camera_z_m: float = param(0.95, "segmentation perception: camera position in base_link (m)", min=-10.0, max=10.0)
    camera_roll_rad: float = param(0.0, "segmentation perception: camera_link roll in base_link (URDF rpy)", min=-math.pi, max=math.pi)
    camera_pitch_rad: float = param(0.349066, "segmentation perception: camera_link pitch (positive = down)", min=-math.pi, max=math.pi)
    camera_yaw_rad: float = param(0.0, "segmentation perception: camera_link yaw", min=-math.pi, max=math.pi)
    furniture_map: str = param("", "segmentation perception: YAML file of the furniture in odom (tables, cabinets, sofas: "
                                   "answered from the map, not segmented; re-read when it changes); empty = no furniture map")
    search_turn_stops: int = param(8, "segmentation perception: views per full circle when the phrase is neither in view nor "
                                      "remembered (1 = never turn)", min=1, max=72)
    not_in_view_labels: int = param(3, "segmentation perception: segmentation/label frames without a target that mean "
                                       "'not in this view'", min=1, max=100)
    use_memory: bool = param(True, "segmentation perception: answer from the last sighting of the same phrase when the view misses it")
    answer_frames_after_query: bool = param(True, "segmentation perception: only a segmentation of a camera frame stamped after the "
                                                  "query answers it (frame stamps and this node's clock must agree: use_sim_time in a "
                                                  "simulator)")
    search_places: int = param(2, "when the perception finds an object in no view from here, how many other places on the map "
                                  "topic's grid to drive to and search from (0 = never move to search; needs the map topic)",
                               min=0, max=20)
    forget_between_tasks: bool = param(True, "segmentation perception: a new task starts with no remembered sightings (objects "
                                             "may have moved since the last task, or, in a simulator, the world was replaced)")


def final_approach_kwargs(config: RosSkillsConfig) -> dict:
    """`StraightLineNavigator` arguments from the adapter's parameters."""
    return {"distance_tolerance_m": config.distance_tolerance_m, "yaw_tolerance_rad": config.yaw_tolerance_rad,
            "max_forward_cm": config.max_forward_cm, "dock_within_m": config.dock_within_m, "dock_step_cm": config.dock_step_cm}


class SkillCancelled(SkillError):
    """The call was cancelled (`RosSkills.cancel`)."""


class RosSkills(SkillAPI):
    """The skills through ROS topics on `node` (see module docstring).

    node: an rclpy node spun by some executor on another thread; the adapter adds its publishers and
        subscriptions to it (relative names: the node's namespace and remaps apply).
    perception: a `Perception` provider (see module docstring for the optional methods).
    navigator: the `Navigator` for the executor path (default: `StraightLineNavigator`).
    instruction: the task, copied into every plan's `instruction` field.
    """

    def __init__(self, node, perception, config: RosSkillsConfig | None = None, navigator: Navigator | None = None,
                 arm: ArmGeometry = DEFAULT_ARM, instruction: str = ""):
        self.node = node
        self.config = config or RosSkillsConfig()
        self.perception = perception
        self.arm = arm
        self._map = None  # OccupancyMap from the map topic (navigation: map, or search_places > 0)
        final = StraightLineNavigator(**final_approach_kwargs(self.config))
        from vlm_agent.skills.grid_navigator import GridNavigator

        map_navigator = GridNavigator(lambda: self._map, final, max_forward_cm=self.config.max_forward_cm)
        if navigator is None and self.config.navigation == "map":
            navigator = map_navigator
        self.navigator = navigator or final
        self._search_navigator = map_navigator  # drives to the places a search looks from
        self.searched_from: list[tuple[float, float]] = []  # (x, y) odom of searches that found nothing, this task
        self.instruction = instruction
        self.done_called = False
        self.log: list[str] = []
        self.listeners: list = []  # callables (SkillCall, SkillResult), told after every call (on the caller's thread)
        self._cond = threading.Condition()
        self._pose: tuple[float, float, float] | None = None
        self._pose_stamp = -math.inf
        self._joints: dict[str, float] = {}
        self._velocities: dict[str, float] = {}
        self._joints_stamp = -math.inf
        self._states: dict[int, ExecutorState] = {}
        self._cancel_reason: str | None = None
        self._deadline = math.inf
        self._gripper_closed = False
        self._held: tuple[str, str | None, float] | None = None  # (label, scene id, half height)
        self._plan_id = int(time.time()) % 100000 * 1000 + 500  # distinct from other plan publishers' ids
        self.plan_pub = node.create_publisher(String, PLAN_TOPIC, LATCHED_QOS)
        self.arm_pub = node.create_publisher(JointTrajectory, ARM_TOPIC, COMMAND_QOS)
        self.gripper_pub = node.create_publisher(Float64, GRIPPER_TOPIC, COMMAND_QOS)
        self.goal_pub = node.create_publisher(PoseStamped, GOAL_TOPIC, COMMAND_QOS) if self.config.navigation == "nav2" else None
        self._subs = [
            node.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS),
            node.create_subscription(JointState, JOINT_STATES_TOPIC, self._on_joints, SENSOR_QOS),
            # Volatile: the executor's reports from now on (its latched history is of earlier plans).
            node.create_subscription(String, EXECUTOR_STATE_TOPIC, self._on_state, COMMAND_QOS),
        ]
        if self.config.navigation == "map" or self.config.search_places:
            self._subs.append(node.create_subscription(OccupancyGrid, MAP_TOPIC, self._on_map, LATCHED_QOS))
        bind_turn = getattr(perception, "bind_turn", None)
        if bind_turn is not None:  # a provider that searches by turning the base (SegmentationPerception)
            bind_turn(self._turn_in_place)

    def destroy(self) -> None:
        """Remove the adapter's publishers and subscriptions from the node."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        for pub in (self.plan_pub, self.arm_pub, self.gripper_pub, self.goal_pub):
            if pub is not None:
                self.node.destroy_publisher(pub)
        self._subs = []

    # -- callbacks (executor thread: record and notify only) ------------------------------------
    def _on_odom(self, msg) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        pose = (float(p.x), float(p.y), yaw_from_quaternion(q.x, q.y, q.z, q.w))
        try:
            stamp = stamp_to_seconds(msg.header.stamp)
        except ValueError:
            return
        if not all(math.isfinite(v) for v in pose):
            return
        with self._cond:
            self._pose, self._pose_stamp = pose, stamp
            self._cond.notify_all()

    def _on_map(self, msg) -> None:
        from vlm_agent.skills.grid_navigator import OccupancyMap

        info = msg.info
        try:
            if abs(info.origin.orientation.z) > 1e-3:
                raise ValueError("a rotated map origin is not supported")
            grid = OccupancyMap.from_message_fields(msg.data, info.width, info.height, info.resolution, info.origin.position.x,
                                                    info.origin.position.y)
        except ValueError as exc:
            self.node.get_logger().warning(f"map ignored: {exc}")
            return
        self._map = grid

    def _on_joints(self, msg) -> None:
        try:
            stamp = stamp_to_seconds(msg.header.stamp)
        except ValueError:
            return
        values = {n: float(p) for n, p in zip(msg.name, msg.position) if math.isfinite(p)}
        speeds = {n: float(v) for n, v in zip(msg.name, msg.velocity) if math.isfinite(v)}
        with self._cond:
            self._joints.update(values)
            self._velocities.update(speeds)
            self._joints_stamp = stamp
            self._cond.notify_all()

    def _on_state(self, msg) -> None:
        try:
            state = ExecutorState.from_json(msg.data)
        except ValueError:
            return
        with self._cond:
            if state.state in ("done", "aborted") or state.plan_id not in self._states:
                self._states[state.plan_id] = state
            self._cond.notify_all()

    # -- cancellation and deadlines -------------------------------------------------------------
    def cancel(self, reason: str = "cancelled") -> None:
        """Make the running skill call (and every later one, until `reset`) fail at once; any thread.
        The base is stopped by the failing call (a stop plan)."""
        with self._cond:
            self._cancel_reason = reason or "cancelled"
            self._cond.notify_all()

    def reset(self, instruction: str | None = None) -> None:
        """Clear a cancellation and the episode's bookkeeping (held object, done) for a new task."""
        with self._cond:
            self._cancel_reason = None
        if instruction is not None:
            self.instruction = instruction
        self.done_called = False
        self._held = None
        self._gripper_closed = False
        self.searched_from = []
        new_task = getattr(self.perception, "new_task", None)
        if new_task is not None:
            new_task()

    @property
    def cancelled(self) -> bool:
        return self._cancel_reason is not None

    def execute(self, call):
        self._deadline = time.monotonic() + self.config.skill_timeout_s
        try:
            result = super().execute(call)
        except Exception as exc:  # noqa: BLE001 (anything unexpected in a skill is feedback, never a crash)
            self._safe_stop()
            result = SkillResult(False, f"{call.to_text()} failed: {type(exc).__name__}: {exc}")
        finally:
            self._deadline = math.inf
        if not result.success and call.name in ("navigate_to", "pick", "place_on", "look_around"):
            self._safe_stop()
        if result.perception is None:
            result.perception = self.perception.label
        self.log = (self.log + [f"{call.to_text()} -> {'ok' if result.success else 'FAILED'}: {result.feedback}"])[-100:]
        for listener in self.listeners:
            try:
                listener(call, result)
            except Exception:  # noqa: BLE001 (a listener must not break the skill)
                pass
        return result

    def _wait(self, predicate, timeout_s: float, what: str):
        """Wait (on the caller's thread) until `predicate()` returns a truthy value, which is returned.
        SkillCancelled after `cancel`, SkillError after `timeout_s` or the call's deadline."""
        end = min(time.monotonic() + timeout_s, self._deadline)
        with self._cond:
            while True:
                if self._cancel_reason is not None:
                    raise SkillCancelled(f"cancelled ({self._cancel_reason})")
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    bound = "the skill's time limit" if end == self._deadline else f"{timeout_s:g} s"
                    raise SkillError(f"timed out after {bound} waiting for {what}")
                self._cond.wait(min(left, 0.1))

    def _check_cancel(self) -> None:
        if self._cancel_reason is not None:
            raise SkillCancelled(f"cancelled ({self._cancel_reason})")

    # -- robot state ----------------------------------------------------------------------------
    def pose(self) -> tuple[float, float, float]:
        """The latest base pose (x, y, yaw) in `odom`; waits for the first odometry."""
        return self._wait(lambda: self._pose, self.config.io_timeout_s, "odometry")

    def joints(self) -> dict[str, float]:
        self._wait(lambda: all(j in self._joints for j in ARM_JOINTS), self.config.io_timeout_s, "joint_states with the arm joints")
        with self._cond:
            return dict(self._joints)

    def _arm_positions(self) -> tuple[float, ...]:
        j = self.joints()
        return tuple(j[n] for n in ARM_JOINTS)

    def _finger_opening(self) -> float | None:
        """Mean finger travel (m) from joint_states, None before any."""
        with self._cond:
            return self._finger_opening_locked()

    def _finger_opening_locked(self) -> float | None:
        values = [self._joints[n] for n in GRIPPER_JOINTS if n in self._joints]
        return sum(values) / len(values) if values else None

    def _observe(self, block: bool = True) -> None:
        """Tell a provider that follows the robot (`observe_robot`) its pose and joints; `block=False`
        (or a provider whose `needs_robot_state` is False) uses what has arrived and skips the call
        when odometry or the arm's joints have not."""
        hook = getattr(self.perception, "observe_robot", None)
        if hook is None:
            return
        if block and getattr(self.perception, "needs_robot_state", True):
            hook(self.pose(), self.joints())
            return
        with self._cond:
            pose, joints = self._pose, dict(self._joints)
        if pose is not None and all(j in joints for j in ARM_JOINTS):
            hook(pose, joints)

    def _locate(self, phrase: str):
        """The provider's `locate`; on `ObjectNotFound`, again from other places (module docstring)."""
        self._observe()
        try:
            return self.perception.locate(phrase)
        except ObjectNotFound as exc:
            if not self.config.search_places:
                raise
            first = exc
        grid = self._map
        if grid is None:
            raise ObjectNotFound(f"{first}; no map to pick other places to search from") from None
        from vlm_agent.skills.search import search_from_places

        logger = self.node.get_logger()

        def drive(xy) -> bool:
            x, y = xy
            self._check_cancel()
            logger.info(f"search for {phrase!r}: driving to ({x:.2f}, {y:.2f}) to look from there")
            target = NavTarget("a place to search from", (x, y, 0.0), SEARCH_PLACE_STANDOFF_M)
            raw = f"locate({phrase!r}): searching from ({x:.2f}, {y:.2f})"
            try:
                # Turn along the path first: a search often starts at an object's standoff, facing the
                # object, which the map does not hold; a first forward move would run into it
                # (measured through ROS: every search after a missed grasp was blocked at 0.02 m).
                ahead = _point_along(self._search_navigator.path(grid, self.pose(), target), SEARCH_FACE_ALONG_M)
                if ahead is not None:
                    self._face(ahead, raw)
                self._drive_to(target, raw, navigator=self._search_navigator)
            except SkillCancelled:
                raise
            except SkillError as exc:
                self.log.append(f"search for {phrase!r}: could not reach ({x:.2f}, {y:.2f}): {exc}")
                logger.warning(self.log[-1])
                return False
            self._observe()
            return True

        gx, gy = grid.centres()
        return search_from_places(lambda: self.perception.locate(phrase), first, self.pose()[:2], grid.clearance, gx, gy,
                                  self.searched_from, self.config.search_places, self._search_navigator.robot_radius_m, drive,
                                  lambda: self.pose()[:2])

    def _shape(self, det) -> TargetShape:
        hook = getattr(self.perception, "shape", None)
        return hook(det) if hook is not None else TargetShape()

    def _target(self, det, shape: TargetShape) -> NavTarget:
        box = (shape.box[0], shape.box[1]) if shape.box is not None else None
        standoff = standoff_m(True) if shape.is_object else self.config.table_standoff_m
        return NavTarget(det.label, tuple(det.position), standoff, box, det.name)

    # -- skills ---------------------------------------------------------------------------------
    def navigate_to(self, object: str) -> SkillResult:
        det = self._locate(object)
        if self._held is not None and det.name is not None and det.name == self._held[1]:
            raise SkillError(f"already holding {det.label}")
        self._drive_to(self._target(det, self._shape(det)), f"navigate_to({object!r})")
        return self._result(True, f"at {det.label}")

    def pick(self, object: str) -> SkillResult:
        if self._held is not None:
            raise SkillError(f"already holding {self._held[0]}")
        det = self._locate(object)
        shape = self._shape(det)
        if not shape.is_object:
            raise SkillError(f"'{object}' is not an object that can be picked")
        if not shape.graspable:
            raise SkillError(f"{det.label} cannot be grasped (too flat)")
        self._drive_to(self._target(det, shape), f"pick({object!r})")
        det = self._locate(object)  # where it is now, seen from the standoff
        p = tuple(det.position)
        self.open_gripper()
        self._reach(offset(p, APPROACH_ABOVE_M))
        self._reach(p)
        closed = self.close_gripper()
        if not self._holding_something():
            self._reach(offset(p, RETREAT_M))
            # The estimate was wrong (measured through ROS: a cylinder whose lower half a table hid was
            # put 10 cm too high, and every retry reached for the same remembered point). Forget it,
            # so the next call looks again, from here or from another place.
            forget = getattr(self.perception, "forget", None)
            if forget is not None:
                forget(object)
            raise SkillError(f"grasp of {det.label} missed ({closed.feedback})" + ("; its sighting is forgotten" if forget else ""))
        self._held = (det.label, det.name, shape.half_height if shape.half_height is not None else DEFAULT_HALF_HEIGHT_M)
        self._reach(offset(p, LIFT_M))
        self._move_arm(ARM_CARRY)
        return self._result(True, f"holding {det.label}")

    def place_on(self, object: str) -> SkillResult:
        if self._held is None:
            raise SkillError("not holding anything")
        held_label, held_name, held_half = self._held
        det = self._locate(object)
        if det.name is not None and det.name == held_name:
            raise SkillError("cannot place an object on itself")
        shape = self._shape(det)
        target = self._target(det, shape)
        self._drive_to(target, f"place_on({object!r})")
        if shape.box is not None:
            xy_min, xy_max, top_z = shape.box
            point = reachable_place_point_on_box(self.pose(), xy_min, xy_max, top_z, held_half, self.arm)
            self._face(point[:2], f"place_on({object!r})")
        else:
            dest_half = shape.half_height if shape.half_height is not None else DEFAULT_HALF_HEIGHT_M
            point = place_point_on_object(det.position, dest_half, held_half)
        self._reach(offset(point, PLACE_ABOVE_M))
        self._reach(point)
        # where the gripper lets go (forward kinematics), and whether it still held something then
        released_at = self.arm.grasp_point(self.pose(), self._arm_positions()) if self._holding_something() else None
        self.open_gripper()
        self._reach(offset(point, RETREAT_M))
        self._move_arm(ARM_STOW)
        support_of = getattr(self.perception, "support_of", None)
        if support_of is not None and held_name is not None and det.name is not None:
            self._observe()
            support = support_of(held_name)
            if support != det.name:
                raise SkillError(f"{held_label} fell onto {self._support_label(support)} instead of {det.label}")
            return self._result(True, f"{held_label} is on {det.label}")
        look = getattr(self.perception, "locate_in_view", None)
        seen = None
        if look is not None:  # positions only: look where it was released
            self._observe()
            seen = look(held_label)
        feedback, verified_by = placement_outcome(held_label, det, shape, seen, released_at)
        return self._result(True, feedback, verified_by=verified_by)


    def open_gripper(self) -> SkillResult:
        self._gripper(0.0)
        self._gripper_closed = False
        self._held = None
        return self._result(True, "gripper open")

    def close_gripper(self) -> SkillResult:
        held_name = self._gripper(1.0)
        self._gripper_closed = True
        if not self._holding_something():
            return self._result(True, "gripper closed on nothing")
        label = self._label_of(held_name) if held_name else "an object"
        half = getattr(self.perception, "half_height_of", lambda _name: None)(held_name) if held_name else None
        self._held = (label, held_name, half if half is not None else DEFAULT_HALF_HEIGHT_M)
        return self._result(True, f"gripper closed on {label}")

    def look_around(self) -> SkillResult:
        seen: dict[str, object] = {}
        step = 2 * math.pi / LOOK_AROUND_STOPS
        for _ in range(LOOK_AROUND_STOPS):
            self._observe()
            for det in self.perception.visible():
                seen.setdefault(det.label, det)
            self._run_plan([NavPrimitive.turn_left(math.degrees(step))], "look_around()")
        if not seen:
            return self._result(True, "seen: nothing")
        return self._result(True, "seen: " + ", ".join(sorted(seen)))

    def locate(self, object: str) -> SkillResult:
        try:
            det = self._locate(object)
        except SkillCancelled:
            raise
        except SkillError as exc:
            return self._result(False, f"{object} not found: {exc}", found=False)
        pos = "(" + ", ".join(f"{v:.2f}" for v in det.position) + ")"
        return self._result(True, f"{det.label} at {pos} m ({det.frame})", found=True, position=tuple(det.position), frame=det.frame)

    def done(self) -> SkillResult:
        self.done_called = True
        return self._result(True, "done")

    # -- state and predicates -------------------------------------------------------------------
    def state(self) -> dict:
        """held (label or None), gripper ("open"/"closed"), base_pose [x m, y m, yaw rad] in odom (None
        before any odometry), and the provider's object supports ("support/<label>") when it knows them."""
        with self._cond:
            pose = self._pose
        out = {
            "held": self._held[0] if self._held else None,
            "gripper": "closed" if self._gripper_closed else "open",
            "base_pose": [round(float(v), 3) for v in pose] if pose else None,
        }
        supports = getattr(self.perception, "supports", None)
        if supports is not None:
            try:
                self._observe(block=False)  # never waits: the loops read the state before every model call
                out.update(supports())
            except SkillError:
                pass
        return out

    def holds(self, predicate: str, args: tuple[str, ...]) -> bool:
        if predicate not in PREDICATES or len(args) != len(PREDICATES[predicate][0]):
            raise SkillError(f"unknown predicate {predicate}/{len(args)}")
        if predicate == "gripper_open":
            return not self._gripper_closed
        if predicate == "gripper_closed":
            return self._gripper_closed
        if predicate == "holding":
            if normalise_phrase(args[0]) in ("nothing", "none"):
                return self._held is None
            if self._held is None:
                return False
            det = self._locate(args[0])
            return det.name == self._held[1] if det.name is not None else det.label == self._held[0]
        if predicate == "near":
            det = self._locate(args[0])
            return self._target(det, self._shape(det)).near(self.pose())
        obj, support = self._locate(args[0]), self._locate(args[1])
        if self._held is not None and obj.name is not None and obj.name == self._held[1]:
            return False
        support_of = getattr(self.perception, "support_of", None)
        if support_of is not None and obj.name is not None and support.name is not None:
            return support_of(obj.name) == support.name
        return rests_on(obj.position, support.position, self._shape(support))

    def _label_of(self, name: str | None) -> str:
        hook = getattr(self.perception, "label_of", None)
        return hook(name) if hook is not None and name else (name or "an object")

    def _support_label(self, support: str | None) -> str:
        if support in (None, "floor", "gripper"):
            return support or "nowhere"
        return self._label_of(support)

    def _result(self, success: bool, feedback: str, **extra) -> SkillResult:
        return SkillResult(success, feedback, perception=self.perception.label, **extra)

    # -- base motion ----------------------------------------------------------------------------
    def _next_plan_id(self) -> int:
        self._plan_id += 1
        return self._plan_id

    def _publish_plan(self, primitives, raw_text: str) -> int:
        self._wait(lambda: self.plan_pub.get_subscription_count() >= 1, self.config.io_timeout_s, "the motion executor on vlm_agent/plan")
        plan_id = self._next_plan_id()
        plan = PlanMessage(plan_id, self.instruction[:500], 0, raw_text[:500], tuple(primitives), 0.0, None)
        self.plan_pub.publish(String(data=plan.to_json()))
        return plan_id

    def _run_plan(self, primitives, raw_text: str) -> ExecutorState:
        """Publish a plan and wait for the executor's final report; SkillError when it was aborted."""
        plan_id = self._publish_plan(primitives, raw_text)
        state = self._wait(lambda: self._final_state(plan_id), self.config.plan_timeout_s, f"the executor to finish plan {plan_id}")
        if state.state == "aborted":
            raise SkillError(f"motion aborted: {state.reason}")
        return state

    def _final_state(self, plan_id: int):
        state = self._states.get(plan_id)
        return state if state is not None and state.state in ("done", "aborted") else None

    def _safe_stop(self) -> None:
        """Stop the base: a stop plan preempts whatever the executor runs (best effort, never raises)."""
        try:
            if self.plan_pub.get_subscription_count() >= 1:
                plan = PlanMessage(self._next_plan_id(), self.instruction[:500], 0, "skill stopped", (NavPrimitive.stop(),), 0.0, None)
                self.plan_pub.publish(String(data=plan.to_json()))
        except Exception:  # noqa: BLE001 (a context shut down under us: nothing left to stop)
            pass

    def _drive_to(self, target: NavTarget, raw_text: str, navigator: Navigator | None = None) -> None:
        """Plan and execute until the navigator (default `self.navigator`) says arrived; SkillError when
        blocked, too slow or lost."""
        if self.config.navigation == "nav2" and navigator is None:
            self._nav2_goal(target)
        navigator = navigator or self.navigator
        aborts = 0
        for _ in range(self.config.max_nav_plans):
            self._check_cancel()
            pose = self.pose()
            self._observe()
            prims = navigator.plan(pose, target)
            if not prims:
                break
            prims = prims[: self.config.max_primitives_per_plan]
            try:
                self._run_plan(prims, raw_text)
                aborts = 0
            except SkillCancelled:
                raise
            except SkillError as exc:
                pose = self.pose()
                if target.near(pose) and abs(target.bearing_error(pose)) <= self.config.yaw_tolerance_rad:
                    # Blocked (e.g. by the safety supervisor) while creeping the last centimetres, but
                    # already where navigate_to counts as arrived: stay here; the arm's reach is checked
                    # by the skill that follows.
                    self.log.append(f"{raw_text}: stopped {target.gap(pose):.2f} m short of the standoff ({exc})")
                    break
                aborts += 1
                if aborts >= self.config.max_nav_aborts:
                    raise SkillError(f"could not reach {target.label}: {exc}") from None
        else:
            raise SkillError(f"could not reach {target.label} within {self.config.max_nav_plans} plans")
        pose = self.pose()
        if not target.near(pose):
            raise SkillError(f"blocked on the way to {target.label} ({target.distance_from(pose[:2]):.2f} m away)")

    def _turn_in_place(self, angle_rad: float) -> None:
        """Turn the base in place by `angle_rad` (CCW positive) through the executor (perception's search)."""
        self._check_cancel()
        if abs(angle_rad) > self.config.yaw_tolerance_rad:
            self._run_plan([turn(angle_rad)], "locate(): searching by turning in place")

    def _face(self, point, raw_text: str) -> None:
        pose = self.pose()
        err = math.remainder(math.atan2(point[1] - pose[1], point[0] - pose[0]) - pose[2], 2 * math.pi)
        if abs(err) > self.config.yaw_tolerance_rad:
            self._run_plan([turn(err)], raw_text)

    def _nav2_goal(self, target: NavTarget) -> None:
        """Nav2: a goal at the standoff on the line from the base to the target, facing it; waits until
        odometry is within `nav2_tolerance_m` of it."""
        pose = self.pose()
        fx, fy = target.focus_point(pose[:2])
        dx, dy = pose[0] - fx, pose[1] - fy
        d = math.hypot(dx, dy)
        if d <= target.standoff_m + self.config.nav2_tolerance_m:
            return
        ux, uy = dx / d, dy / d
        gx, gy = fx + ux * target.standoff_m, fy + uy * target.standoff_m
        yaw = math.atan2(-uy, -ux)
        msg = PoseStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = "odom"
        msg.pose.position.x, msg.pose.position.y = gx, gy
        msg.pose.orientation.z, msg.pose.orientation.w = math.sin(yaw / 2.0), math.cos(yaw / 2.0)
        self._wait(lambda: self.goal_pub.get_subscription_count() >= 1, self.config.io_timeout_s, "Nav2 on goal_pose")
        self.goal_pub.publish(msg)
        tol = self.config.nav2_tolerance_m
        self._wait(lambda: self._pose is not None and math.hypot(self._pose[0] - gx, self._pose[1] - gy) <= tol,
                   self.config.skill_timeout_s, f"Nav2 to reach the goal near {target.label}")

    # -- arm and gripper ------------------------------------------------------------------------
    def _reach(self, point) -> None:
        """Move the grasp point to `point` (x, y, z) m in odom, gripper down; SkillError if it ends off target."""
        pose = self.pose()
        self._move_arm(self.arm.reach_joints(pose, point))
        got = self.arm.grasp_point(self.pose(), self._arm_positions())
        err = math.dist(got, point)
        if err > self.config.reach_tolerance_m:
            raise SkillError(f"arm could not reach the target (error {err:.3f} m)")

    def _move_arm(self, target) -> None:
        """One cosine-profiled trajectory to `target` (ARM_JOINTS order, rad); waits until the joints
        are there, `arm_move_s + arm_settle_s` of robot time after the command."""
        cfg = self.config
        target = tuple(float(v) for v in target)
        start = self._arm_positions()
        self._wait(lambda: self.arm_pub.get_subscription_count() >= 1, cfg.io_timeout_s, "the arm controller on arm_controller/joint_trajectory")
        with self._cond:
            t0 = self._joints_stamp
        msg = JointTrajectory()
        msg.joint_names = list(ARM_JOINTS)
        for t, positions in smooth_trajectory(start, target, cfg.arm_move_s, cfg.arm_point_dt_s):
            point = JointTrajectoryPoint()
            point.positions = [float(v) for v in positions]
            point.time_from_start.sec = int(t)
            point.time_from_start.nanosec = int(round((t - int(t)) * 1e9))
            msg.points.append(point)
        self.arm_pub.publish(msg)
        until = t0 + cfg.arm_move_s + cfg.arm_settle_s

        def arrived():
            # On the robot's clock, at least the move's duration later (a lower bound: the controller
            # starts when the message arrives), then at the target and still.
            if self._joints_stamp < until or not all(n in self._joints for n in ARM_JOINTS):
                return False
            there = max(abs(self._joints[n] - v) for n, v in zip(ARM_JOINTS, target)) <= cfg.arm_tolerance_rad
            return there and max(abs(self._velocities.get(n, 0.0)) for n in ARM_JOINTS) <= cfg.arm_still_radps

        try:
            self._wait(arrived, cfg.arm_move_s + cfg.arm_settle_s + cfg.io_timeout_s, "the arm to reach its target")
        except SkillCancelled:
            self._hold_arm()
            raise
        except SkillError:
            with self._cond:
                errors = [abs(self._joints.get(n, math.nan) - v) for n, v in zip(ARM_JOINTS, target)]
            self._hold_arm()
            raise SkillError(f"arm did not reach its target (joint errors {', '.join(f'{e:.2f}' for e in errors)} rad)") from None

    def _hold_arm(self) -> None:
        """Command the arm to stay where it is (after a cancel or a failed move); best effort."""
        try:
            with self._cond:
                current = [self._joints[n] for n in ARM_JOINTS]
            msg = JointTrajectory()
            msg.joint_names = list(ARM_JOINTS)
            point = JointTrajectoryPoint()
            point.positions = [float(v) for v in current]
            point.time_from_start.nanosec = 1
            msg.points.append(point)
            self.arm_pub.publish(msg)
        except Exception:  # noqa: BLE001
            pass

    def _gripper(self, command: float) -> str | None:
        """Command the gripper and wait `gripper_settle_s` of robot time; returns what the perception
        provider says is held now (providers that track it), else None."""
        cfg = self.config
        self._wait(lambda: self.gripper_pub.get_subscription_count() >= 1, cfg.io_timeout_s, "the gripper on gripper/command")
        self.joints()
        with self._cond:
            t0 = self._joints_stamp
        self.gripper_pub.publish(Float64(data=float(command)))
        until = t0 + cfg.gripper_settle_s
        closing = command >= 0.5

        def settled():
            # The command took effect (open: fingers near full travel; closed: clearly short of it, on
            # an object or shut) and the fingers are still, at least gripper_settle_s later.
            opening = self._finger_opening_locked()
            if opening is None or self._joints_stamp < until:
                return False
            moved = opening < cfg.gripper_open_m - 0.02 if closing else opening >= cfg.gripper_open_m - 0.01
            still = max(abs(self._velocities.get(n, 0.0)) for n in GRIPPER_JOINTS) <= cfg.gripper_still_mps
            return moved and still

        try:
            self._wait(settled, cfg.gripper_settle_s + cfg.io_timeout_s, "the gripper to " + ("close" if closing else "open"))
        except SkillCancelled:
            raise
        except SkillError:
            raise SkillError(f"the gripper did not {'close' if closing else 'open'} (finger opening {self._finger_opening()} m)") from None
        hook = getattr(self.perception, "observe_gripper", None)
        if hook is not None:
            return hook(command, self.pose(), self.joints())
        return None

    def _holding_something(self) -> bool:
        """A closed gripper whose fingers stopped apart holds something (joint_states)."""
        opening = self._finger_opening()
        return self._gripper_closed and opening is not None and opening > self.config.gripper_held_min_m


def _point_along(path, distance_m: float):
    """The first point of `path` ((x, y) list, robot first) at least `distance_m` from its start, else
    its last point; None for a path of fewer than two points."""
    if len(path) < 2:
        return None
    x0, y0 = path[0]
    for p in path[1:]:
        if math.hypot(p[0] - x0, p[1] - y0) >= distance_m:
            return p
    return path[-1]


def rests_on(position, support_position, shape: TargetShape) -> bool:
    """Geometry only: `position` (x, y, z) is above the support's footprint (a furniture box, or
    within 10 cm of an object's centre) and higher than its top."""
    if shape.box is not None:
        (x0, y0), (x1, y1), top = shape.box
        return x0 <= position[0] <= x1 and y0 <= position[1] <= y1 and position[2] > top
    return math.hypot(position[0] - support_position[0], position[1] - support_position[1]) < 0.1 and position[2] > support_position[2]


def placement_outcome(held_label: str, dest, shape: TargetShape, seen=None, released_at=None) -> tuple[str, str]:
    """(feedback, verified_by) of a `place_on` whose perception cannot tell supports: `seen` (the
    released object found in view afterwards, a Detection, or None) decides when there is one (off the
    destination: SkillError); otherwise `released_at`, the grasp point when the gripper opened while
    still holding (None: it was empty by then, a SkillError), over the destination's footprint counts
    as placed; anything else is reported as released near it, unverified."""
    if seen is not None:
        if not rests_on(seen.position, dest.position, shape):
            raise SkillError(f"{held_label} is not on {dest.label} after release (seen at {_xyz(seen.position)})")
        return f"{held_label} is on {dest.label}", "camera"
    if released_at is None:
        raise SkillError(f"{held_label} was no longer in the gripper when it opened over {dest.label}")
    if rests_on(released_at, dest.position, shape):
        # below the camera's view at the standoff: the gripper held it until it opened over the footprint
        return f"{held_label} is on {dest.label}", "released over it (not in view)"
    return f"{held_label} released near {dest.label} (not verified: not in view, released at {_xyz(released_at)})", ""


def _point(value) -> tuple[float, float, float] | None:
    """A label's `target` as (x, y, z) floats, or None when it is missing or not three finite numbers."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return None
    try:
        point = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return point if all(math.isfinite(v) for v in point) else None


def _xyz(p) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in p) + ")"


class SegmentationPerception:
    """Where an object is, from the segmentation node (issue 13): the phrase goes out on
    `segmentation/query` (std_msgs/String) and the answer is read from the node's per-frame
    `segmentation/label` (JSON: the query, the frame's stamp, and the object's 3D centre `target` in
    `target_frame`, the same point the node publishes on `segmentation/target`): the first label of
    this query with a target, of a frame stamped after the query (`answer_frames_after_query`), in
    the camera optical frame (transformed with the camera's mounting in base_link and the base pose
    from odometry) or already in `odom`. The label names its query, so an answer to the previous
    query cannot be taken for this one; a `PointStamped` alone could not tell. The labels also tell
    "not in this view" fast: `not_in_view_labels` fresh labels for the query without a target (an
    empty mask, a mask the node's attribute verifier rejected, whose reason then reaches the
    not-found message, no depth), or an `error` label (a refused query, a failed model call: a SkillError
    with the node's reason).

    Like the in-process provider (`skills/segmenter_perception.py`), `locate(phrase)`:
    * furniture ("the table") comes from the map (`furniture_map`, a YAML file,
      `skills.object_memory`), never segmented; `shape(det)` gives its box (where to stand and place);
    * the held object (the phrase last located before the gripper closed on something) is at the
      grasp point (forward kinematics of `joint_states` from the base pose);
    * otherwise the current view; then the last sighting of the same phrase (`use_memory`; dropped
      once the object has been held and released); then a search turning the base in place through
      `search_turn_stops` views (plans to the motion executor, bound by `RosSkills` through
      `bind_turn`), re-querying each view, then back to the start heading.
    Not an upper bound; positions only (`Detection.name` is None except for furniture), so it knows
    nothing of supports or object shapes, and `visible()` is empty (a segmenter answers queries).
    """

    label = "segmentation"
    upper_bound = False
    needs_robot_state = False  # joints only matter for the held object: the adapter never waits for them

    def __init__(self, node, config: RosSkillsConfig | None = None, pose_fn=None, odom_frame: str = "odom",
                 furniture: FurnitureMap | None = None, arm: ArmGeometry = DEFAULT_ARM):
        from vlm_agent.safety.obstacle import CameraMount

        self.node = node
        self.config = config or RosSkillsConfig()
        c = self.config
        self.mount = CameraMount(c.camera_x_m, c.camera_y_m, c.camera_z_m, c.camera_roll_rad, c.camera_pitch_rad, c.camera_yaw_rad)
        self.odom_frame = odom_frame
        self.arm = arm
        self._map_stamp = None  # (mtime_ns, size) of the furniture map file last read
        self.furniture = furniture if furniture is not None else FurnitureMap()
        if furniture is None and c.furniture_map:
            self._refresh_map()  # ValueError with the reason for a bad file: the node's configure fails
        self.memory = ObjectMemory()
        self.log: list[str] = []  # one line per locate: where the answer came from (also on the node's log)
        self._turn = None  # turn(angle_rad) from the skill adapter (bind_turn)
        self._pose_fn = pose_fn
        self._pose = None
        self._joints: dict[str, float] = {}
        self._last_phrase: str | None = None
        self._cond = threading.Condition()
        self._labels: list[tuple[float, dict]] = []  # (arrival, label)
        self._rejections: list[str] = []  # the verifier's reasons for the views of the current locate call
        self.query_pub = node.create_publisher(String, SEGMENTATION_QUERY_TOPIC, COMMAND_QOS)
        self._label_sub = node.create_subscription(String, SEGMENTATION_LABEL_TOPIC, self._on_label, COMMAND_QOS)
        self._odom_sub = node.create_subscription(Odometry, ODOM_TOPIC, self._on_odom, SENSOR_QOS) if pose_fn is None else None

    # -- hooks the skill adapter calls ------------------------------------------------------------
    def bind_turn(self, turn_fn) -> None:
        """`turn_fn(angle_rad)` turns the base in place (positive = left) and returns when done."""
        self._turn = turn_fn

    def observe_robot(self, pose, joints) -> None:
        with self._cond:
            self._joints = dict(joints)
            if self._pose_fn is None:
                self._pose = tuple(pose)

    def observe_gripper(self, command: float, pose, joints) -> None:
        """Closed on something: the phrase located last is now held; opened: it lies where the gripper
        let go (forward kinematics), its old sightings forgotten."""
        self.observe_robot(pose, joints)
        fingers = [joints[n] for n in GRIPPER_JOINTS if n in joints]
        holding = bool(fingers) and sum(fingers) / len(fingers) > self.config.gripper_held_min_m
        if command >= 0.5 and holding and self._last_phrase is not None:
            self.memory.grasped(self._last_phrase)
        elif command < 0.5 and self.memory.held is not None:
            # the arm is still where it let go: that is where the object now is (it may roll off; a view corrects it)
            from vlm_agent.skills.perception import Detection

            at = None
            if all(j in joints for j in ARM_JOINTS):
                at = Detection(self.memory.held, self.arm.grasp_point(pose, [joints[j] for j in ARM_JOINTS]), self.odom_frame, None)
            self.memory.released(at)
        return None

    def shape(self, det) -> TargetShape:
        piece = self.furniture.piece(det.name)
        if piece is not None:
            return TargetShape(is_object=False, box=(piece.xy_min, piece.xy_max, piece.top_z))
        return TargetShape()

    def forget(self, phrase: str) -> None:
        """Drop the sighting of `phrase` (`RosSkills.pick` after a grasp that closed on nothing: the
        next call segments again instead of reaching for the same wrong point)."""
        with self._cond:
            if self.memory.forget(phrase):
                self._note(f"{phrase}: sighting forgotten (a grasp there closed on nothing)")

    def new_task(self) -> None:
        """A task starts (`RosSkills.reset`): with `forget_between_tasks`, forget every sighting and
        the held object. Why: a sighting from an earlier task may describe a world that has changed
        since (measured: in the simulator each episode is a new world, and a "cyan cylinder" from the
        previous episode, 0.54 m up on its table, was answered from memory in the next one)."""
        if self.config.forget_between_tasks:
            with self._cond:
                self.memory = ObjectMemory()
                self._last_phrase = None

    # -- subscriptions ----------------------------------------------------------------------------
    def _on_odom(self, msg) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        with self._cond:
            self._pose = (float(p.x), float(p.y), yaw_from_quaternion(q.x, q.y, q.z, q.w))

    def _on_label(self, msg) -> None:
        try:
            label = json.loads(msg.data)
        except ValueError:
            return
        if not isinstance(label, dict):
            return
        with self._cond:
            self._labels = (self._labels + [(time.monotonic(), label)])[-50:]
            self._cond.notify_all()

    # -- Perception -------------------------------------------------------------------------------
    def locate(self, phrase: str):
        from vlm_agent.skills.perception import Detection

        if not isinstance(phrase, str) or not phrase_key(phrase):
            raise SkillError("an object must be named by a non-empty string")
        if self.config.furniture_map:
            try:
                self._refresh_map()
            except ValueError as exc:
                raise SkillError(f"the furniture map is unusable: {exc}") from None
        furniture = self.furniture.locate(phrase)  # SkillError for furniture the map does not have
        if furniture is not None:
            self._note(f"{phrase}: map")
            return furniture
        if self.memory.holds(phrase):
            with self._cond:
                pose, joints = self._current_pose(), dict(self._joints)
            if pose is not None and all(j in joints for j in ARM_JOINTS):
                det = Detection(phrase, self.arm.grasp_point(pose, [joints[j] for j in ARM_JOINTS]), self.odom_frame, None)
                self._note(f"{phrase}: held, at {_xyz(det.position)}")
                return det
        self._last_phrase = phrase
        self._rejections = []
        det, reason = self._query(phrase)
        if det is not None:
            self._note(f"{phrase}: view, at {_xyz(det.position)}")
            return self._seen(phrase, det)
        remembered = self.memory.recall(phrase) if self.config.use_memory else None
        if remembered is not None:
            self._note(f"{phrase}: memory, at {_xyz(remembered.position)} ({reason})")
            return remembered
        stops = self.config.search_turn_stops
        if self._turn is None or stops <= 1:
            self._note(f"{phrase}: not found ({reason})")
            raise SkillError(f"the segmenter did not find '{phrase}' in view: {reason}")
        step, turned = 2 * math.pi / stops, 0.0
        try:
            for k in range(1, stops):
                self._turn(step)
                turned += step
                det, _ = self._query(phrase)
                if det is not None:
                    self._note(f"{phrase}: turned {k} x {math.degrees(step):.0f} deg, at {_xyz(det.position)}")
                    return self._seen(phrase, det)
        finally:
            if turned:
                self._turn(math.remainder(-turned, 2 * math.pi))  # back to the heading the search started from
        rejected = (f"; the attribute verifier rejected the mask in {len(self._rejections)} of them (last: {self._rejections[-1]})"
                    if self._rejections else "")
        self._note(f"{phrase}: not found after {stops} views{rejected}")
        raise ObjectNotFound(f"the segmenter found no '{phrase}' in any of {stops} views turning a full circle{rejected}")

    def visible(self) -> list:
        return []

    def locate_in_view(self, phrase: str):
        """The current view only (no map, memory or search): a Detection, or None when the segmenter
        sees no such object now (how `RosSkills.place_on` checks where a released object lies)."""
        det, _ = self._query(phrase)
        if det is not None:
            self.memory.remember(phrase, det)
        return det

    # -- internals --------------------------------------------------------------------------------
    def _note(self, line: str) -> None:
        self.log.append(line)
        self.log[:] = self.log[-200:]
        self.node.get_logger().info(f"locate {line}")

    def _seen(self, phrase: str, det):
        self.memory.remember(phrase, det)
        return det

    def _refresh_map(self) -> None:
        """(Re)load `furniture_map` when the file changed since it was read (a simulator writes each
        episode's furniture there; on a robot the file stays as it is)."""
        import os

        path = self.config.furniture_map
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ValueError(f"cannot read the furniture map {path}: {exc}") from None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._map_stamp:
            self.furniture = load_furniture_map(path)
            self._map_stamp = stamp

    def _current_pose(self):
        return self._pose_fn() if self._pose_fn is not None else self._pose

    def _query(self, phrase: str):
        """(Detection in odom or None, the reason when None) for the current view.

        Only a label of this query answers it (`segmentation/label` carries the query and the target),
        and, with `answer_frames_after_query`, only one of a camera frame stamped after the query was
        sent. Why: the node may still publish a result for the previous query, or segment a frame
        captured before the last turn (or, in a simulator, before the episode was reset), after the
        query left; measured through ROS with ground-truth masks, such answers put objects metres
        from where they are."""
        from vlm_agent.skills.perception import Detection

        if self.query_pub.get_subscription_count() < 1:
            raise SkillError("no segmentation node is listening on segmentation/query")
        asked = time.monotonic()
        asked_stamp = self.node.get_clock().now().nanoseconds * 1e-9
        text = " ".join(phrase.split())  # the node's validated query
        fresh_only = self.config.answer_frames_after_query

        def fresh(label) -> bool:
            stamp = label.get("stamp")
            return not fresh_only or (isinstance(stamp, (int, float)) and stamp >= asked_stamp)

        self.query_pub.publish(String(data=phrase))
        end = asked + self.config.io_timeout_s
        needed = self.config.not_in_view_labels
        with self._cond:
            while True:
                labels = [lb for t, lb in self._labels if t >= asked and lb.get("query") == text]
                errors = [lb for lb in labels if lb.get("error")]
                if errors:
                    raise SkillError(f"the segmenter could not segment '{phrase}': {str(errors[-1]['error'])[:200]}")
                stale = [lb for lb in labels if not fresh(lb)]
                labels = [lb for lb in labels if fresh(lb)]
                answers = [lb for lb in labels if _point(lb.get("target")) is not None]
                if answers:
                    point = _point(answers[0]["target"])
                    frame = str(answers[0].get("target_frame") or answers[0].get("frame_id") or "")
                    break
                empty = [lb for lb in labels if lb.get("target") is None]
                if len(empty) >= needed:
                    rejected = [lb for lb in empty if lb.get("rejected")]  # the node's attribute verifier emptied the mask
                    if rejected:
                        self._rejections.append(str(rejected[-1]["rejected"])[:200])
                        why = f"the attribute verifier rejected the mask: {str(rejected[-1]['rejected'])[:200]}"
                    else:
                        why = empty[-1].get("target_reason") or ("empty mask" if not empty[-1].get("area") else "no target")
                    return None, f"{len(empty)} frames without a target ({why})"
                left = end - time.monotonic()
                if left <= 0:
                    if stale and not labels:
                        # Only frames stamped before the query: on a robot, a camera clock that is not
                        # this node's (hardware time stamps, another machine) looks exactly like this.
                        behind = asked_stamp - max(float(lb.get("stamp") or 0.0) for lb in stale)
                        return None, (f"no answer within {self.config.io_timeout_s:g} s: {len(stale)} labels of this query, all of "
                                      f"frames stamped before it (the newest {behind:.2f} s before); if the camera's clock is "
                                      "not this node's, set answer_frames_after_query false")
                    return None, f"no answer within {self.config.io_timeout_s:g} s"
                self._cond.wait(min(left, 0.1))
            pose = self._current_pose()
        if frame == self.odom_frame:
            return Detection(phrase, point, self.odom_frame, None), ""
        if pose is None:
            raise SkillError("no odometry to place the segmenter's point in odom")
        rotation, translation = self.mount.optical_to_base()
        bx, by, bz = rotation @ np.asarray(point) + translation
        c, s = math.cos(pose[2]), math.sin(pose[2])
        return Detection(phrase, (pose[0] + c * bx - s * by, pose[1] + s * bx + c * by, float(bz)), self.odom_frame, None), ""
