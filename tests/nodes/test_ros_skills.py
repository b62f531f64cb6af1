"""The ROS skill adapter (nodes/ros_skills.py).

* Two processes: the embedded-sim graph (`vlm-agent up`: mujoco_sim on the manip suite +
  motion_executor + safety_supervisor) and this test, where the manipulation oracle's skill program
  runs through the sandbox with `RosSkills`' skills (ground-truth perception through the simulator
  mirror: an upper bound). Every skill acts only through topics; the simulator's own
  `mujoco_sim/result` scores each episode: success 1.00 on 10 val episodes, with `cmd_vel` finite
  and within the supervisor's limits.
* In-process: with nothing answering, a skill call is a failed result with the reason (a timeout,
  never an exception), `cancel` from another thread ends a waiting call at once, and the
  segmentation provider turns a camera-frame point into `odom` with the camera mounting.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from tests.ros_harness import spin_until, wait_for_subscribers


def _locate_while_spinning(perception, phrase, executor) -> dict:
    """{"det": Detection} or {"error": the SkillError's text} of `perception.locate(phrase)`, run on a
    thread while `executor` spins (the perception waits for labels the executor delivers)."""
    from vlm_agent.skills.api import SkillError

    out = {}

    def run():
        try:
            out["det"] = perception.locate(phrase)
        except SkillError as exc:
            out["error"] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert spin_until(executor, lambda: not thread.is_alive(), timeout=30)
    return out


@pytest.mark.ros
@pytest.mark.slow
def test_oracle_program_through_the_ros_adapter_succeeds_on_10_val_episodes():
    from vlm_agent.evaluation.manip_oracle import ManipOracle
    from vlm_agent.nodes.manip_client import run_oracle_program_ros
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    episodes = make_episodes("manip", "val", 10, seed=0)
    t0 = time.perf_counter()
    out = run_oracle_program_ros(episodes, logger=print)
    print(f"oracle program through ROS: success {out['success_rate']:.2f} on {out['episodes']} val episodes, "
          f"{out['sim_time_s']:.1f} s simulated in {time.perf_counter() - t0:.1f} s wall (graph start-up included)")
    failures = [(e["episode_id"], e["error"]) for e in out["per_episode"] if e["success"] != 1.0 or not e["program_ok"]]
    assert not failures, failures
    assert out["success_rate"] == 1.0 and out["episodes"] == 10
    assert out["upper_bound"] and out["perception"] == "ground_truth (upper bound)"
    env = NavEnv(SimConfig(width=16, height=16, render_depth=False))
    try:
        for ep, got in zip(episodes, out["per_episode"]):
            env.reset(ep)
            expected = [c.to_text() for c in ManipOracle(env).act()] + ["done()"]
            assert [c.split(" -> ")[0] for c in got["calls"]] == expected
            assert got["mirror_mismatches"] == 0
    finally:
        env.close()
    cmd = out["cmd_vel"]
    assert cmd["messages"] > 100 and cmd["non_finite"] == 0
    assert cmd["max_abs_linear"] <= 0.6 + 1e-6 and cmd["max_abs_angular"] <= 1.8 + 1e-6, cmd  # the supervisor's limits


class FakePerception:
    label = "fake"
    upper_bound = False

    def locate(self, phrase):
        from vlm_agent.skills.perception import Detection

        return Detection(phrase, (1.0, 0.0, 0.08), "odom", None)

    def visible(self):
        return []


@pytest.fixture
def spun(ros_context):
    """A node spun by its own executor on a background thread (the adapter waits on the calling
    thread; the test's helper node stays on `ros_executor`, spun by the test)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    node = Node("ros_skills_test", context=ros_context, namespace=f"/rs_{id(ros_context) % 100000}")
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    stop = threading.Event()

    def spin():
        while not stop.is_set() and ros_context.ok():
            executor.spin_once(timeout_sec=0.02)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    yield node
    stop.set()
    thread.join(timeout=5)
    executor.remove_node(node)
    node.destroy_node()
    executor.shutdown()


@pytest.mark.ros
def test_a_skill_with_nothing_answering_fails_as_feedback(spun):
    from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig
    from vlm_agent.skills.api import SkillCall

    skills = RosSkills(spun, FakePerception(), RosSkillsConfig(io_timeout_s=0.3, skill_timeout_s=5.0))
    t0 = time.monotonic()
    result = skills.execute(SkillCall("navigate_to", ("the red cube",)))
    assert not result.success and "timed out" in result.feedback and "odometry" in result.feedback, result.feedback
    assert result.perception == "fake" and time.monotonic() - t0 < 3.0
    result = skills.execute(SkillCall("close_gripper"))
    assert not result.success and "timed out" in result.feedback, result.feedback
    assert skills.execute(SkillCall("done")).success and skills.done_called
    assert skills.state()["base_pose"] is None and skills.state()["held"] is None
    assert skills.execute(SkillCall("place_on", ("table",))).feedback.endswith("not holding anything")


@pytest.mark.ros
def test_cancel_from_another_thread_ends_a_waiting_call_and_stops_the_base(spun, ros_node, ros_executor):
    import json

    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig
    from vlm_agent.skills.api import SkillCall

    ns = spun.get_namespace()
    plans = []
    # Stand-in for the motion executor: it receives plans and never reports (a stuck executor).
    listener = ros_node.create_subscription(String, f"{ns}/vlm_agent/plan", lambda m: plans.append(json.loads(m.data)), COMMAND_QOS)
    odom_pub = ros_node.create_publisher(__import__("nav_msgs.msg", fromlist=["Odometry"]).Odometry, f"{ns}/odom", 10)
    skills = RosSkills(spun, FakePerception(), RosSkillsConfig(io_timeout_s=5.0, plan_timeout_s=60.0, skill_timeout_s=60.0))
    assert wait_for_subscribers(odom_pub, timeout=15) and listener is not None
    odom_pub.publish(__import__("nav_msgs.msg", fromlist=["Odometry"]).Odometry())  # pose (0, 0, 0)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", skills.execute(SkillCall("navigate_to", ("the red cube",)))))
    thread.start()
    assert spin_until(ros_executor, lambda: len(plans) >= 1, timeout=15), "no plan reached the executor"
    t0 = time.monotonic()
    skills.cancel("operator stop")
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - t0 < 2.0
    result = out["result"]
    assert not result.success and "cancelled (operator stop)" in result.feedback, result.feedback
    assert spin_until(ros_executor, lambda: plans and [p["kind"] for p in plans[-1]["primitives"]] == ["stop"], timeout=5), plans
    assert plans[0]["raw_text"] == "navigate_to('the red cube')" and plans[0]["primitives"][0]["kind"] == "forward"
    # Cancelled until reset: the next call fails at once; after reset it runs again (and times out here).
    assert "cancelled" in skills.execute(SkillCall("navigate_to", ("the red cube",))).feedback
    skills.reset("new task")
    assert not skills.cancelled and skills.instruction == "new task"


@pytest.mark.ros
def test_segmentation_perception_puts_the_camera_point_into_odom(spun, ros_node, ros_executor):
    """The answer is the label of this query, of a frame stamped after it, moved into odom; a result
    for the previous query or of an older frame (published after the query left) is not taken."""
    import json

    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.ros_skills import RosSkillsConfig, SegmentationPerception
    from vlm_agent.safety.obstacle import CameraMount

    ns = spun.get_namespace()
    pose = (2.0, 1.0, math.pi / 2)
    perception = SegmentationPerception(spun, RosSkillsConfig(io_timeout_s=5.0), pose_fn=lambda: pose)
    # A stand-in segmenter: answers each query with a point 1.5 m in front of the camera, in its optical
    # frame, after a late result for another query and one of a frame captured before the query.
    answer = ros_node.create_publisher(String, f"{ns}/segmentation/label", COMMAND_QOS)
    queries, lag = [], {"s": 0.0}

    def on_query(msg):
        queries.append(msg.data)
        now = ros_node.get_clock().now().nanoseconds * 1e-9
        optical = "camera_color_optical_frame"
        if lag["s"]:  # a camera clock behind this node's: every frame looks older than the query
            for _ in range(3):
                answer.publish(String(data=json.dumps({"query": msg.data, "stamp": now - lag["s"], "area": 30, "target": [0.0, 0.0, 1.0],
                                                       "target_frame": optical})))
            return
        for query, stamp, z in (("the blue ball", now, 3.0), (msg.data, now - 5.0, 2.5), (msg.data, now + 0.01, 1.5)):
            answer.publish(String(data=json.dumps({"query": query, "stamp": stamp, "area": 30, "target": [0.0, 0.0, z],
                                                   "target_frame": optical})))

    ros_node.create_subscription(String, f"{ns}/segmentation/query", on_query, COMMAND_QOS)
    assert wait_for_subscribers(perception.query_pub, timeout=15) and wait_for_subscribers(answer, timeout=15)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("det", perception.locate("the red cube")))
    thread.start()
    assert spin_until(ros_executor, lambda: not thread.is_alive(), timeout=15)
    det = out["det"]
    assert queries == ["the red cube"] and det.name is None and det.frame == "odom" and det.label == "the red cube"
    rotation, translation = CameraMount(-0.07, 0.0, 0.95, 0.0, 0.349066, 0.0).optical_to_base()
    bx, by, bz = rotation @ np.array([0.0, 0.0, 1.5]) + translation  # ahead and down from the camera
    assert bx > 1.0 and bz < 0.95
    assert det.position == pytest.approx((pose[0] - by, pose[1] + bx, bz), abs=1e-6)  # yaw 90 degrees: base x -> odom y
    assert perception.visible() == [] and not perception.upper_bound
    # a camera whose stamps lag this node's clock: only stale labels, and a reason that says so
    lagging = SegmentationPerception(spun, RosSkillsConfig(io_timeout_s=1.0), pose_fn=lambda: pose)
    assert wait_for_subscribers(lagging.query_pub, timeout=15)
    lag["s"], late = 3.0, {}
    thread = threading.Thread(target=lambda: late.setdefault("answer", lagging._query("the blue ball")))
    thread.start()
    assert spin_until(ros_executor, lambda: not thread.is_alive(), timeout=15)
    det, why = late["answer"]
    assert det is None and "all of frames stamped before it" in why and "answer_frames_after_query false" in why


@pytest.mark.ros
def test_segmentation_perception_searches_remembers_and_follows_the_grasp(spun, ros_node, ros_executor, tmp_path):
    """Furniture from the map (never queried), the search turning in place when the view has no
    target (answered fast by the node's labels), the return to the start heading, memory when the
    view misses a seen object, the held object at the grasp point, forgotten once released, and an
    error label as a clear SkillError."""
    import json

    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig, SegmentationPerception
    from vlm_agent.skills.api import SkillError
    from vlm_agent.skills.arm import ARM_JOINTS, ARM_STOW, DEFAULT_ARM, GRIPPER_JOINTS

    ns = spun.get_namespace()
    fmap = tmp_path / "map.yaml"
    fmap.write_text("furniture:\n  - {name: table_0, kind: table, centre: [3.0, 0.0], size: [1.0, 0.6], top_z: 0.45}\n")
    robot = {"yaw": 0.0}
    perception = SegmentationPerception(spun, RosSkillsConfig(io_timeout_s=5.0, furniture_map=str(fmap)),
                                        pose_fn=lambda: (0.0, 0.0, robot["yaw"]))
    turns = []

    def turn(angle):
        turns.append(round(math.degrees(angle)))
        robot["yaw"] = math.remainder(robot["yaw"] + angle, 2 * math.pi)

    perception.bind_turn(turn)
    # A stand-in segmenter: the red cube is 2 m to the left (odom +y); it answers in odom when the camera
    # faces it (within 30 degrees), else with empty-mask labels; "broken" gets an error label.
    labels = ros_node.create_publisher(String, f"{ns}/segmentation/label", COMMAND_QOS)
    queries = []

    def on_query(msg):
        queries.append((msg.data, round(math.degrees(robot["yaw"]))))
        if msg.data == "broken":
            labels.publish(String(data=json.dumps({"query": msg.data, "error": "model call failed: boom"})))
            return
        now = ros_node.get_clock().now().nanoseconds * 1e-9
        if msg.data == "red cube" and abs(math.remainder(robot["yaw"] - math.pi / 2, 2 * math.pi)) < math.radians(30):
            labels.publish(String(data=json.dumps({"query": msg.data, "stamp": now, "area": 40, "target": [0.0, 2.0, 0.08],
                                                   "target_frame": "odom"})))
            return
        for _ in range(3):
            labels.publish(String(data=json.dumps({"query": msg.data, "stamp": now, "area": 0, "target": None,
                                                   "target_reason": "empty mask"})))

    ros_node.create_subscription(String, f"{ns}/segmentation/query", on_query, COMMAND_QOS)
    assert wait_for_subscribers(perception.query_pub, timeout=15) and wait_for_subscribers(labels, timeout=15)

    def locate(phrase):
        return _locate_while_spinning(perception, phrase, ros_executor)

    table = locate("the table")["det"]
    assert table.name == "table_0" and table.position == (3.0, 0.0, 0.45) and queries == []  # from the map
    assert perception.shape(table).box == ((2.5, -0.3), (3.5, 0.3), 0.45) and not perception.shape(table).is_object
    assert "no object matches" in locate("the sofa")["error"]
    from vlm_agent.skills.object_memory import FurniturePiece, write_furniture_map

    write_furniture_map(str(fmap), [FurniturePiece("sofa_3", "sofa", (-3.0, -1.0), (-2.0, 0.0), 0.4)])  # the next room's map
    assert locate("the sofa")["det"].name == "sofa_3" and "no object matches" in locate("the table")["error"]
    fmap.write_text("furniture: 3")
    assert "the furniture map is unusable" in locate("the table")["error"]
    write_furniture_map(str(fmap), [FurniturePiece("table_0", "table", (2.5, -0.3), (3.5, 0.3), 0.45)])
    t0 = time.monotonic()
    det = locate("red cube")["det"]
    assert time.monotonic() - t0 < 4.0  # "not in view" from the labels, not from the 5 s timeout
    assert det.position == pytest.approx((0.0, 2.0, 0.08)) and perception.shape(det).is_object
    assert turns == [45, 45, -90] and robot["yaw"] == pytest.approx(0.0, abs=1e-9)  # found at 90 degrees, turned back
    assert [q for q in queries] == [("red cube", 0), ("red cube", 45), ("red cube", 90)]
    assert locate("the red cube")["det"] == det and turns == [45, 45, -90]  # not in view: remembered
    assert perception.log[-1].startswith("the red cube: memory")
    perception.forget("red cube")  # a grasp there missed: the next call looks again, from scratch
    assert perception.log[-1] == "red cube: sighting forgotten (a grasp there closed on nothing)"
    assert locate("red cube")["det"] == det and turns == [45, 45, -90, 45, 45, -90]
    # grasped: the grasp point (forward kinematics), not a query; released: forgotten, searched again
    joints = {**dict(zip(ARM_JOINTS, ARM_STOW)), **{n: 0.03 for n in GRIPPER_JOINTS}}
    perception.observe_gripper(1.0, (0.0, 0.0, 0.0), joints)
    n = len(queries)
    held = locate("red cube")["det"]
    assert len(queries) == n and held.position == pytest.approx(DEFAULT_ARM.grasp_point((0.0, 0.0, 0.0), ARM_STOW))
    perception.observe_gripper(0.0, (0.0, 0.0, 0.0), joints)  # let go where the grasp point is: remembered there
    n = len(queries)
    assert locate("red cube")["det"].position == pytest.approx(held.position) and perception.log[-1].startswith("red cube: memory")
    assert len(queries) == n + 1  # the view first (not there), then memory, no search
    assert "could not segment 'broken': model call failed: boom" in locate("broken")["error"]
    # the current view only (place_on's check after a release): no memory, no turning
    n_turns = len(turns)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("seen", perception.locate_in_view("red cube")))
    thread.start()
    assert spin_until(ros_executor, lambda: not thread.is_alive(), timeout=15)
    assert out["seen"] is None and len(turns) == n_turns
    lost = locate("green ball")["error"]
    assert "found no 'green ball' in any of 8 views" in lost and robot["yaw"] == pytest.approx(0.0, abs=1e-9)
    assert turns[-8:] == [45] * 8  # seven turns, then the short way back to the start heading: on round
    # without a way to turn (no skill adapter bound) a miss is an error at once
    still = SegmentationPerception(spun, RosSkillsConfig(io_timeout_s=5.0), pose_fn=lambda: (0.0, 0.0, 0.0))
    assert wait_for_subscribers(still.query_pub, timeout=15)
    perception = still
    assert "did not find 'green ball' in view: 3 frames without a target (empty mask)" in locate("green ball")["error"]
    skills = RosSkills(spun, still, RosSkillsConfig(io_timeout_s=1.0))
    try:
        assert still._turn == skills._turn_in_place  # the adapter lends its base to the search
        # a new task forgets every sighting (forget_between_tasks, the default), or keeps them when told to
        from vlm_agent.skills.perception import Detection

        still.memory.remember("red cube", Detection("red cube", (0.0, 2.0, 0.08), "odom", None))
        still.memory.grasped("red cube")
        skills.reset("the next task")
        assert still.memory.recall("red cube") is None and still.memory.held is None
        still.config.forget_between_tasks = False
        still.memory.remember("red cube", Detection("red cube", (0.0, 2.0, 0.08), "odom", None))
        skills.reset("the task after")
        assert still.memory.recall("red cube").position == (0.0, 2.0, 0.08)
    finally:
        skills.destroy()


