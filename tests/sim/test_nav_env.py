"""NavEnv kinematics, collisions, observations, and the navigation oracle's success on val."""
import math

import numpy as np
import pytest

from vlm_agent.actions import NavPrimitive
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.sim.metrics import aggregate_nav
from vlm_agent.sim.oracle import NavOracle


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=64, height=48))
    yield e
    e.close()


def test_primitives_move_the_base_and_change_the_image(env):
    ep = make_episodes("nav", "val", 1, seed=11)[0]
    obs = env.reset(ep)
    assert obs.rgb.shape == (48, 64, 3) and obs.rgb.dtype == np.uint8
    assert obs.depth.shape == (48, 64) and obs.depth.dtype == np.float32
    assert obs.instruction == ep.instruction and obs.step == 0 and not obs.done
    x, y, yaw = obs.pose
    turned = env.step(NavPrimitive.turn_left())
    assert turned.pose[2] == pytest.approx(math.remainder(yaw + math.radians(30), 2 * math.pi))
    assert not np.array_equal(turned.rgb, obs.rgb)
    env.set_pose(x, y, yaw)
    # walk forward until blocked: every step is 0.25 m unless a collision stops it early
    for _ in range(80):
        before = env.pose
        o = env.step(NavPrimitive.forward())
        moved = math.hypot(o.pose[0] - before[0], o.pose[1] - before[1])
        if o.collided:
            assert moved < 0.25 + 1e-9
            break
        assert moved == pytest.approx(0.25)
    assert o.collided, "a straight walk in a walled world must hit something"
    assert env.collision.clearance(o.pose[0], o.pose[1]) > 0.2


def test_stop_ends_the_episode(env):
    env.reset(make_episodes("nav", "val", 1, seed=12)[0])
    obs = env.step(NavPrimitive.stop())
    assert obs.done and env.stopped
    m = env.metrics()
    assert set(m) >= {"success", "spl", "navigation_error", "oracle_success", "trajectory_length"}
    assert m["trajectory_length"] == 0.0


def test_step_velocity_integrates_and_rejects_nan(env):
    ep = make_episodes("nav", "val", 1, seed=13)[0]
    env.reset(ep)
    x, y, yaw = env.pose
    env.step_velocity(0.0, 0.5, 1.0)
    assert env.pose[2] == pytest.approx(math.remainder(yaw + 0.5, 2 * math.pi))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            env.step_velocity(bad, 0.0, 0.1)
    assert env.pose[:2] == (x, y)


def test_oracle_success_on_val_sample(env):
    per = []
    for ep in make_episodes("nav", "val", 12, seed=0):
        env.reset(ep)
        oracle = NavOracle(env)
        while not env.done:
            env.step(oracle.act(), render=False)
        per.append(env.metrics())
    agg = aggregate_nav(per)
    assert agg["success_rate"] >= 0.95, agg
    assert agg["spl"] > 0.6, agg


def test_step_velocity_stops_at_walls_but_still_turns(env):
    ep = make_episodes("nav", "val", 1, seed=14)[0]
    env.reset(ep)
    x, y, yaw = env.pose
    for _ in range(100):  # 100 s at 0.5 m/s: far longer than any room
        env.step_velocity(0.5, 0.0, 1.0)
    assert env.collision.clearance(*env.pose[:2]) > 0.2
    assert env.collision.clearance(*env.pose[:2]) < 0.3  # stopped right at the obstacle
    x1, y1, yaw1 = env.pose
    blocked = env.step_velocity(0.5, 0.3, 0.5)
    assert env.pose[2] != yaw1 and env.collisions >= 1
    assert blocked or math.hypot(env.pose[0] - x1, env.pose[1] - y1) > 0


def test_oracle_recovers_from_states_a_learner_wanders_into(env):
    """Stateless expert (DAgger labels): after random detours it still reaches the goal."""
    from vlm_agent.evaluation.policies import RandomNavPolicy

    wander = RandomNavPolicy(seed=4, p_stop=0.0)
    for ep in make_episodes("nav", "val", 4, seed=9):
        env.reset(ep)
        for _ in range(15):
            env.step(wander.act(None), render=False)
        oracle = NavOracle(env)
        while not env.done:
            env.step(oracle.act(), render=False)
        assert env.metrics()["success"] == 1.0, ep.episode_id


def test_oracle_rollout_yields_labelled_observations(env):
    from vlm_agent.sim.oracle import nav_oracle_rollout

    ep = make_episodes("nav", "train", 1, seed=0)[0]
    pairs = list(nav_oracle_rollout(env, ep))
    assert pairs[-1][1] == NavPrimitive.stop() and env.metrics()["success"] == 1.0
    assert all(obs.rgb.shape == (48, 64, 3) for obs, _ in pairs)
    assert [obs.step for obs, _ in pairs] == list(range(len(pairs)))
