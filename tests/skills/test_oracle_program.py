"""The manipulation oracle's skill program, as sandbox code, through SimSkills: success 1.00 on 10 val
episodes, with exactly the oracle's calls (ground-truth perception: an upper bound)."""
import pytest

from vlm_agent.evaluation.manip_oracle import ManipOracle
from vlm_agent.evaluation.manip_planners import oracle_program_code
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.skills.api import SkillCall
from vlm_agent.skills.perception import GROUND_TRUTH_LABEL
from vlm_agent.skills.sandbox import run_program
from vlm_agent.skills.sim_skills import SimSkills


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=32, height=32, render_depth=False))
    yield e
    e.close()


def test_oracle_program_succeeds_through_the_sandbox_and_the_skill_layer(env):
    successes = []
    for ep in make_episodes("manip", "val", 10, seed=0):
        env.reset(ep)
        skills = SimSkills(env)
        expected = [c.to_text() for c in ManipOracle(env).act()] + ["done()"]
        result = run_program(oracle_program_code(env), skills.bindings(), timeout_s=120.0)
        assert result.ok, result.error
        assert [c.to_text() for c in result.calls] == expected
        assert all(c.result.perception == GROUND_TRUTH_LABEL for c in result.calls)
        assert skills.done_called
        successes.append(env.manip_metrics()["success"])
    assert successes == [1.0] * 10


def test_the_legacy_skill_call_path_still_succeeds(env):
    """evaluation/rollouts.py's path (SkillCall lists through SkillAPI.execute) on the same layer."""
    for ep in make_episodes("manip", "val", 3, seed=0):
        env.reset(ep)
        results = SimSkills(env).run_program(ManipOracle(env).act() + [SkillCall("done")])
        assert all(r.success for r in results) and env.manip_metrics()["success"] == 1.0
