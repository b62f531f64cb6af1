"""Manipulation: skill program parsing, arm IK, grasp-attach approximation, and the oracle on val."""
import math

import numpy as np
import pytest

from vlm_agent.evaluation.manip_oracle import ManipOracle
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.skills.api import SkillCall, parse_program, program_to_text
from vlm_agent.skills.sim_skills import SimSkills, arm_ik, L1, L2, WRIST_TO_GRASP


def test_parse_program_round_trip_and_rejects_code():
    prog = [SkillCall("pick", ("red cube",)), SkillCall("place_on", ("blue plate",))]
    assert parse_program(program_to_text(prog)) == prog
    for bad in ["import os", "pick(__import__('os'))", "fly('red cube')", "pick(x='a')", "pick('a'"]:
        with pytest.raises(ValueError):
            parse_program(bad)


def test_arm_ik_forward_consistency():
    for r, h in [(0.35, -0.2), (0.3, 0.39), (0.45, 0.0)]:
        s, e, w = arm_ik(r, h)
        wx = L1 * math.cos(s) + L2 * math.cos(s + e)
        wz = L1 * math.sin(s) + L2 * math.sin(s + e)
        assert (wx, wz - WRIST_TO_GRASP) == pytest.approx((r, h), abs=1e-9)
        assert s + e + w == pytest.approx(-math.pi / 2)


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=48, height=48, render_depth=False))
    yield e
    e.close()


def test_oracle_programs_succeed_on_val(env):
    episodes = make_episodes("manip", "val", 10, seed=0)
    successes = []
    for ep in episodes:
        env.reset(ep)
        results = SimSkills(env).run_program(ManipOracle(env).act())
        successes.append(env.manip_metrics()["success"])
        if successes[-1]:
            assert all(r.success for r in results)
    assert np.mean(successes) >= 0.95, successes
    assert {ep.task for ep in episodes} == {"place", "stack", "bring"}


def test_wrong_program_fails_and_reports(env):
    ep = next(e for e in make_episodes("manip", "val", 10, seed=0) if e.task == "place")
    env.reset(ep)
    skills = SimSkills(env)
    assert not skills.execute(SkillCall("place_on", ("table",))).success  # nothing held
    assert "no object" in skills.execute(SkillCall("pick", ("golden chalice",))).feedback
    target = env.world.object(ep.goal_objects[0])
    assert skills.execute(SkillCall("pick", (target.label,))).success
    assert env.held == target.name
    assert skills.execute(SkillCall("place_on", ("table",))).success
    assert env.manip_metrics()["success"] == 0.0  # on the table, not on the plate


def test_grasp_needs_closing_fingers_and_release_settles_on_support(env):
    ep = next(e for e in make_episodes("manip", "val", 10, seed=0) if e.task == "stack")
    env.reset(ep)
    skills = SimSkills(env)
    target, dest = (env.world.object(n) for n in ep.goal_objects)
    skills._drive_to(target.name)
    p = np.asarray(target.pos)
    # a gripper closed long before reaching the object does not catch it
    skills.close_gripper()
    skills._settle(1.0)
    skills._reach(p + (0, 0, 0.12))
    skills._reach(p)
    skills._settle(0.5)
    assert env.held is None
    # opening, then closing around it does
    skills.open_gripper()
    skills.close_gripper()
    assert env.held == target.name
    skills._reach(p + (0, 0, 0.2))
    assert env.world.object(target.name).pos[2] > p[2] + 0.15  # it came up with the gripper
    # released above the other cube, it lands on top of it
    skills._drive_to(dest.name)
    top = dest.pos[2] + dest.half_height
    skills._reach(np.array([dest.pos[0], dest.pos[1], top + target.half_height + 0.01]))
    skills.open_gripper()
    moved = env.world.object(target.name)
    assert env.held is None and moved.support == dest.name
    assert moved.pos[2] == pytest.approx(top + target.half_height)
    assert env.manip_metrics()["success"] == 1.0