@pytest.mark.ros
def test_segmentation_perception_counts_a_rejected_mask_as_not_in_view(spun, ros_node, ros_executor):
    """Labels the segmenter node's attribute verifier emptied (`source: rejected`, area 0, no target,
    `rejected`: why) are "not in this view": the search turns on, and the verifier's reason reaches
    the not-found message (with and without a way to turn)."""
    import json

    from std_msgs.msg import String

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.ros_skills import RosSkillsConfig, SegmentationPerception
    from vlm_agent.skills.api import SkillError

    ns = spun.get_namespace()
    reason = "the mask shows a red cube, not a red ball (match 0.00)"
    labels = ros_node.create_publisher(String, f"{ns}/segmentation/label", COMMAND_QOS)

    def on_query(msg):
        now = ros_node.get_clock().now().nanoseconds * 1e-9
        for _ in range(3):
            labels.publish(String(data=json.dumps({"query": msg.data, "stamp": now, "area": 0, "score": 0.0, "source": "rejected",
                                                   "target": None, "rejected": reason, "rejected_area": 90,
                                                   "target_reason": f"the attribute verifier rejected the mask: {reason}"})))

    ros_node.create_subscription(String, f"{ns}/segmentation/query", on_query, COMMAND_QOS)
    perception = SegmentationPerception(spun, RosSkillsConfig(io_timeout_s=5.0, search_turn_stops=4), pose_fn=lambda: (0.0, 0.0, 0.0))
    turns = []
    perception.bind_turn(turns.append)
    assert wait_for_subscribers(perception.query_pub, timeout=15) and wait_for_subscribers(labels, timeout=15)

    def locate():
        return _locate_while_spinning(perception, "red ball", ros_executor)

    t0 = time.monotonic()
    lost = locate()["error"]
    assert time.monotonic() - t0 < 4.0 and len(turns) == 4  # three turns and back: answered by the labels, not the timeout
    assert "found no 'red ball' in any of 4 views" in lost and f"rejected the mask in 4 of them (last: {reason})" in lost
    assert "rejected the mask in 4 of them" in perception.log[-1]
    perception.bind_turn(None)  # no way to turn: the first view's reason is the error
    assert f"did not find 'red ball' in view: 3 frames without a target (the attribute verifier rejected the mask: {reason})" \
        in locate()["error"]


