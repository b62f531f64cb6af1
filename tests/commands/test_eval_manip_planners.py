"""`vlm-agent eval --suite manip --policy {palme,octopus} --model DIR` in process: a tiny untrained
saved model runs 2 episodes end to end and the JSON reports them (success ~0 is expected); the oracle
policy and the loops' oracle backends still score 1.00."""
from __future__ import annotations

import json

import pytest

from vlm_agent.cli import main

SMALL = ["--width", "32", "--height", "32", "--split", "val", "--seed", "0"]


@pytest.mark.parametrize("style", ["palme", "octopus"])
def test_eval_with_a_tiny_untrained_model(style, tmp_path):
    from tests.helpers.tiny_manip import save_untrained_manip_model

    model = save_untrained_manip_model(tmp_path / style, style, max_new_tokens=32)
    out = tmp_path / "eval.json"
    assert main(["eval", "--suite", "manip", "--policy", style, "--model", model, "--episodes", "2", *SMALL, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == "manip" and result["policy"] == style and result["episodes"] == 2
    assert len(result["per_episode"]) == 2 and 0.0 <= result["success_rate"] <= 1.0
    key = "model_calls" if style == "palme" else "rounds"
    assert all(m[key] >= 1 and "held_out" in m for m in result["per_episode"])
    assert result["wall_time_s"] > 0


@pytest.mark.parametrize("argv", [["--policy", "oracle"], ["--policy", "palme", "--backend", "oracle"], ["--policy", "octopus", "--backend", "oracle"]])
def test_oracles_still_score_one(argv, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "--suite", "manip", *argv, "--episodes", "3", *SMALL, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["success_rate"] == 1.0


def test_a_learned_planner_without_a_model_runs_the_shipped_default(tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "--suite", "manip", "--policy", "palme", "--episodes", "2", *SMALL, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["episodes"] == 2  # checkpoints/palme_tiny


def test_a_transformers_planner_without_a_model_is_a_clear_error(capsys):
    assert main(["eval", "--suite", "manip", "--policy", "palme", "--backend", "transformers", "--episodes", "1", *SMALL]) != 0
    assert "needs" in capsys.readouterr().err
