"""The attribute verifier's settings through ROS, without a graph: `vlm-agent eval --suite manip --ros
--perception segmenter --perception-param verifier=...` reaches the segmenter node's
`verifier_model_dir` / `verifier_min_match` (other perception settings are still refused with --ros),
and when not given, the ROS eval and the demo's manip graphs take them from `SegmenterPerceptionConfig()`,
as the in-process perception does."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from vlm_agent.commands import eval as eval_cmd
from vlm_agent.config import param


def _args(*argv):
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    return parser.parse_args(["--suite", "manip", "--policy", "palme", "--perception", "segmenter", "--episodes", "1", *argv])


class _GraphStarted(Exception):
    pass


@pytest.fixture
def graph_params(monkeypatch, tmp_path):
    """The parameters `run_task_planner_episodes` would start its graph with (it stops right there;
    its furniture map goes under tmp_path)."""
    import tempfile

    from vlm_agent.nodes import manip_client

    monkeypatch.setattr(tempfile, "mkdtemp", lambda prefix="", **_kw: str(tmp_path))
    seen = {}

    def fake_graph(params, nodes=()):
        seen.update(params=params, nodes=nodes)
        raise _GraphStarted

    monkeypatch.setattr(manip_client, "GraphProcess", fake_graph)
    return seen


def _run_ros(args, graph_params) -> dict:
    """The segmenter node's parameters in the graph `eval --ros` would start for `args`."""
    from vlm_agent.sim.env import SimConfig
    from vlm_agent.sim.episodes import make_episodes

    with pytest.raises(_GraphStarted):
        eval_cmd._run_ros(args, make_episodes("manip", "val", 1, seed=0), None, SimConfig(width=64, height=48))
    assert "segmenter" in graph_params["nodes"]
    return graph_params["params"]["segmenter"]["ros__parameters"]


@pytest.fixture
def patched_defaults(monkeypatch):
    """SegmenterPerceptionConfig with other verifier defaults ("default", 0.25)."""
    from vlm_agent.skills import segmenter_perception

    @dataclass
    class Patched(segmenter_perception.SegmenterPerceptionConfig):
        verifier: str = param("default", "the verifier (patched default)")
        verifier_min_match: float = param(0.25, "the smallest match (patched default)", min=0.0, max=1.0)

    monkeypatch.setattr(segmenter_perception, "SegmenterPerceptionConfig", Patched)
    return Patched


def test_only_the_verifier_settings_pass_with_ros():
    from vlm_agent.nodes.seg_client import perception_segmenter_parameters

    kw = eval_cmd._perception_kwargs(_args("--ros", "--perception-param", "verifier=/models/verifier", "--perception-param",
                                           "verifier_min_match=0.3"))
    assert kw["seg_params"] == {"verifier": "/models/verifier", "verifier_min_match": 0.3}
    assert "seg_params" not in eval_cmd._perception_kwargs(_args("--ros"))
    for other in (["min_score=0.3"], ["verifier=default", "turn_stops=4"]):
        with pytest.raises(ValueError, match="--perception-param applies in-process"):
            eval_cmd._perception_kwargs(_args("--ros", *[a for item in other for a in ("--perception-param", item)]))
    for bad in ("verifier_min_match=1.5", "verifier=3"):  # refused before a graph starts
        with pytest.raises(ValueError, match="SegmenterPerceptionConfig.verifier"):
            eval_cmd._perception_kwargs(_args("--ros", "--perception-param", bad))
    with pytest.raises(ValueError, match="only verifier, verifier_min_match"):
        perception_segmenter_parameters({"min_score": 0.3})
    # in-process every field still passes
    assert eval_cmd._perception_kwargs(_args("--perception-param", "min_score=0.3"))["seg_params"] == {"min_score": 0.3}


def test_the_verifier_setting_lands_in_the_segmenter_node_parameters(graph_params):
    from vlm_agent.nodes.segmenter import SegmenterNodeConfig

    node = _run_ros(_args("--ros", "--seg-backend", "oracle", "--perception-param", "verifier=/models/verifier",
                          "--perception-param", "verifier_min_match=0.4"), graph_params)
    assert node["backend"] == "oracle" and node["verifier_model_dir"] == "/models/verifier" and node["verifier_min_match"] == 0.4
    SegmenterNodeConfig(**{k: v for k, v in node.items() if k != "use_sim_time"})  # valid node parameters


def test_the_ros_eval_defaults_are_the_in_process_ones(graph_params):
    from vlm_agent.skills.segmenter_perception import SegmenterPerceptionConfig

    node = _run_ros(_args("--ros"), graph_params)
    default = SegmenterPerceptionConfig()
    assert (node["verifier_model_dir"], node["verifier_min_match"]) == (default.verifier, default.verifier_min_match)


def test_the_defaults_are_read_from_the_perception_config(graph_params, patched_defaults):
    node = _run_ros(_args("--ros"), graph_params)
    assert (node["verifier_model_dir"], node["verifier_min_match"]) == ("default", 0.25)
    # a setting given wins over the default, the other keeps it
    node = _run_ros(_args("--ros", "--perception-param", "verifier="), graph_params)
    assert (node["verifier_model_dir"], node["verifier_min_match"]) == ("", 0.25)


def test_the_demo_manip_graph_takes_the_same_defaults(patched_defaults):
    from vlm_agent.commands import demo
    from vlm_agent.sim.episodes import make_episodes

    ep = make_episodes("manip", "val", 1, 0)[0]
    params, nodes = demo.manip_demo_parameters(ep, "palme", "/models/tp", "segmentation", "/models/sa2va")
    seg = params["segmenter"]["ros__parameters"]
    assert "segmenter" in nodes and (seg["verifier_model_dir"], seg["verifier_min_match"]) == ("default", 0.25)
    params, nodes = demo.manip_demo_parameters(ep, "palme", "/models/tp", "ground_truth")
    assert "segmenter" not in params