@pytest.mark.ros
def test_map_mode_plans_on_the_map_topic(spun, ros_node, ros_executor):
    from nav_msgs.msg import OccupancyGrid

    from vlm_agent.nodes.base import LATCHED_QOS
    from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig
    from vlm_agent.skills.approach import NavTarget
    from vlm_agent.skills.grid_navigator import GridNavigator

    ns = spun.get_namespace()
    pub = ros_node.create_publisher(OccupancyGrid, f"{ns}/map", LATCHED_QOS)
    skills = RosSkills(spun, FakePerception(), RosSkillsConfig(navigation="map"))
    try:
        assert isinstance(skills.navigator, GridNavigator) and skills._map is None
        target = NavTarget("red cube", (5.0, 1.0, 0.08), 0.45)
        assert skills.navigator.plan((1.0, 1.0, 0.0), target)[0].kind == "forward"  # no map yet: straight at it
        msg = OccupancyGrid()  # 6 x 4 m at 10 cm, a wall across x = 3 m up to y = 3 m
        msg.header.frame_id = "odom"
        msg.info.resolution, msg.info.width, msg.info.height = 0.1, 60, 40
        msg.info.origin.orientation.w = 1.0
        cells = np.zeros((40, 60), np.int8)
        cells[:30, 29:31] = 100
        msg.data = cells.ravel().tolist()
        pub.publish(msg)
        assert spin_until(ros_executor, lambda: skills._map is not None, timeout=10)
        assert skills._map.occupied[10, 30] and not skills._map.occupied[35, 30]
        first = skills.navigator.plan((1.0, 1.0, 0.0), target)
        assert first[0].kind == "turn_left"  # round the wall's end (y > 3 m), not straight through it
        assert max(y for _, y in skills.navigator.last_path) > 3.0
    finally:
        skills.destroy()


