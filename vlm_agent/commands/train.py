"""vlm-agent train: train a built-in model family on collected shards; writes a checkpoint directory.

    vlm-agent train --family navid   --data outputs/nav_bc ...      (the default family)
    vlm-agent train --family palme   --data outputs/palme_bc ...
    vlm-agent train --family octopus --data outputs/octopus_bc ... [--rlef-weight 1]
    vlm-agent train --family sa2va   --data outputs/seg ...
    vlm-agent train --family verifier --data outputs/verifier/train --val-data outputs/verifier/val ...

Each family's flags are the fields of its training config (`TrainConfig` in its module under
`vlm_agent/training/`); a flag another family has but this one does not is an error, not ignored.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib

HELP = "train a built-in model (NaVid, PaLM-E, Octopus or Sa2VA family, or the attribute verifier) on shards from `vlm-agent collect` (closed-loop model selection)"

# family -> (training module, fixed config values)
FAMILIES = {
    "navid": ("vlm_agent.training.navid", {}),
    "palme": ("vlm_agent.training.manip", {"family": "palme"}),
    "octopus": ("vlm_agent.training.manip", {"family": "octopus"}),
    "sa2va": ("vlm_agent.training.sa2va_train", {}),
    "verifier": ("vlm_agent.training.verifier_train", {}),
}


def config_class(family: str):
    module_name, _ = FAMILIES[family]
    module = importlib.import_module(module_name)
    return getattr(module, "TrainConfig", None) or module.NavidTrainConfig, module


def _family_fields() -> dict[str, list]:
    out = {}
    for family in FAMILIES:
        try:
            cls, _ = config_class(family)
        except ImportError:  # a family whose training module is not installed
            continue
        out[family] = [f for f in dataclasses.fields(cls) if f.name not in FAMILIES[family][1]]
    return out


def add_arguments(parser) -> None:
    fields = _family_fields()
    parser.add_argument("--family", default="navid", choices=sorted(fields), help="model family to train (default navid)")
    seen: dict[str, list[str]] = {}
    first: dict[str, dataclasses.Field] = {}
    for family, fs in fields.items():
        for f in fs:
            seen.setdefault(f.name, []).append(family)
            first.setdefault(f.name, f)
    for name, f in first.items():
        flag = "--" + name.replace("_", "-")
        owners = seen[name]
        where = "" if len(owners) == len(fields) else f" [{', '.join(owners)}]"
        kw = {"help": f.metadata["description"] + where, "default": argparse.SUPPRESS}
        if name in ("data", "val_data"):
            parser.add_argument(flag, nargs="+", **kw)
        elif f.type in (int, "int"):
            parser.add_argument(flag, type=int, **kw)
        elif f.type in (float, "float"):
            parser.add_argument(flag, type=float, **kw)
        else:
            parser.add_argument(flag, **kw)


def config_from_args(args):
    """The family's training config from the parsed flags (its defaults for flags not given);
    ValueError for a flag the family does not take."""
    family = getattr(args, "family", "navid")
    cls, module = config_class(family)
    names = {f.name for f in dataclasses.fields(cls)}
    given = {k: v for k, v in vars(args).items() if not k.startswith("_") and k not in ("command", "family")}
    foreign = sorted(k for k in given if k not in names)
    if foreign:
        raise ValueError(f"--family {family} does not take {', '.join('--' + k.replace('_', '-') for k in foreign)}")
    if not given.get("data"):
        raise ValueError("--data is required (training shards or folders of them)")
    return cls.from_dict({**given, **FAMILIES[family][1]}), module


def run(args) -> int:
    import json

    cfg, module = config_from_args(args)
    summary = module.train(cfg)
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0
