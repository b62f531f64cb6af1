"""ROS 2 message definitions as MCAP `ros2msg` schema text (what Foxglove and rosbag2 read).

A `ros2msg` schema is the main type's `.msg` text followed, for every type it uses (recursively),
by a separator line of 80 `=`, a line `MSG: pkg/Name`, and that type's `.msg` text. Definitions
come from the installed `.msg` files (`<prefix>/share/<pkg>/msg/<Name>.msg`, searched on
AMENT_PREFIX_PATH and the Python prefix, which is where the PyPI ROS wheels put them); when a file
is missing the definition is generated from the message class's field table (same wire layout,
without comments or constants). `rosidl_runtime_py` is not available in the standalone install.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from functools import lru_cache

SEPARATOR = "=" * 80
PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
    "int64", "uint64", "string", "wstring",
}
# rosidl IDL names (a message class's _fields_and_field_types) -> .msg names
_IDL_TO_MSG = {"boolean": "bool", "octet": "byte", "float": "float32", "double": "float64", "long double": "float64"}


def normalize_type(type_name: str) -> tuple[str, str]:
    """'sensor_msgs/msg/Image' or 'sensor_msgs/Image' -> ('sensor_msgs', 'Image')."""
    parts = type_name.strip().split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"'{type_name}' is not a message type (pkg/msg/Name or pkg/Name)")


def _search_prefixes() -> list[str]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes += [sys.prefix, sys.base_prefix]
    return list(dict.fromkeys(prefixes))


def find_msg_file(package: str, name: str) -> str | None:
    for prefix in _search_prefixes():
        path = os.path.join(prefix, "share", package, "msg", f"{name}.msg")
        if os.path.isfile(path):
            return path
    return None


def _generated_definition(package: str, name: str) -> str:
    """A `.msg` text from the Python message class's field table (fallback when no file exists)."""
    try:
        cls = getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"no definition for {package}/{name}: no .msg file and no importable class ({exc})") from None
    lines = []
    for field, idl in cls.get_fields_and_field_types().items():
        lines.append(f"{_idl_to_msg_type(idl)} {field}")
    return "\n".join(lines) + "\n"


def _idl_to_msg_type(idl: str) -> str:
    m = re.fullmatch(r"sequence<(.+?)(?:, (\d+))?>", idl)
    if m:
        return f"{_idl_to_msg_type(m.group(1))}[{'<=' + m.group(2) if m.group(2) else ''}]"
    m = re.fullmatch(r"(.+)\[(\d+)\]", idl)
    if m:
        return f"{_idl_to_msg_type(m.group(1))}[{m.group(2)}]"
    return _IDL_TO_MSG.get(idl, idl)


@lru_cache(maxsize=None)
def message_definition(package: str, name: str) -> str:
    """The `.msg` text of one type (no dependencies)."""
    path = find_msg_file(package, name)
    if path is not None:
        with open(path, encoding="utf-8") as f:
            return f.read()
    return _generated_definition(package, name)


def _dependencies(package: str, text: str) -> list[tuple[str, str]]:
    """Complex field types used by a definition, in order of first use, as (pkg, Name)."""
    deps = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split(None, 1)
        if len(tokens) < 2 or "=" in tokens[1]:
            continue  # a constant: TYPE NAME=VALUE (a bounded string's "<=" is in the type token)
        ftype = re.sub(r"\[.*\]$", "", tokens[0])
        ftype = re.sub(r"<=\d+$", "", ftype)  # bounded string
        if ftype in PRIMITIVES:
            continue
        if ftype == "Header":
            deps.append(("std_msgs", "Header"))
        elif "/" in ftype:
            deps.append(normalize_type(ftype))
        else:
            deps.append((package, ftype))
    return deps


@lru_cache(maxsize=None)
def ros2msg_schema(type_name: str) -> str:
    """Full `ros2msg` schema text for `type_name` ('sensor_msgs/msg/Image'), dependencies included."""
    package, name = normalize_type(type_name)
    main = message_definition(package, name)
    seen: set[tuple[str, str]] = {(package, name)}
    ordered: list[tuple[str, str]] = []
    stack = list(reversed(_dependencies(package, main)))
    while stack:  # depth-first, in field order, each type once (as rosbag2 writes them)
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        ordered.append(dep)
        stack.extend(reversed(_dependencies(dep[0], message_definition(*dep))))
    parts = [main.rstrip("\n")]
    for pkg, dep_name in ordered:
        parts.append(f"{SEPARATOR}\nMSG: {pkg}/{dep_name}\n{message_definition(pkg, dep_name).rstrip(chr(10))}")
    return "\n".join(parts) + "\n"