@pytest.mark.ros
def test_nav2_mode_sends_one_goal_at_the_standoff_facing_the_target(spun, ros_node, ros_executor):
    from geometry_msgs.msg import PoseStamped
    from nav_msgs.msg import Odometry

    from vlm_agent.nodes.base import COMMAND_QOS
    from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig
    from vlm_agent.sensors.frames import yaw_from_quaternion
    from vlm_agent.skills.api import SkillCall
    from vlm_agent.skills.arm import REACH_STANDOFF_M

    ns = spun.get_namespace()
    odom_pub = ros_node.create_publisher(Odometry, f"{ns}/odom", 10)
    goals = []

    def nav2(goal):  # a stand-in Nav2: the base arrives where it was sent
        goals.append(goal)
        odom = Odometry()
        odom.pose.pose = goal.pose
        odom_pub.publish(odom)

    ros_node.create_subscription(PoseStamped, f"{ns}/goal_pose", nav2, COMMAND_QOS)
    skills = RosSkills(spun, FakePerception(), RosSkillsConfig(navigation="nav2", io_timeout_s=5.0, skill_timeout_s=20.0))
    assert wait_for_subscribers(odom_pub, timeout=15)
    start = Odometry()
    start.pose.pose.position.x = -2.0  # 3 m behind the object at (1, 0), facing it
    odom_pub.publish(start)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("result", skills.execute(SkillCall("navigate_to", ("the red cube",)))))
    thread.start()
    assert spin_until(ros_executor, lambda: not thread.is_alive(), timeout=20)
    result = out["result"]
    assert result.success and result.feedback == "at the red cube", result.feedback
    assert len(goals) == 1 and goals[0].header.frame_id == "odom"
    g = goals[0].pose
    assert (g.position.x, g.position.y) == pytest.approx((1.0 - REACH_STANDOFF_M, 0.0), abs=1e-6)
    assert yaw_from_quaternion(g.orientation.x, g.orientation.y, g.orientation.z, g.orientation.w) == pytest.approx(0.0, abs=1e-6)


