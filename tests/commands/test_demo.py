"""`vlm-agent demo` end to end (what `make demo` runs), shortened: one episode per suite, untrained
tiny models in temporary directories. Checks the real graphs ran (plans made, masks scored, skills
called through the task planner), the simulator scored the episodes, and the results table,
results.json and a contact sheet per episode were written."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers.tiny_manip import save_untrained_manip_model
from tests.helpers.tiny_navid import save_untrained_navid
from tests.helpers.tiny_sa2va import save_untrained_sa2va_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def untrained_navid_dir(tmp_path_factory):
    return save_untrained_navid(tmp_path_factory.mktemp("navid_untrained"), seed=9)


def _demo(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "vlm_agent.cli", "demo", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_runs_the_graph_and_writes_results(untrained_navid_dir, tmp_path):
    out = tmp_path / "demo"
    proc = _demo("--suites", "nav", "--episodes", "1", "--max-steps", "2", "--model", untrained_navid_dir,
                 "--episode-timeout", "120", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    nav = results["suites"]["nav"]
    assert nav["episodes"] == 1 and list(results["suites"]) == ["nav"]
    row = nav["per_episode"][0]
    assert row["plans"] >= 1 and row["end_reason"], row
    assert len(row["plan_texts"]) == row["plans"]
    assert math.isfinite(row["navigation_error"]) and row["navigation_error"] >= 0
    assert (out / "nav" / f"{row['episode_id']}.png").is_file() and (out / "nav" / f"{row['episode_id']}.gif").is_file()
    assert row["contact_sheet"] == str(out / "nav" / f"{row['episode_id']}.png")
    assert "SR" in proc.stdout and "camera only" in proc.stdout
    # The graph ran on sim time: the simulated and wall seconds of the episode are reported.
    assert row["sim_time_s"] > 0 and nav["sim_time_s"] == pytest.approx(row["sim_time_s"])
    assert nav["wall_time_s"] > 0 and results["real_time_factor"] == 0.0


def test_demo_segments_and_manipulates_through_ros(tmp_path):
    """seg, manip-palme and manip-octopus, one episode each, one graph per suite: the segmenter scores
    every mask of the clip, and the task planners run on the segmenter as their perception."""
    models = tmp_path / "models"
    seg = save_untrained_sa2va_model(models / "sa2va", seed=1)
    palme = save_untrained_manip_model(models / "palme", "palme", seed=2)
    octopus = save_untrained_manip_model(models / "octopus", "octopus", seed=3)
    out = tmp_path / "demo"
    proc = _demo("--suites", "seg,manip-palme,manip-octopus", "--episodes", "1", "--seg-model", seg, "--palme-model", palme,
                 "--octopus-model", octopus, "--manip-perception", "segmenter", "--manip-max-steps", "2", "--camera", "160x120", "--episode-timeout", "120", "--manip-timeout", "60",
                 "--out", str(out), timeout=420)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["suites"]) == ["seg", "manip-palme", "manip-octopus"] and not results["skipped"]

    s = results["suites"]["seg"]
    ep = s["per_episode"][0]
    assert ep["frames_scored"] >= 2, ep  # a clip, not only the first frame
    assert len(ep["frame_ious"]) == ep["frames_scored"] and all(0.0 <= v <= 1.0 for v in ep["frame_ious"])
    assert ep["motion"] and all(m.endswith("done") for m in ep["motion"]), ep["motion"]
    assert 0.0 <= s["metrics"]["miou"] <= 1.0 and "clip_miou" in s["metrics"]
    assert (out / "seg" / f"{ep['episode_id']}.png").is_file()

    for suite, style in (("manip-palme", "palme"), ("manip-octopus", "octopus")):
        m = results["suites"][suite]
        ep = m["per_episode"][0]
        assert m["task_planner"]["style"] == style and m["task_planner"]["perception"] == "segmentation"
        assert m["perception"] == "segmenter" and ep["perception"] == "segmentation" and not ep["upper_bound"]
        assert ep["planner_state"] in ("succeeded", "failed"), ep
        assert ep["model_calls"] >= 1 and ep["success"] in (0.0, 1.0)
        assert (out / suite / f"{ep['episode_id']}.png").is_file(), ep
    assert results["suites"]["manip-palme"]["per_episode"][0]["skill_calls"] <= 2  # --manip-max-steps

    table = proc.stdout[proc.stdout.index("vlm-agent demo: the agent"):]
    # the segmenter node checks masks with the attribute verifier (SegmenterPerceptionConfig's default), and the table says so
    for text in ("seg", "manip-palme", "manip-octopus", "mIoU", "success", "segmenter (sa2va + attribute_verifier)"):
        assert text in table, table
    assert all(results["suites"][s]["segmenter"]["verifier_model_dir"] == "default" for s in ("manip-palme", "manip-octopus"))


def test_demo_rejects_bad_arguments(tmp_path):
    from vlm_agent.cli import main

    assert main(["demo", "--episodes", "0"]) == 2
    assert main(["demo", "--model", str(tmp_path / "nope")]) == 2
    assert main(["demo", "--suites", "nav,fly"]) == 2
    assert main(["demo", "--suites", "seg", "--seg-model", str(tmp_path / "nope")]) == 2
    assert main(["demo", "--suites", "nav", "--camera", "big"]) == 2
    assert main(["demo", "--suites", "nav", "--manip-timeout", "0"]) == 2
