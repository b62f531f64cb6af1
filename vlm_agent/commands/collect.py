"""vlm-agent collect: expert-labelled training data from the embedded simulator (sharded, resumable).

    --suite nav    NaVid episodes: frames + the expert's primitive per frame (BC, or DAgger with --learner)
    --suite manip  planner-loop records of the PaLM-E (--style palme) or Octopus (--style octopus)
                   loop: prompt, image, the oracle's answer for that state, what was executed
                   (--perturb: a perturbed answer, so failures, feedback and recoveries are in the
                   data; --learner: a trained planner drives), Octopus round rewards
    --suite seg    referring-segmentation clips: frames, the query, ground-truth masks
    --suite verifier  camera views of manip scenes with every object's mask, colour and shape (the
                   attribute verifier's data, `training/verifier_data.py`)
"""
from __future__ import annotations

HELP = ("collect expert-labelled data from the embedded sim: navigation (BC / DAgger), manipulation planner records, segmentation clips, "
        "attribute-verifier views")


def add_arguments(parser) -> None:
    parser.add_argument("--suite", default="nav", choices=["nav", "manip", "seg", "verifier"], help="episode suite")
    parser.add_argument("--style", default="palme", choices=["palme", "octopus"], help="manip: the planner loop whose calls are recorded")
    parser.add_argument("--perturb", type=float, default=0.3,
                        help="manip: probability that a call executes a perturbed oracle answer (failures and recoveries in the data)")
    parser.add_argument("--clip-frames", type=int, default=8, help="seg: frames per clip (the robot moving, as in eval)")
    parser.add_argument("--absent-fraction", type=float, default=0.0,
                        help="seg: share of episodes filmed with the target out of view (all-empty masks: teaches 'not here')")
    parser.add_argument("--seg-source", default="seg", choices=["seg", "manip"],
                        help="seg: the seg suite's framed views, or manip: the manipulation skills' views of the object to move "
                             "from a manip episode's start (its short name as the query)")
    parser.add_argument("--manip-views", default="start", choices=["start", "mixed", "search"],
                        help="with --seg-source manip: start (the object to move from the episode's start), mixed (also the object a "
                             "stack goes on, and views from 0.9-1.8 m, where the robot stands after driving close) or search (the "
                             "views of a full-circle search from the start, the object to move or its destination as the query)")
    parser.add_argument("--seg-look-alikes", default="shape", choices=["shape", "both"],
                        help="with --seg-source seg: the look-alikes beside a 'the <colour> <shape>' target: shape (one of its "
                             "shape in another colour, as val and test) or both (also one of its colour in another shape)")
    parser.add_argument("--manip-look-alikes", action="store_true",
                        help="with --seg-source manip: put look-alikes of the filmed object 0.7-1.2 m from it (one of its shape in a "
                             "neighbouring colour, one of its colour in another shape)")
    parser.add_argument("--manip-decoy-fraction", type=float, default=0.0,
                        help="with --seg-source manip: share of episodes filmed as decoy views: the look-alikes of "
                             "--manip-look-alikes, but the named object itself taken out of the scene (all-empty masks: "
                             "teaches 'that look-alike is not it')")
    parser.add_argument("--views", type=int, default=6, help="verifier: camera views per manip episode")
    parser.add_argument("--split", default="train", choices=["train", "val", "test"])
    parser.add_argument("--episodes", type=int, default=200, help="number of episodes")
    parser.add_argument("--episodes-per-shard", type=int, default=250, help="episodes per .npz shard (existing shards are skipped: resumable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=0, help="square render size in pixels (default: nav and manip 64, seg 128)")
    parser.add_argument("--out", required=True, help="output directory of shards (a path ending in .npz writes one shard file)")
    parser.add_argument("--expert", default="explorer", choices=["explorer", "oracle"],
                        help="labeller: explorer (knows the goal only once seen: observation-explainable) or oracle (shortest path, privileged)")
    parser.add_argument("--learner", default="", help="nav: NaVid model dir whose actions drive the robot (DAgger); manip: a planner model dir "
                        "of --style that answers instead of the oracle; labels stay the expert's")
    parser.add_argument("--beta", type=float, default=1.0, help="probability of executing the expert's action instead of the learner's")
    parser.add_argument("--override-learner-stop", action="store_true",
                        help="nav DAgger: a learner stop the expert disagrees with is not executed (the expert's action is), so the "
                             "episode goes on and the states after a premature stop are labelled too")
    parser.add_argument("--max-steps", type=int, default=0, help="cap on steps per episode (0 = the episode's own limit)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the learner")
    parser.add_argument("--device", default="cpu", help="torch device of the learner: cpu, cuda, cuda:N, mps (checked before collecting)")
    parser.add_argument("--no-ego-map", action="store_true",
                        help="nav: do not render depth nor store each frame's egocentric map (the navigator's map memory, planners/ego_map.py)")
    parser.add_argument("--expert-param", action="append", default=[], metavar="KEY=VALUE",
                        help="nav: a setting of the explorer expert (e.g. min_pixels=8: it counts a goal as seen from 8 "
                             "segmentation pixels on); repeatable")
    parser.add_argument("--no-target-masks", action="store_true",
                        help="nav: do not store where the goal objects are in each frame (target_masks, the label of the "
                             "navigator's training-only grounding head; costs a segmentation render per step)")


def run(args) -> int:
    import os
    import shutil
    import tempfile

    from vlm_agent.config import parse_key_values
    from vlm_agent.training.collect import collect_shards

    if args.episodes < 1:
        raise ValueError("--episodes must be >= 1")
    if (args.absent_fraction or args.seg_source != "seg" or args.manip_views != "start" or args.seg_look_alikes != "shape"
            or args.manip_look_alikes or args.manip_decoy_fraction) and args.suite != "seg":
        raise ValueError("--absent-fraction, --seg-source, --manip-views, --seg-look-alikes, --manip-look-alikes and "
                         "--manip-decoy-fraction apply to --suite seg")
    if args.expert_param and args.suite != "nav":
        raise ValueError("--expert-param applies to --suite nav (the explorer expert)")
    if args.views != 6 and args.suite != "verifier":
        raise ValueError("--views applies to --suite verifier")
    if args.suite == "manip":
        from vlm_agent.training.manip import collect_manip_shards

        paths = collect_manip_shards(args.out, args.style, split=args.split, episodes=args.episodes, episodes_per_shard=args.episodes_per_shard,
                                     seed=args.seed, image_size=args.image_size or 64, perturb=args.perturb, learner_dir=args.learner,
                                     device=args.device)
        print(f"wrote {len(paths)} shards to {args.out}")
        return 0
    if args.suite == "verifier":
        from vlm_agent.training.verifier_data import collect_verifier_shards

        paths = collect_verifier_shards(args.out, split=args.split, episodes=args.episodes, episodes_per_shard=args.episodes_per_shard,
                                        seed=args.seed, views=args.views, image_size=args.image_size or 128)
        print(f"wrote {len(paths)} shards to {args.out}")
        return 0
    if args.suite == "seg":
        from vlm_agent.training.seg_data import collect_seg_shards

        paths = collect_seg_shards(args.out, split=args.split, episodes=args.episodes, episodes_per_shard=args.episodes_per_shard,
                                   seed=args.seed, image_size=args.image_size or 128, clip_frames=args.clip_frames,
                                   absent_fraction=args.absent_fraction, source=args.seg_source, manip_views=args.manip_views,
                                   look_alikes=args.seg_look_alikes, manip_look_alikes=args.manip_look_alikes,
                                   manip_decoy_fraction=args.manip_decoy_fraction)
        print(f"wrote {len(paths)} shards to {args.out}")
        return 0
    if args.override_learner_stop and not args.learner:
        raise ValueError("--override-learner-stop applies to DAgger: give --learner")
    args.image_size = args.image_size or 64
    learner = None
    if args.learner:
        import torch

        from vlm_agent.devices import check_device
        from vlm_agent.planners.navid_policy import make_navid_policy

        torch.set_num_threads(args.threads)
        learner = make_navid_policy(args.learner, device=check_device(args.device))
    kw = dict(split=args.split, episodes=args.episodes, seed=args.seed, image_size=args.image_size, expert=args.expert,
              learner=learner, beta=args.beta if learner else 1.0, max_steps=args.max_steps,
              ego_map=not args.no_ego_map, override_learner_stop=args.override_learner_stop, target_masks=not args.no_target_masks,
              expert_params=parse_key_values(args.expert_param, "--expert-param"))
    if args.out.endswith(".npz"):  # one shard file
        with tempfile.TemporaryDirectory() as tmp:
            (path,) = collect_shards(tmp, episodes_per_shard=args.episodes, **kw)
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            shutil.move(path, args.out)
        print(f"wrote {args.out}")
        return 0
    paths = collect_shards(args.out, episodes_per_shard=args.episodes_per_shard, **kw)
    print(f"wrote {len(paths)} shards to {args.out}")
    return 0
