"""The observation-explainable expert: it goes for a goal only after the camera has seen it."""
from __future__ import annotations

import math

import pytest

from vlm_agent.actions import NavPrimitive
from vlm_agent.evaluation.policies import make_policy
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episode
from vlm_agent.sim.explorer import ExplorerExpert


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=64, height=64, render_depth=False))
    yield e
    e.close()


def _first(task: str, split: str = "val"):
    for i in range(200):
        ep = make_episode("nav", split, 3, i)
        if ep.task == task:
            return ep
    raise AssertionError(f"no {task} episode")


def _run(env, expert, ep):
    obs = env.reset(ep)
    expert.reset(ep)
    modes = []
    while not env.done:
        action = expert.act(obs)
        modes.append((expert.last_mode, env.current_goal in expert.seen_objects))
        obs = env.step(action)
    return modes, env.metrics()


@pytest.mark.parametrize("task", ["room", "sequence", "goto"])
def test_explores_until_it_sees_the_goal_then_succeeds(env, task):
    expert = ExplorerExpert(env)
    modes, m = _run(env, expert, _first(task))
    assert m["success"] == 1.0
    # Goal-directed moves happen only once the (current) goal was seen; never the privileged fallback.
    assert all(seen for mode, seen in modes if mode == "goal")
    assert "fallback" not in [mode for mode, _ in modes]
    if task == "room":  # the target is in the other room: it cannot be seen from the start
        assert modes[0][0] in ("look", "explore")


def test_room_hint_skips_the_start_room(env):
    ep = _first("room")
    hinted, plain = ExplorerExpert(env, room_hint=True), ExplorerExpert(env, room_hint=False)
    env.reset(ep)
    hinted.act(None)
    plain.act(None)
    world = env.world
    room = world.rooms[world.room_of(*ep.start_pose[:2])]
    inside = (env.grid.gx > room.x_min) & (env.grid.gx < room.x_max) & hinted.free
    assert hinted.seen_floor[inside].all() and not plain.seen_floor[inside].all()
    _, m_h = _run(env, ExplorerExpert(env, room_hint=True), ep)
    _, m_p = _run(env, ExplorerExpert(env, room_hint=False), ep)
    assert m_h["success"] == 1.0 and m_h["trajectory_length"] <= m_p["trajectory_length"] + 0.5


def test_room_target_is_unseen_at_the_start_and_seen_floor_grows(env):
    ep = _first("room")
    expert = ExplorerExpert(env, room_hint=False)
    obs = env.reset(ep)
    expert.act(obs)
    assert ep.goal_objects[-1] not in expert.seen_objects
    before = int(expert.seen_floor.sum())
    obs = env.step(NavPrimitive.turn_left())
    expert.act(obs)
    assert int(expert.seen_floor.sum()) > before
    # a new episode starts with an empty memory
    env.reset(_first("goto"))
    expert.act(None)
    assert int(expert.seen_floor.sum()) < before + 2000 and expert.fallbacks == 0


def test_labels_any_learner_state(env):
    """DAgger: after arbitrary (non-expert) moves the expert still returns a valid primitive, and its
    memory covers the views of the poses actually visited."""
    ep = _first("goto")
    expert = ExplorerExpert(env)
    obs = env.reset(ep)
    for a in [NavPrimitive.turn_right(), NavPrimitive.forward(), NavPrimitive.forward(), NavPrimitive.turn_right()]:
        assert isinstance(expert.act(obs), NavPrimitive)
        obs = env.step(a)
    x, y, yaw = env.pose
    view = expert._visible_cells(x, y, yaw)
    expert.act(obs)
    assert (expert.seen_floor | ~view).all()  # what is in view now is remembered as seen


def test_turn_gains_point_at_unseen_floor(env):
    ep = _first("goto")
    expert = ExplorerExpert(env)
    env.reset(ep)
    expert.act(None)
    gains = expert.turn_gains(*env.pose)
    assert gains[0] == 0  # the current view is already seen
    assert max(gains.values()) > 0
    assert set(gains) == set(range(-5, 7)) and math.isclose(expert._hfov, math.radians(60))


def test_registered_as_a_policy(env):
    policy = make_policy("explorer", "nav", env=env)
    ep = _first("goto")
    obs = env.reset(ep)
    policy.reset(ep)
    assert isinstance(policy.act(obs), NavPrimitive)
    with pytest.raises(ValueError):
        make_policy("explorer", "seg", env=env)
    assert make_policy("explorer", "nav", env=env, min_pixels=12).min_pixels == 12  # eval --policy-param min_pixels=12
    with pytest.raises(ValueError, match="unknown setting"):
        make_policy("explorer", "nav", env=env, min_pixel=12)
