"""`vlm-agent demo` end to end (what `make demo` runs), shortened: one episode, two plans, an
untrained tiny model. Checks the real graph ran: plans were made, the simulator scored the
episode, and the results file, contact sheet and GIF were written."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers.tiny_navid import save_untrained_navid

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def untrained_navid_dir(tmp_path_factory):
    return save_untrained_navid(tmp_path_factory.mktemp("navid_untrained"), seed=9)


def test_demo_runs_the_graph_and_writes_results(untrained_navid_dir, tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "vlm_agent.cli", "demo", "--episodes", "1", "--max-steps", "2", "--model", untrained_navid_dir,
         "--episode-timeout", "120", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["episodes"] == 1
    row = results["per_episode"][0]
    assert row["plans"] >= 1 and row["end_reason"], row
    assert math.isfinite(row["navigation_error"]) and row["navigation_error"] >= 0
    assert (out / f"{row['episode_id']}.png").is_file() and (out / f"{row['episode_id']}.gif").is_file()
    assert "SR" in proc.stdout
    # The graph ran on sim time: the simulated and wall seconds of the episode are reported.
    assert row["sim_time_s"] > 0 and results["sim_time_s"] == pytest.approx(row["sim_time_s"])
    assert results["wall_time_s"] > 0 and results["real_time_factor"] == 0.0
    assert "x real time" in proc.stdout


def test_demo_rejects_bad_arguments(tmp_path):
    from vlm_agent.cli import main

    assert main(["demo", "--episodes", "0"]) == 2
    assert main(["demo", "--model", str(tmp_path / "nope")]) == 2
