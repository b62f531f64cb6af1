"""benchmarks/navid_failure_modes.py: the failure classes, and a run on an untrained model that
writes its table and JSON with one row per episode and ground truth read beside the model."""
from __future__ import annotations

import json

from benchmarks import navid_failure_modes as bench


def test_failures_are_classified_by_what_the_robot_saw_and_reached():
    c = bench.classify
    assert c(True, 0, 5.0, 1.0) == "success"  # success wins whatever was seen
    assert c(False, 1, 0.5, 1.0) == "goal never in view"  # 1 px is not "in view" at the default 2
    assert c(False, 1, 0.5, 1.0, min_pixels=1) == "reached, not stopped there"
    assert c(False, 40, 1.6, 1.0) == "seen, never reached"
    assert c(False, 40, 0.9, 1.0) == "reached, not stopped there"


def test_a_run_writes_one_row_per_episode_with_the_ground_truth(tmp_path):
    from tests.helpers.tiny_navid import save_untrained_navid
    from vlm_agent.sim.episodes import make_episodes

    model = save_untrained_navid(tmp_path / "m", seed=0)
    out = tmp_path / "modes.md"
    assert bench.main([model, "--episodes", "4", "--max-steps", "3", "--out", str(out)]) == 0
    rows = json.loads((tmp_path / "modes.json").read_text())["models"][model]
    eps = make_episodes("nav", "val", 4, 1)
    assert [r["episode_id"] for r in rows] == [e.episode_id for e in eps]
    for r, ep in zip(rows, eps):
        assert r["mode"] in bench.MODES and r["task"] == ep.task and r["steps"] <= 3
        assert r["min_distance_m"] <= r["final_distance_m"] + 0.01  # the final pose is one of those looked at
        assert r["max_goal_pixels"] >= 0 and r["ended_by"] in ("stop", "step limit")
    text = out.read_text()
    assert f"## {model}" in text and "| all | 4 |" in text
