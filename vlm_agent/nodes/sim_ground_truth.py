"""Ground truth of the embedded simulator for the ROS skill adapter: an upper bound, labelled so.

`mujoco_sim` publishes the robot (odometry, joint states, camera) but nothing about the objects, so
where things are is read the way the in-process `GroundTruthPerception` reads it: from the episode's
world spec, in a local `NavEnv` mirror loaded with the simulator's current episode (its id, from the
`mujoco_sim/result` service, names the generator's `suite-split-seed-index`). The mirror is kept in
step from what the robot reports over ROS: the base pose from `odom` and the arm from
`joint_states` before every query, and every gripper command replayed on it after the robot's
gripper has settled (the same attach-on-close and settle code as the simulator, at the same grasp
point), so held objects and where released ones land follow the simulator's. Whether the robot's
fingers stopped on something is checked against the mirror's grasp (`mismatches` counts
disagreements; the robot's joint states win in the adapter).

`SimGroundTruth` implements the adapter's optional perception hooks (`shape`, `observe_robot`,
`observe_gripper`, `supports`, `support_of`, `label_of`, `half_height_of`), and `oracle_navigator()`
the navigation oracle's privileged cost field for the far part of an approach (as `SimSkills`
drives), ending with the map-free final approach. The same mirror serves the privileged oracle
backends of the task planner (`evaluation/manip_planners.py`) and the oracle skill program.

This module imports no rclpy: the service call is the caller's (`load_episode_id`).
"""
from __future__ import annotations

import threading

from vlm_agent.skills.approach import NavTarget, StraightLineNavigator, TargetShape, merge_primitives
from vlm_agent.skills.arm import ARM_JOINTS
from vlm_agent.skills.perception import GroundTruthPerception

FAR_MARGIN_M = 0.35  # beyond standoff + this, the oracle's cost field drives; closer, the straight final approach


def episode_from_id(episode_id: str):
    """The episode `suite-split-seed-index` (the simulator's id) rebuilt by the episode generator."""
    from vlm_agent.sim.episodes import make_episode

    try:
        suite, split, seed, index = episode_id.rsplit("-", 3)
        return make_episode(suite, split, int(seed), int(index))
    except ValueError:
        raise ValueError(f"episode id {episode_id!r} is not suite-split-seed-index") from None


