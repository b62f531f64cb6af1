"""vlm-agent train: train the built-in NaVid model on collected shards; writes a checkpoint directory."""
from __future__ import annotations

HELP = "train the built-in NaVid-style model on shards from `vlm-agent collect` (closed-loop model selection)"


def add_arguments(parser) -> None:
    import dataclasses

    from vlm_agent.training.navid import NavidTrainConfig

    for f in dataclasses.fields(NavidTrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kw = {"help": f.metadata["description"]}
        if f.name == "data":
            parser.add_argument(flag, nargs="+", required=True, **kw)
        elif f.type in (int, "int"):
            parser.add_argument(flag, type=int, default=f.default, **kw)
        elif f.type in (float, "float"):
            parser.add_argument(flag, type=float, default=f.default, **kw)
        else:
            parser.add_argument(flag, default=f.default, **kw)


def run(args) -> int:
    import dataclasses
    import json

    from vlm_agent.training.navid import NavidTrainConfig, train

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(NavidTrainConfig)}
    summary = train(NavidTrainConfig.from_dict(values))
    print(json.dumps({k: v for k, v in summary.items() if k != "config"}, indent=2))
    return 0
