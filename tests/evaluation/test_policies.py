"""The policy registry: lazy, every built-in policy builds and acts for its suites, clear errors."""
import numpy as np
import pytest

from vlm_agent.actions import NavPrimitive
from vlm_agent.evaluation.policies import POLICIES, make_policy, register_policy
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes
from vlm_agent.skills.api import SkillCall

BUILTIN = {"oracle": ("nav", "manip", "seg"), "random": ("nav", "manip", "seg"), "colour": ("seg",)}


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=32, height=32))
    yield e
    e.close()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_policies_build_and_act(env, name):
    for suite in BUILTIN[name]:
        ep = make_episodes(suite, "val", 1, seed=5)[0]
        policy = make_policy(name, suite, env=env, seed=1)
        obs = env.reset(ep)
        policy.reset(ep)
        out = policy.act(obs)
        if suite == "nav":
            assert isinstance(out, NavPrimitive)
        elif suite == "manip":
            assert all(isinstance(c, SkillCall) for c in out)
        else:
            assert out.shape == obs.rgb.shape[:2] and out.dtype == bool


def test_random_policy_is_deterministic_per_episode(env):
    ep = make_episodes("nav", "val", 1, seed=2)[0]
    runs = []
    for _ in range(2):
        p = make_policy("random", "nav", env=env)
        p.reset(ep)
        obs = env.reset(ep)
        runs.append([p.act(obs).kind for _ in range(20)])
    assert runs[0] == runs[1]


def test_registry_errors_and_context_passing(env):
    assert "navid" in POLICIES  # registered lazily: nothing imported until asked for
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("nope", "nav")
    with pytest.raises(ValueError, match="module:factory"):
        register_policy("bad", "no_colon")
    register_policy("broken", "vlm_agent.no_such_module:factory")
    with pytest.raises(ValueError, match="failed to import"):
        make_policy("broken", "nav")
    with pytest.raises(ValueError, match="privileged"):
        make_policy("oracle", "nav")  # no env
    # a factory that does not name suite/env/seed does not receive them
    register_policy("plain", "tests.evaluation.test_policies:_plain_factory")
    assert make_policy("plain", "nav", env=env, seed=3, extra=7) == {"model_dir": None, "extra": 7}
    del POLICIES["broken"], POLICIES["plain"]


def _plain_factory(model_dir=None, **kwargs):
    return {"model_dir": model_dir, **kwargs}
