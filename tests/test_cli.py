"""The `vlm-agent` command: help lists subcommands; `up` starts and stops a graph cleanly."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from vlm_agent.cli import _command_modules, main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in _command_modules():
        assert name in out
    assert "up" in out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_every_command_module_defines_its_interface():
    import importlib

    for name, (module_name, help_line) in _command_modules().items():
        module = importlib.import_module(f"vlm_agent.commands.{module_name}")
        assert callable(module.add_arguments) and callable(module.run) and help_line, name


def test_up_rejects_missing_and_nodeless_configs(tmp_path, capsys):
    assert main(["up", "--config", str(tmp_path / "missing.yaml")]) == 2
    empty = tmp_path / "empty.yaml"
    empty.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n")
    assert main(["up", "--config", str(empty)]) == 2
    assert "no vlm_agent node sections" in capsys.readouterr().err


@pytest.mark.ros
def test_up_runs_graph_and_stops_on_sigint(tmp_path):
    config = tmp_path / "graph.yaml"
    config.write_text(
        "/**:\n  ros__parameters:\n    use_sim_time: false\n"
        "image_decompressor:\n  ros__parameters:\n    output_encoding: bgr8\n"
        "some_vendor_driver:\n  ros__parameters:\n    x: 1\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlm_agent.cli", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "started node /image_decompressor" in line:
                break
        assert any("started node /image_decompressor" in ln for ln in lines), "".join(lines)
        assert any("some_vendor_driver" in ln for ln in lines)  # foreign sections are reported, not fatal
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + out
    assert "graph stopped" in out


@pytest.mark.ros
def test_graph_applies_yaml_parameters_in_process(tmp_path):
    from vlm_agent.nodes.composition import NodeGraph

    config = tmp_path / "graph.yaml"
    config.write_text("image_decompressor:\n  ros__parameters:\n    output_encoding: mono8\n")
    with NodeGraph(["image_decompressor"], params_file=str(config), logger=lambda *_: None) as graph:
        graph.spin(0.2)
        assert graph.nodes[0].config.output_encoding == "mono8"
    assert not graph.context.ok()


def test_collect_and_train_offer_the_verifier_suite_and_family():
    from vlm_agent.cli import build_parser
    from vlm_agent.commands.train import FAMILIES

    args = build_parser(["collect"]).parse_args(["collect", "--suite", "verifier", "--views", "3", "--out", "o"])
    assert args.suite == "verifier" and args.views == 3
    assert build_parser(["collect"]).parse_args(["collect", "--out", "o"]).views == 6  # the default
    assert FAMILIES["verifier"] == ("vlm_agent.training.verifier_train", {})  # its flags: tests/training/test_verifier_train.py


def test_collect_views_applies_to_the_verifier_suite_only(tmp_path, capsys, monkeypatch):
    import numpy as np

    from vlm_agent.cli import build_parser
    from vlm_agent.commands import collect
    from vlm_agent.training import collect as nav_collect, manip, seg_data

    def must_not_collect(*a, **k):
        raise AssertionError("collected despite a flag of another suite")

    for module, name in ((nav_collect, "collect_shards"), (manip, "collect_manip_shards"), (seg_data, "collect_seg_shards")):
        monkeypatch.setattr(module, name, must_not_collect)
    for suite in ("nav", "manip", "seg"):
        args = build_parser(["collect"]).parse_args(["collect", "--suite", suite, "--views", "3", "--episodes", "1",
                                                     "--out", str(tmp_path / suite)])
        with pytest.raises(ValueError, match="--views applies to --suite verifier"):
            collect.run(args)
    assert main(["collect", "--suite", "nav", "--views", "3", "--episodes", "1", "--out", str(tmp_path / "n")]) == 2
    assert "--views applies to --suite verifier" in capsys.readouterr().err
    # the verifier suite: its views and image size reach the shards (default 128 px)
    out = tmp_path / "verifier"
    assert main(["collect", "--suite", "verifier", "--views", "2", "--episodes", "1", "--image-size", "32", "--out", str(out)]) == 0
    assert "wrote 1 shards" in capsys.readouterr().out
    with np.load(out / "shard_00000.npz") as d:
        assert d["frames"].shape == (2, 32, 32, 3) and int(d["image_size"]) == 32
    assert main(["collect", "--suite", "verifier", "--episodes", "1", "--seg-look-alikes", "both", "--out", str(out)]) == 2
    assert "apply to --suite seg" in capsys.readouterr().err
