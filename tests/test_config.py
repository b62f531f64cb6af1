"""Typed config dataclasses: validation from metadata, coercion, YAML section merging."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from vlm_agent.config import ConfigBase, load_ros_parameters, node_sections, param


@dataclass
class ExampleConfig(ConfigBase):
    rate_hz: float = param(10.0, "loop rate", min=0.1, max=100.0)
    history: int = param(8, "frames kept", min=1)
    backend: str = param("torch", "encoder backend", choices=("torch", "onnxruntime"))
    enabled: bool = param(True, "on/off")
    gains: list[float] = param([1.0, 2.0], "per-axis gains", min=0.0)


def test_defaults_validate_and_lists_are_not_shared():
    a, b = ExampleConfig(), ExampleConfig()
    a.gains.append(3.0)
    assert b.gains == [1.0, 2.0]


def test_int_is_accepted_for_float_and_coerced():
    assert ExampleConfig(rate_hz=5).rate_hz == 5.0 and isinstance(ExampleConfig(rate_hz=5).rate_hz, float)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rate_hz=0.0), "rate_hz.*below"),
        (dict(rate_hz=1e9), "rate_hz.*above"),
        (dict(rate_hz=float("nan")), "rate_hz.*finite"),
        (dict(history=0), "history.*below"),
        (dict(history=2.5), "history.*expected int"),
        (dict(history=True), "history.*expected int"),
        (dict(backend="tensorflow"), "backend.*not one of"),
        (dict(enabled="yes"), "enabled.*expected bool"),
        (dict(gains=[1.0, -1.0]), "gains.*below"),
        (dict(gains="1,2"), "gains.*list"),
    ],
)
def test_bad_values_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExampleConfig(**kwargs)


def test_from_dict_strict_rejects_typos():
    with pytest.raises(ValueError, match="unknown keys.*rate_hzz"):
        ExampleConfig.from_dict({"rate_hzz": 3.0})
    assert ExampleConfig.from_dict({"rate_hzz": 3.0, "history": 2}, strict=False).history == 2


def test_replace_revalidates():
    with pytest.raises(ValueError):
        ExampleConfig().replace(rate_hz=-1.0)


def test_ros_parameter_yaml_merges_wildcard_then_node(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "/**:\n  ros__parameters:\n    rate_hz: 1.0\n    history: 3\n"
        "node_a:\n  ros__parameters:\n    rate_hz: 2.0\n"
        "/node_b:\n  ros__parameters:\n    history: 5\n"
    )
    assert load_ros_parameters(str(path), "node_a") == {"rate_hz": 2.0, "history": 3}
    assert load_ros_parameters(str(path), "node_b") == {"rate_hz": 1.0, "history": 5}
    assert node_sections(str(path)) == ["node_a", "node_b"]


def test_malformed_parameter_yaml_is_rejected(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("node_a:\n  rate_hz: 2.0\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        load_ros_parameters(str(path), "node_a")


def test_every_shipped_config_parses():
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[1].glob("config/*.yaml")):
        for name in node_sections(str(path)):
            assert isinstance(load_ros_parameters(str(path), name), dict)


def test_cli_key_values_are_yaml_scalars_and_malformed_items_name_their_flag():
    from vlm_agent.config import parse_key_values

    assert parse_key_values(["min_pixels=8", "room_hint=false", "name=abc", "empty="]) == {"min_pixels": 8, "room_hint": False, "name": "abc", "empty": ""}
    with pytest.raises(ValueError, match="--expert-param expects KEY=VALUE"):
        parse_key_values(["min_pixels"], "--expert-param")
