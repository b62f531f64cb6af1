"""Typed, validated configuration dataclasses that double as ROS parameter declarations.

A config is a `@dataclass` whose fields are made with `param(...)`: default, description, and
optional range/choices/read-only. `__post_init__` (from `ConfigBase`) checks every value against
its metadata, so a bad YAML value, a bad `-p k:=v` and a bad `ros2 param set` all fail the same
way, with the field's name in the message. Nodes turn the same metadata into
`ParameterDescriptor`s (see `vlm_agent.nodes.base`), the CLI and tests build configs directly.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import yaml

_SUPPORTED_TYPES = (bool, int, float, str, list[float], list[int], list[str])


def param(
    default: Any,
    description: str,
    *,
    min: float | None = None,  # noqa: A002 (reads naturally at the call site)
    max: float | None = None,  # noqa: A002
    choices: tuple | None = None,
    read_only: bool = False,
):
    """A config field with its parameter metadata. Lists are copied per instance."""
    metadata = {"description": description, "min": min, "max": max, "choices": choices, "read_only": read_only}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_types(config_cls) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


@dataclasses.dataclass
class ConfigBase:
    """Base for node and component configs; subclasses extend `__post_init__` with cross-field checks."""

    def __post_init__(self):
        for f, ftype in zip(dataclasses.fields(self), field_types(type(self)).values()):
            value = getattr(self, f.name)
            value = _coerce(type(self).__name__, f.name, ftype, value)
            setattr(self, f.name, value)
            meta = f.metadata
            values = value if isinstance(value, list) else [value]
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"{type(self).__name__}.{f.name}: must be finite, got {v}")
                if meta.get("min") is not None and v < meta["min"]:
                    raise ValueError(f"{type(self).__name__}.{f.name}: {v} is below the minimum {meta['min']}")
                if meta.get("max") is not None and v > meta["max"]:
                    raise ValueError(f"{type(self).__name__}.{f.name}: {v} is above the maximum {meta['max']}")
                if meta.get("choices") and v not in meta["choices"]:
                    raise ValueError(f"{type(self).__name__}.{f.name}: '{v}' is not one of {list(meta['choices'])}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], strict: bool = True):
        """Build from a mapping; unknown keys raise in strict mode (typos should not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown and strict:
            raise ValueError(f"{cls.__name__}: unknown keys {unknown} (known: {sorted(names)})")
        return cls(**{k: v for k, v in values.items() if k in names})

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


def _coerce(owner: str, name: str, ftype, value):
    """Accept ints for float fields (YAML `1` for 1.0); reject everything else that mismatches."""
    if ftype is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if ftype in (bool, int, float, str):
        if not isinstance(value, ftype) or (ftype is int and isinstance(value, bool)):
            raise ValueError(f"{owner}.{name}: expected {ftype.__name__}, got {type(value).__name__} {value!r}")
        return value
    origin, args = typing.get_origin(ftype), typing.get_args(ftype)
    if origin is list and args and args[0] in (bool, int, float, str):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{owner}.{name}: expected a list, got {type(value).__name__}")
        return [_coerce(owner, name, args[0], v) for v in value]
    raise TypeError(f"{owner}.{name}: unsupported config field type {ftype} (use one of {_SUPPORTED_TYPES})")


def parse_key_values(items: list[str], flag: str = "--policy-param") -> dict[str, Any]:
    """CLI `KEY=VALUE` items (`--policy-param`, `--perception-param`, `--expert-param`) -> {key: value},
    values read as YAML scalars (360 -> int, true -> bool). ValueError naming `flag` for a malformed item."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def load_ros_parameters(path: str, node_name: str) -> dict[str, Any]:
    """Parameters for `node_name` from a ROS parameter YAML (`/**` first, then the node's own section).

    Understands the keys ROS accepts: `/**`, `name`, `/name`, and nested namespaces are not used here.
    """
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: top level must be a mapping of node names")
    merged: dict[str, Any] = {}
    for key in ("/**", node_name, "/" + node_name):
        section = doc.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ValueError(f"{path}: section '{key}' must contain 'ros__parameters'")
        merged.update(section["ros__parameters"] or {})
    return merged


def node_sections(path: str) -> list[str]:
    """Node names that have their own section in a ROS parameter YAML (wildcards excluded)."""
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    return [k.lstrip("/") for k in doc if k not in ("/**", "**") and "*" not in k]