def test_placement_outcome_without_supports():
    """place_on through a position-only perception: the camera decides when it sees the object,
    else where the gripper let go; an empty gripper or an object seen elsewhere is a failure."""
    from vlm_agent.nodes.ros_skills import placement_outcome, rests_on
    from vlm_agent.skills.api import SkillError
    from vlm_agent.skills.approach import TargetShape
    from vlm_agent.skills.perception import Detection

    table = Detection("table", (2.0, 1.0, 0.45), "odom", "table_0")
    box = TargetShape(is_object=False, box=((1.5, 0.7), (2.5, 1.3), 0.45))
    cube = Detection("green cube", (3.0, 0.0, 0.08))
    assert rests_on((2.2, 1.1, 0.5), table.position, box) and not rests_on((2.6, 1.1, 0.5), table.position, box)
    assert rests_on((3.05, 0.0, 0.24), cube.position, TargetShape()) and not rests_on((3.2, 0.0, 0.24), cube.position, TargetShape())
    on_table = Detection("red cube", (2.1, 1.0, 0.53))
    assert placement_outcome("red cube", table, box, seen=on_table) == ("red cube is on table", "camera")
    with pytest.raises(SkillError, match=r"red cube is not on table after release \(seen at \(2.10, 1.60, 0.08\)\)"):
        placement_outcome("red cube", table, box, seen=Detection("red cube", (2.1, 1.6, 0.08)), released_at=(2.1, 1.0, 0.53))
    assert placement_outcome("red cube", table, box, released_at=(2.1, 1.0, 0.53)) == ("red cube is on table", "released over it (not in view)")
    feedback, verified_by = placement_outcome("red cube", table, box, released_at=(2.7, 1.0, 0.53))
    assert feedback.startswith("red cube released near table (not verified") and verified_by == ""
    with pytest.raises(SkillError, match="no longer in the gripper"):
        placement_outcome("red cube", table, box)
    assert placement_outcome("yellow cube", cube, TargetShape(), released_at=(3.02, 0.01, 0.25))[0] == "yellow cube is on green cube"