class SimGroundTruth:
    """A `Perception` provider (label "ground_truth (upper bound)") over a mirror of the simulator.

    width/height/vertical_fov_deg: the simulator node's camera (for `visible()`'s field of view).
    Thread-safe: every method takes the mirror's lock.
    """

    upper_bound = True

    def __init__(self, width: int = 320, height: int = 240, vertical_fov_deg: float = 60.0):
        from vlm_agent.sim.env import NavEnv, SimConfig

        self.env = NavEnv(SimConfig(width=width, height=height, vertical_fov_deg=vertical_fov_deg, render_depth=False))
        self._truth = GroundTruthPerception(self.env)
        self.label = self._truth.label
        self.lock = threading.RLock()
        self.episode = None
        self.mismatches = 0

    # -- episode --------------------------------------------------------------------------------
    def load_episode_id(self, episode_id: str):
        """Reset the mirror to the simulator's episode (call after every simulator reset)."""
        with self.lock:
            episode = episode_from_id(episode_id)
            if episode.episode_id != episode_id:
                raise ValueError(f"rebuilt episode {episode.episode_id}, expected {episode_id}")
            self.env.reset(episode)
            # reset() renders a first observation, which opens a GL context current on this thread;
            # the mirror never renders again, and a context must be released on the thread that made
            # it (closing it later from another thread fails with EGL_BAD_ACCESS).
            self.env.close()
            self.episode = episode
            return episode

    def _require(self):
        from vlm_agent.skills.api import SkillError

        if self.episode is None:
            raise SkillError("the ground-truth mirror has no episode (the simulator's episode id is unknown)")

    # -- robot state from ROS -------------------------------------------------------------------
    def observe_robot(self, pose, joints: dict) -> None:
        """Base pose (x, y, yaw) in odom and joint positions by name, as the robot reports them."""
        with self.lock:
            if self.episode is None:
                return
            self.env.set_pose(*pose)
            if self.env.held is not None:
                self._sync_arm(joints)

    def _sync_arm(self, joints: dict, seconds: float = 0.0) -> None:
        if all(j in joints for j in ARM_JOINTS):
            self.env.set_arm_targets([joints[j] for j in ARM_JOINTS])
        # The position servos need a little time to get there; a held object follows the grasp point.
        self.env.step_physics(max(seconds, self.env.model.opt.timestep))

    def observe_gripper(self, command: float, pose, joints: dict):
        """Replay a settled gripper command; returns the scene id now held (None if nothing)."""
        with self.lock:
            if self.episode is None:
                return None
            self.env.set_pose(*pose)
            self._sync_arm(joints, 1.0)
            self.env.set_gripper(command)
            self.env.step_physics(0.4)
            fingers = [joints[j] for j in ("gripper_left", "gripper_right") if j in joints]
            robot_holds = bool(fingers) and command >= 0.5 and sum(fingers) / len(fingers) > 0.01
            if command >= 0.5 and robot_holds != (self.env.held is not None):
                self.mismatches += 1
            return self.env.held

    # -- Perception protocol and the adapter's hooks --------------------------------------------
    def locate(self, phrase: str):
        with self.lock:
            self._require()
            return self._truth.locate(phrase)

    def visible(self) -> list:
        with self.lock:
            self._require()
            return self._truth.visible()

    def shape(self, det) -> TargetShape:
        with self.lock:
            world = self.env.world
            try:
                obj = world.object(det.name)
                return TargetShape(True, obj.half_height, None, obj.shape != "plate")
            except KeyError:
                box = world.furniture_piece(det.name)
                return TargetShape(False, None, (box.xy_min, box.xy_max, box.top_z), False)

    def label_of(self, name: str) -> str:
        with self.lock:
            try:
                return self.env.world.object(name).label
            except KeyError:
                try:
                    return self.env.world.furniture_piece(name).kind
                except KeyError:
                    return name

    def half_height_of(self, name: str) -> float | None:
        with self.lock:
            try:
                return self.env.world.object(name).half_height
            except KeyError:
                return None

    def support_of(self, name: str) -> str | None:
        with self.lock:
            try:
                return self.env.world.object(name).support
            except KeyError:
                return None

    def supports(self) -> dict:
        """{"support/<label>": what it rests on} as `SimSkills.state()` reports it."""
        with self.lock:
            if self.episode is None:
                return {}
            objects = self.env.world.objects
            labels = [o.label for o in objects]
            out = {}
            for o in objects:
                key = o.label if labels.count(o.label) == 1 else o.name
                out[f"support/{key}"] = o.support if o.support in ("floor", "gripper") else self.label_of(o.support)
            return out

    def metrics(self) -> dict:
        """The mirror's `manip_metrics()` (for comparison with the simulator's own)."""
        with self.lock:
            return self.env.manip_metrics()

    def oracle_navigator(self, **final_kwargs) -> "OracleNavigator":
        return OracleNavigator(self, StraightLineNavigator(**final_kwargs))

    def close(self) -> None:
        self.env.close()


class OracleNavigator:
    """The navigation oracle's privileged lookahead on the mirror's cost field for the far part of an
    approach (a chunk of its moves, simulated ahead on the mirror's collision model and merged),
    then `final`'s straight approach within `FAR_MARGIN_M` of the standoff (as `SimSkills` drives)."""

    def __init__(self, truth: SimGroundTruth, final: StraightLineNavigator | None = None, chunk: int = 6):
        self.truth = truth
        self.final = final or StraightLineNavigator()
        self.chunk = chunk

    def plan(self, pose, target: NavTarget) -> list:
        from vlm_agent.actions import NavPrimitive
        from vlm_agent.geometry import wrap_angle
        from vlm_agent.sim.oracle import NavOracle

        name = target.name
        if name is None or target.gap(pose) <= FAR_MARGIN_M:
            return self.final.plan(pose, target)
        truth = self.truth
        with truth.lock:
            env = truth.env
            saved = env.pose
            oracle = NavOracle(env, stop_radius_m=target.standoff_m + FAR_MARGIN_M)
            x, y, yaw = (float(v) for v in pose)
            moves = []
            try:
                for _ in range(self.chunk):
                    env.set_pose(x, y, yaw)
                    if env.distance_to(name) <= target.standoff_m + FAR_MARGIN_M:
                        break
                    move = oracle.move_towards(name, radius=target.standoff_m + 0.25)
                    if move.kind == "forward":
                        x, y, travelled, _collided = env.collision.sweep(x, y, yaw, move.distance_m)
                        if travelled < 0.02:
                            break
                        move = NavPrimitive.forward(round(travelled * 100.0, 1))
                    else:
                        yaw = wrap_angle(yaw + move.yaw_rad)
                    moves.append(move)
            finally:
                env.set_pose(*saved)
        return merge_primitives(moves) if moves else self.final.plan(pose, target)
