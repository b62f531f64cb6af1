"""`vlm-agent demo` without ROS traffic: which suites run with which model (skipping a missing shipped
checkpoint), the parameters of each suite's graph, the score cells and the captioned contact sheet."""
from __future__ import annotations

import argparse
import os

import numpy as np
import pytest

from vlm_agent.commands import demo


def _args(*argv):
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(list(argv))


def _fake_checkpoints(tmp_path, present):
    """A `checkpoint_dir(name)` over tmp_path where only the names in `present` hold a model."""
    for name in present:
        os.makedirs(tmp_path / name, exist_ok=True)
        (tmp_path / name / "config.json").write_text("{}")
    return lambda name: str(tmp_path / name)


def test_every_suite_in_order_with_shipped_models_and_missing_ones_skipped(tmp_path):
    plans = demo.plan_suites(_args(), _fake_checkpoints(tmp_path, ["navid_map", "palme_tiny"]))
    assert [p.suite for p in plans] == ["nav", "seg", "manip-palme", "manip-octopus"]
    by = {p.suite: p for p in plans}
    assert by["nav"].model_dir == str(tmp_path / "navid_map") and not by["nav"].skip
    assert by["manip-palme"].model_label == "checkpoints/palme_tiny" and not by["manip-palme"].skip
    assert "checkpoints/sa2va_nano" in by["seg"].skip and "--seg-model" in by["seg"].skip
    assert "checkpoints/octopus_tiny" in by["manip-octopus"].skip and "--octopus-model" in by["manip-octopus"].skip


def test_model_flags_win_and_must_exist(tmp_path):
    checkpoints = _fake_checkpoints(tmp_path / "ck", [])
    given = tmp_path / "my_seg"
    given.mkdir()
    plans = demo.plan_suites(_args("--suites", "manip-octopus,seg", "--seg-model", str(given), "--episodes", "1"), checkpoints)
    assert [(p.suite, bool(p.skip)) for p in plans] == [("seg", False), ("manip-octopus", True)]  # the demo's order
    assert plans[0].model_dir == str(given)
    with pytest.raises(FileNotFoundError, match="--palme-model"):
        demo.plan_suites(_args("--palme-model", str(tmp_path / "nope")), checkpoints)
    with pytest.raises(ValueError, match="unknown"):
        demo.plan_suites(_args("--suites", "nav,swim"), checkpoints)
    with pytest.raises(ValueError, match="at least 1"):
        demo.plan_suites(_args("--episodes", "0"), checkpoints)


def test_manip_perception_is_the_segmenter_when_there_unless_ground_truth_is_asked_for(tmp_path):
    with_seg = _fake_checkpoints(tmp_path / "a", ["sa2va_nano", "palme_tiny"])
    args = _args("--suites", "manip-palme")
    plans = demo.plan_suites(args, with_seg)
    assert demo.seg_model_for_manip(args, plans, with_seg) == ("segmentation", str(tmp_path / "a" / "sa2va_nano"))
    truth = _args("--suites", "manip-palme", "--manip-perception", "ground_truth")
    assert demo.seg_model_for_manip(truth, plans, with_seg) == ("ground_truth", "")
    without = _fake_checkpoints(tmp_path / "b", ["palme_tiny"])
    assert demo.seg_model_for_manip(args, demo.plan_suites(args, without), without) == ("ground_truth", "")


def _sections(params):
    return {k: v["ros__parameters"] for k, v in params.items()}


def test_nav_parameters():
    from vlm_agent.sim.episodes import make_episodes

    ep = make_episodes("nav", "val", 1, 4)[0]
    p = _sections(demo.demo_parameters(demo.default_config_path(), ep, "/models/navid", 7, 0.0))
    assert set(demo.NAV_NODES) <= set(p)
    assert p["mujoco_sim"]["suite"] == "nav" and p["mujoco_sim"]["episode_seed"] == 4 and p["mujoco_sim"]["publish_instruction"]
    assert p["mujoco_sim"]["real_time_factor"] == 0.0 and not p["mujoco_sim"]["use_sim_time"] and p["/**"]["use_sim_time"]
    assert p["navid_planner"]["model_dir"] == "/models/navid" and p["navid_planner"]["max_steps"] == 7
    assert p["mujoco_sim"]["width"] == 320  # the config's camera unless the demo sets one
    square = _sections(demo.demo_parameters(demo.default_config_path(), ep, "/models/navid", 7, 0.0, (64, 64)))
    assert (square["mujoco_sim"]["width"], square["mujoco_sim"]["height"]) == (64, 64)  # the navigators' training view


