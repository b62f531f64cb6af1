"""`--policy palme` / `--policy octopus` on the manip suite: the loops as closed-loop eval policies
over a tiny untrained saved model (runs end to end and reports; success ~0) and over the oracle
backends (1.00), through the same `evaluate` as every suite, with seen / held-out reporting."""
from __future__ import annotations

import pytest

from vlm_agent.evaluation.manip_planners import ManipPlannerPolicy
from vlm_agent.evaluation.policies import POLICIES, make_policy
from vlm_agent.evaluation.rollouts import evaluate
from vlm_agent.sim.env import NavEnv, SimConfig
from vlm_agent.sim.episodes import make_episodes


@pytest.fixture(scope="module")
def env():
    e = NavEnv(SimConfig(width=32, height=32, render_depth=False))
    yield e
    e.close()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    from tests.helpers.tiny_manip import save_untrained_manip_model

    root = tmp_path_factory.mktemp("manip_models")
    return {"palme": save_untrained_manip_model(root / "palme", "palme"), "octopus": save_untrained_manip_model(root / "octopus", "octopus", max_new_tokens=32)}


@pytest.mark.parametrize("style", ["palme", "octopus"])
def test_oracle_backend_through_the_eval_policy_scores_one(env, style):
    assert style in POLICIES
    policy = make_policy(style, "manip", backend="oracle", env=env)
    result = evaluate("manip", policy, make_episodes("manip", "val", 4, seed=0), env, policy_name=style)
    assert result.metrics["success_rate"] == 1.0
    assert all(m["skill_calls"] >= 4 for m in result.per_episode)


@pytest.mark.parametrize("style", ["palme", "octopus"])
def test_untrained_model_runs_end_to_end_and_reports(env, model_dirs, style, tmp_path):
    policy = make_policy(style, "manip", model_dir=model_dirs[style], env=env, max_steps=4, max_model_calls=4, max_rounds=2,
                         dataset_dir=str(tmp_path / "rlef"))
    assert isinstance(policy, ManipPlannerPolicy) and policy.name == f"{style}:builtin"
    episodes = make_episodes("manip", "val", 2, seed=0)
    result = evaluate("manip", policy, episodes, env, policy_name=style, video_dir=str(tmp_path / "video"))
    assert result.episodes == 2 and 0.0 <= result.metrics["success_rate"] <= 1.0
    for m, ep in zip(result.per_episode, episodes):
        assert m["episode_id"] == ep.episode_id and m["held_out"] == ep.held_out and "parse_errors" in m
        if style == "palme":
            assert 1 <= m["model_calls"] <= 4 and m["steps"] <= 4
        else:
            assert m["rounds"] == 2 if not m["success"] else 1 <= m["rounds"] <= 2
    if any(ep.held_out for ep in episodes):
        assert result.metrics["held_out"]["episodes"] == sum(ep.held_out for ep in episodes)
    assert any((tmp_path / "video").iterdir())
    if style == "octopus":
        from vlm_agent.planners.rlef_dataset import read_rlef_dataset

        assert len(read_rlef_dataset(tmp_path / "rlef")) == sum(m["rounds"] for m in result.per_episode)


def test_policy_errors(env):
    assert make_policy("palme", "manip", env=env).name == "palme:builtin"  # the shipped checkpoints/palme_tiny
    with pytest.raises(ValueError, match="manip suite only"):
        make_policy("octopus", "nav", backend="oracle", env=env)
    with pytest.raises(ValueError, match="unknown backend kind"):
        make_policy("palme", "manip", backend="ollama", model_dir="x", env=env)
    with pytest.raises(RuntimeError, match="closed-loop"):
        make_policy("palme", "manip", backend="oracle", env=env).act(None)
