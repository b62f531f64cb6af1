"""Manipulation: skill program parsing, arm IK, grasp-attach approximation, and the oracle on val."""
import math

import numpy as np
import pytest

from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.sim.manip_oracle import ManipOracle
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
