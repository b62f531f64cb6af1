"""benchmarks/navid_sequence_endings.py: the ending classes, and a run on an untrained model that
writes its table and JSON with one row per sequence episode."""
from __future__ import annotations

import json

from benchmarks import navid_sequence_endings as bench


def test_endings_are_classified_from_the_final_state():
    c = bench.classify
    assert c(True, 40, 300, 1, 3.0, 0.5) == "success"
    assert c(False, 300, 300, 0, 3.0, 3.0) == "step limit"
    assert c(False, 20, 300, 0, 3.0, 0.7) == "stopped at Y, X never reached"
    assert c(False, 20, 300, 0, 3.0, 2.0) == "stopped elsewhere, X never reached"
    assert c(False, 20, 300, 1, 0.6, 2.0) == "stopped at X"
    assert c(False, 20, 300, 1, 2.5, 2.0) == "X reached, stopped elsewhere"


def test_a_run_writes_one_row_per_sequence_episode(tmp_path):
    from tests.helpers.tiny_navid import save_untrained_navid

    model = save_untrained_navid(tmp_path / "m", seed=0)
    out = tmp_path / "seq.md"
    assert bench.main([model, "--episodes", "12", "--max-steps", "4", "--out", str(out)]) == 0
    got = json.loads((tmp_path / "seq.json").read_text())
    from vlm_agent.sim.episodes import make_episodes

    want = [e.episode_id for e in make_episodes("nav", "val", 12, 1) if e.task == "sequence"]
    assert want and [r["episode_id"] for r in got["models"][model]] == want
    assert all(r["ending"] in bench.ENDINGS for r in got["models"][model])
    assert f"| {model} |" in out.read_text()