@pytest.mark.ros
def test_a_miss_everywhere_here_is_searched_for_from_places_on_the_map(spun, ros_node, ros_executor):
    """`ObjectNotFound` from the provider: the adapter picks places on the map topic's grid, drives to
    them with the map's navigator (whatever `navigation` says) and asks again there; what it found
    is the answer. Without a map, or with search_places 0, the miss is reported as it was; an absent
    object fails after every place, and a new task forgets the places searched."""
    from nav_msgs.msg import OccupancyGrid

    from vlm_agent.nodes.base import LATCHED_QOS
    from vlm_agent.nodes.ros_skills import RosSkills, RosSkillsConfig
    from vlm_agent.skills.api import ObjectNotFound
    from vlm_agent.skills.grid_navigator import GridNavigator
    from vlm_agent.skills.perception import Detection

    robot = {"pose": (1.0, 1.0, 0.0)}

    class SeesOnlyFromTheFarSide:
        """Finds the red cube (at x 5.5, y 3.5) only from x > 4 m; never finds anything else."""

        label, upper_bound = "far-side", False
        asked: list = []

        def locate(self, phrase):
            self.asked.append((phrase, robot["pose"][:2]))
            if phrase == "red cube" and robot["pose"][0] > 4.0:
                return Detection("red cube", (5.5, 3.5, 0.08), "odom", None)
            raise ObjectNotFound(f"the segmenter found no '{phrase}' in any of 8 views turning a full circle")

        def visible(self):
            return []

    def make(config):
        skills = RosSkills(spun, perception, config)
        skills._observe = lambda block=True: None
        skills.pose = lambda: robot["pose"]
        drives = []

        def drive(target, raw_text, navigator=None):
            drives.append((target.position[:2], navigator))
            robot["pose"] = (target.position[0], target.position[1], 0.0)

        skills._drive_to = drive
        skills._face = lambda point, raw_text: drives.append(("face", tuple(point)))
        return skills, drives

    perception = SeesOnlyFromTheFarSide()
    ns = spun.get_namespace()
    skills, drives = make(RosSkillsConfig(search_places=2))
    try:
        assert not isinstance(skills.navigator, GridNavigator)  # navigation: executor
        with pytest.raises(ObjectNotFound, match="no map to pick other places"):
            skills._locate("red cube")
        assert drives == []
        pub = ros_node.create_publisher(OccupancyGrid, f"{ns}/map", LATCHED_QOS)
        msg = OccupancyGrid()  # 8 x 5 m at 10 cm, walls round the edge
        msg.header.frame_id = "odom"
        msg.info.resolution, msg.info.width, msg.info.height = 0.1, 80, 50
        msg.info.origin.orientation.w = 1.0
        cells = np.zeros((50, 80), np.int8)
        cells[:2, :] = cells[-2:, :] = cells[:, :2] = cells[:, -2:] = 100
        msg.data = cells.ravel().tolist()
        pub.publish(msg)
        assert spin_until(ros_executor, lambda: skills._map is not None, timeout=10)
        det = skills._locate("red cube")
        assert det.position == (5.5, 3.5, 0.08)
        # it turns along the path first (a search may start facing an object the map does not hold)
        assert drives[0][0] == "face" and 0.4 <= math.dist(drives[0][1], (1.0, 1.0)) <= 0.7
        faced = math.atan2(drives[0][1][1] - 1.0, drives[0][1][0] - 1.0)
        drives[:] = [d for d in drives if d[0] != "face"]
        assert len(drives) == 1 and drives[0][0][0] > 4.0 and drives[0][1] is skills._search_navigator
        place = drives[0][0]
        assert abs(math.remainder(faced - math.atan2(place[1] - 1.0, place[0] - 1.0), 2 * math.pi)) < math.radians(30)
        assert isinstance(skills._search_navigator, GridNavigator) and skills.searched_from == [(1.0, 1.0)]
        robot["pose"] = (1.0, 1.0, 0.0)
        with pytest.raises(ObjectNotFound, match="nor from 2 other places on the map$"):
            skills._locate("green ball")
        drives[:] = [d for d in drives if d[0] != "face"]
        assert len(skills.searched_from) == 4 and len(drives) == 3
        assert math.dist(drives[1][0], drives[2][0]) >= 1.5 and min(math.dist(d[0], (1.0, 1.0)) for d in drives) >= 1.5
        skills.reset("the next task")
        assert skills.searched_from == []
    finally:
        skills.destroy()
    robot["pose"] = (1.0, 1.0, 0.0)
    still, drives = make(RosSkillsConfig(search_places=0))
    try:
        with pytest.raises(ObjectNotFound, match="turning a full circle$"):
            still._locate("red cube")
        assert drives == [] and not any(s.topic_name.endswith("/map") for s in still._subs)
    finally:
        still.destroy()