def test_seg_parameters():
    from vlm_agent.sim.episodes import make_episodes

    ep = make_episodes("seg", "val", 2, 0)[1]
    p = _sections(demo.seg_demo_parameters(ep, "/models/sa2va", (160, 120), 0.0))
    assert set(demo.SEG_NODES) <= set(p)
    sim, seg = p["mujoco_sim"], p["segmenter"]
    assert (sim["suite"], sim["episode_index"], sim["width"], sim["height"]) == ("seg", 1, 160, 120)
    assert not sim["publish_instruction"]  # the client sends the query
    assert seg["backend"] == "sa2va" and seg["model_dir"] == "/models/sa2va" and seg["use_sim_time"]
    assert seg["query"] == "" and not seg["use_instruction"]
    # The clip moves the robot: the executor and the supervisor with eval --ros's limits, on sim time.
    assert p["motion_executor"]["use_sim_time"] and p["safety_supervisor"]["use_sim_time"]
    assert p["safety_supervisor"]["max_linear_speed_mps"] > p["motion_executor"]["max_linear_speed_mps"]


@pytest.mark.parametrize("style", ["palme", "octopus"])
def test_manip_parameters(style):
    from vlm_agent.nodes.task_planner import TaskPlannerNodeConfig
    from vlm_agent.sim.episodes import make_episodes

    ep = make_episodes("manip", "val", 1, 0)[0]
    params, nodes = demo.manip_demo_parameters(ep, style, "/models/tp", "segmentation", "/models/sa2va", (160, 120), 0.0,
                                               max_steps=4, episode_timeout_s=99.0, furniture_map="/tmp/map.yaml")
    p = _sections(params)
    assert p["task_planner"]["furniture_map"] == "/tmp/map.yaml" and p["task_planner"]["navigation"] == "map"
    assert set(nodes) == set(demo.MANIP_NODES) | {"segmenter"} and set(nodes) <= set(p)
    tp = p["task_planner"]
    assert (tp["style"], tp["backend"], tp["model_dir"], tp["perception"]) == (style, "builtin", "/models/tp", "segmentation")
    assert (tp["camera_width"], tp["camera_height"]) == (160, 120) and tp["episode_timeout_s"] == 99.0
    assert tp["palme_max_steps"] == 4 and tp["octopus_max_calls"] == 4
    TaskPlannerNodeConfig(**{k: v for k, v in tp.items() if k != "use_sim_time"})  # valid node parameters
    seg = p["segmenter"]
    assert seg["backend"] == "sa2va" and seg["model_dir"] == "/models/sa2va" and not seg["use_instruction"] and seg["query"] == ""
    assert p["mujoco_sim"]["suite"] == "manip" and not p["mujoco_sim"]["publish_instruction"]

    params, nodes = demo.manip_demo_parameters(ep, style, "/models/tp", "ground_truth")
    p = _sections(params)
    assert "segmenter" not in nodes and "segmenter" not in p and p["task_planner"]["perception"] == "ground_truth"
    assert not p["task_planner"].get("furniture_map")
    assert p["task_planner"]["palme_max_steps"] == 20  # config/sim_manip.yaml's budget when max_steps is 0
    with pytest.raises(ValueError, match="Sa2VA"):
        demo.manip_demo_parameters(ep, style, "/models/tp", "segmentation", "")


def test_score_cells_and_camera():
    assert demo.score_text("nav", {"metrics": {"success_rate": 1 / 3, "spl": 0.25}}) == "SR 0.33, SPL 0.25"
    assert demo.score_text("seg", {"metrics": {"miou": 0.5, "clip_miou": 0.25}}) == "mIoU 0.50 (clip 0.25)"
    assert demo.score_text("manip-palme", {"metrics": {"success_rate": 2 / 3}, "episodes": 3}) == "success 0.67 (2/3)"
    assert demo.score_text("seg", {"error": "boom"}).startswith("failed")
    assert demo.parse_camera("160x120") == (160, 120)
    for bad in ("160", "axb", "8x8"):
        with pytest.raises(ValueError):
            demo.parse_camera(bad)


def test_captioned_contact_sheet(tmp_path):
    from PIL import Image

    from vlm_agent.sim.video import outline, sample_indices, write_contact_sheet

    assert sample_indices(3, 16) == [0, 1, 2]
    picked = sample_indices(40, 5)
    assert picked[0] == 0 and picked[-1] == 39 and len(picked) == 5
    mask = np.zeros((12, 16), bool)
    mask[3:9, 4:12] = True
    drawn = outline(np.zeros((12, 16, 3), np.uint8), mask, (0, 255, 0))
    assert drawn[3, 4, 1] == 255 and drawn[5, 6, 1] == 0 and drawn[0, 0, 1] == 0  # the edge only
    frames = [np.full((24, 32, 3), 40 * k, np.uint8) for k in range(5)]
    captions = ["plan 1: move forward 25 cm", "x" * 300, "", "end: model said stop", "a\nb"]
    path = write_contact_sheet(str(tmp_path / "sheet.png"), "title " * 80, frames, captions,
                               side=np.zeros((50, 80, 3), np.uint8), columns=2, tile_width=64)
    with Image.open(path) as img:
        assert img.width > 2 * 64 and img.height > 3 * 48  # three rows of two tiles with captions, the map beside
    with pytest.raises(ValueError, match="captions"):
        write_contact_sheet(str(tmp_path / "bad.png"), "t", frames, captions[:2])
