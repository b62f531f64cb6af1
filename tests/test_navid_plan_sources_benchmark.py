"""benchmarks/navid_plan_sources.py: a short run on an untrained map model writes its table and JSON,
every plan timed under the source that made it."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks import navid_plan_sources as bench


def test_a_run_times_every_plan_under_its_source(tmp_path):
    from tests.helpers.tiny_navid import save_untrained_navid

    model = save_untrained_navid(tmp_path / "m", seed=0, vision_stem="film_cnn", cnn_channels=[8, 16], map_cells=8, map_grid_size=2,
                                 ego_map={"cells": 8})
    (Path(model) / "planner_config.json").write_text(json.dumps({"stop_gate": True, "goal_approach": True}))
    out = tmp_path / "sources.md"
    assert bench.main(["--model", model, "--episodes", "2", "--max-steps", "6", "--out", str(out)]) == 0
    result = json.loads((tmp_path / "sources.json").read_text())
    assert len(result["episodes"]) == 2
    plans = sum(r[k] for r in result["episodes"] for k in ("model", "goal_approach", "explore"))
    timed = sum(len(v) for v in result["plan_ms"].values())
    assert plans == timed > 0 and all(t > 0 for v in result["plan_ms"].values() for t in v)
    assert "| model |" in out.read_text()
