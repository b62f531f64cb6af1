"""vlm-agent collect: oracle-labelled NaVid training data from the embedded simulator."""
from __future__ import annotations

HELP = "collect oracle-labelled navigation data (behaviour cloning, or DAgger with --learner) from the embedded sim"


def add_arguments(parser) -> None:
    parser.add_argument("--suite", default="nav", choices=["nav"], help="episode suite")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--episodes", type=int, default=200, help="number of episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=64, help="square render size in pixels (the model's input size)")
    parser.add_argument("--out", required=True, help="output .npz shard")
    parser.add_argument("--learner", default="", help="NaVid model dir whose actions drive the robot (DAgger); labels stay the oracle's")
    parser.add_argument("--beta", type=float, default=1.0, help="probability of executing the oracle's action instead of the learner's")
    parser.add_argument("--max-steps", type=int, default=0, help="cap on steps per episode (0 = the episode's own limit)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the learner")


def run(args) -> int:
    import os

    from vlm_agent.models.navid.collection import collect

    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    learner = None
    if args.learner:
        import torch

        from vlm_agent.planners.navid_policy import make_navid_policy

        torch.set_num_threads(args.threads)
        learner = make_navid_policy(args.learner)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    summary = collect(args.suite, args.split, args.episodes, args.seed, args.image_size, args.out, learner=learner, beta=args.beta if learner else 1.0, max_steps=args.max_steps)
    print(f"wrote {summary['path']}: {summary['episodes']} episodes, {summary['frames']} frames, driver success rate {summary['success_rate']:.2f}")
    return 0
