"""Sharded, resumable expert collection; DAgger labels are the expert's for the learner's states."""
from __future__ import annotations

import os

import numpy as np
import pytest

from vlm_agent.actions import ACTIONS, NavPrimitive
from vlm_agent.training.collect import collect_shards
from vlm_agent.training.data import expand_shards, load_shards


class _AlwaysLeft:
    """A stand-in learner that only turns left (so every executed action differs from most labels)."""

    def reset(self, episode):
        pass

    def act(self, obs):
        return NavPrimitive.turn_left()


def test_shards_resume_and_are_deterministic(tmp_path):
    paths = collect_shards(str(tmp_path / "a"), episodes=3, episodes_per_shard=2, seed=5, image_size=16, log=lambda s: None)
    assert [os.path.basename(p) for p in paths] == ["shard_00000.npz", "shard_00001.npz"]
    stamp = os.path.getmtime(paths[0])
    os.remove(paths[1])
    again = collect_shards(str(tmp_path / "a"), episodes=3, episodes_per_shard=2, seed=5, image_size=16, log=lambda s: None)
    assert os.path.getmtime(again[0]) == stamp  # existing shard skipped
    d = load_shards(again)
    assert len(d["episode_start"]) == 3 and d["frames"].shape[1:] == (16, 16, 3)
    assert d["episode_length"].sum() == len(d["frames"]) == len(d["actions"])
    other = load_shards(collect_shards(str(tmp_path / "b"), episodes=3, episodes_per_shard=3, seed=5, image_size=16, log=lambda s: None))
    np.testing.assert_array_equal(other["actions"], d["actions"])


def test_dagger_executes_the_learner_and_labels_with_the_expert(tmp_path):
    paths = collect_shards(str(tmp_path), episodes=1, episodes_per_shard=1, seed=2, image_size=16, learner=_AlwaysLeft(), beta=0.0,
                           max_steps=24, log=lambda s: None)
    d = np.load(paths[0])
    assert d["episode_length"][0] == 24  # the learner never stops: the cap ends the episode
    labels = {ACTIONS[a].kind for a in d["actions"]}
    assert "forward" in labels  # the expert still says where to go from the spinning learner's states
    assert float(d["success"][0]) == 0.0


class _AlwaysStop(_AlwaysLeft):
    def act(self, obs):
        return NavPrimitive.stop()


def test_dagger_can_override_a_premature_learner_stop(tmp_path):
    kw = dict(episodes=1, episodes_per_shard=1, seed=2, image_size=16, learner=_AlwaysStop(), beta=0.0, max_steps=30, ego_map=False, log=lambda s: None)
    ended = np.load(collect_shards(str(tmp_path / "a"), **kw)[0])
    assert ended["episode_length"][0] == 1  # the learner's stop ends the episode after one label
    goes_on = np.load(collect_shards(str(tmp_path / "b"), override_learner_stop=True, **kw)[0])
    n = int(goes_on["episode_length"][0])
    assert n > 1  # the expert's action ran instead of the premature stop
    labels = [ACTIONS[a].kind for a in goes_on["actions"]]
    assert "stop" not in labels[:-1]  # only the expert's own stop (if reached) would end it
    np.testing.assert_array_equal(goes_on["frames"][0], ended["frames"][0])


def test_shards_hold_each_frames_map_memory(tmp_path):
    from vlm_agent.planners.ego_map import unpack_maps

    paths = collect_shards(str(tmp_path / "m"), episodes=2, episodes_per_shard=1, seed=3, image_size=16, max_steps=10, log=lambda s: None)
    d = load_shards(paths)
    cells = d["ego_map_config"]["cells"]
    maps = unpack_maps(d["maps"], cells)
    assert maps.shape == (len(d["frames"]), 3, cells, cells)
    first = int(d["episode_start"][1])
    assert maps[first, 2].any() and maps[first - 1, 0].sum() >= maps[0, 0].sum()  # visited at once; seen floor grows
    bare = load_shards(collect_shards(str(tmp_path / "n"), episodes=1, episodes_per_shard=1, seed=3, image_size=16, max_steps=4, ego_map=False,
                                      log=lambda s: None))
    assert "maps" not in bare
    assert "maps" not in load_shards(paths + expand_shards([str(tmp_path / "n")]))  # mixed shards: no maps


def test_shards_hold_where_the_goal_objects_are_in_each_frame(tmp_path):
    import vlm_agent.sim  # noqa: F401
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.training.collect import goal_cell_counts

    d = load_shards(collect_shards(str(tmp_path / "g"), episodes=2, episodes_per_shard=2, seed=3, image_size=32, ego_map=False, log=lambda s: None))
    assert d["target_masks"].shape == (len(d["frames"]), 4, 4) and d["target_masks"].dtype == np.uint8
    ends = d["episode_start"] + d["episode_length"] - 1
    assert all(d["target_masks"][e].any() for e in ends)  # the explorer stops facing its goal
    assert not d["target_masks"].all()  # and it is not everywhere
    env = NavEnv(SimConfig(width=32, height=32))
    try:
        env.reset(make_episode("nav", "train", 3, 0))
        mask = np.zeros((32, 32), bool)
        for name in env.nav_goals:
            mask |= env.object_mask(name)
        counts = goal_cell_counts(env)
        assert counts.sum() == min(mask.sum(), 255 * 16) and counts.shape == (4, 4)
        np.testing.assert_array_equal(counts > 0, mask.reshape(4, 8, 4, 8).any(axis=(1, 3)))
    finally:
        env.close()
    bare = collect_shards(str(tmp_path / "n"), episodes=1, episodes_per_shard=1, seed=3, image_size=32, max_steps=3, ego_map=False,
                          target_masks=False, log=lambda s: None)
    assert "target_masks" not in np.load(bare[0])
    assert "target_masks" not in load_shards(bare + expand_shards([str(tmp_path / "g")]))  # mixed shards: none


def test_cli_collects_nav_shards_and_checks_the_dagger_flags(tmp_path, capsys):
    from vlm_agent.cli import main

    out = tmp_path / "one.npz"
    assert main(["collect", "--out", str(out), "--episodes", "1", "--max-steps", "3", "--image-size", "16", "--no-ego-map"]) == 0
    assert np.load(out)["episode_length"][0] <= 3
    assert main(["collect", "--out", str(tmp_path / "x"), "--episodes", "1", "--override-learner-stop"]) == 2
    assert "--override-learner-stop applies to DAgger: give --learner" in capsys.readouterr().err
    assert main(["collect", "--out", str(tmp_path / "y"), "--episodes", "1", "--seg-look-alikes", "both"]) == 2
    assert "--manip-look-alikes and --manip-decoy-fraction apply to --suite seg" in capsys.readouterr().err
    assert main(["collect", "--out", str(tmp_path / "z"), "--episodes", "1", "--manip-look-alikes"]) == 2
    assert "--manip-decoy-fraction apply to --suite seg" in capsys.readouterr().err


def test_expert_settings_change_its_labels(tmp_path, capsys):
    from vlm_agent.cli import main
    from vlm_agent.training.collect import make_expert

    kw = dict(episodes=2, episodes_per_shard=2, seed=4, image_size=16, ego_map=False, target_masks=False, log=lambda s: None)
    eager = load_shards(collect_shards(str(tmp_path / "a"), **kw))
    # A goal counted as seen only from many pixels on: the expert explores longer before heading there.
    late = load_shards(collect_shards(str(tmp_path / "b"), expert_params={"min_pixels": 40}, **kw))
    assert len(late["frames"]) > len(eager["frames"])
    with pytest.raises(ValueError, match="unknown setting"):
        collect_shards(str(tmp_path / "c"), expert_params={"min_pixel": 4}, **kw)
    with pytest.raises(ValueError, match="no settings"):
        make_expert("oracle", None, {"min_pixels": 4})
    out = tmp_path / "cli.npz"
    assert main(["collect", "--out", str(out), "--episodes", "1", "--max-steps", "3", "--image-size", "16", "--no-ego-map",
                 "--expert-param", "min_pixels=8"]) == 0
    assert main(["collect", "--suite", "seg", "--out", str(tmp_path / "s"), "--episodes", "1", "--expert-param", "min_pixels=8"]) == 2
    assert "--expert-param applies to --suite nav" in capsys.readouterr().err


def test_shards_record_which_leg_of_a_sequence_each_frame_is_on(tmp_path):
    """subgoal_index: 0 on a single-goal episode; on a sequence the explorer completes, 0 until it
    passes the first goal, then 1 to the end, never going back; loaded only when every shard has it."""
    from vlm_agent.sim.episodes import make_episode

    assert [make_episode("nav", "train", 3, i).task for i in range(2)] == ["goto", "sequence"]
    paths = collect_shards(str(tmp_path / "s"), episodes=2, episodes_per_shard=2, seed=3, image_size=16, ego_map=False,
                           target_masks=False, log=lambda s: None)
    d = load_shards(paths)
    legs = d["subgoal_index"]
    assert legs.dtype == np.int8 and len(legs) == len(d["frames"])
    goto = slice(int(d["episode_start"][0]), int(d["episode_start"][0] + d["episode_length"][0]))
    seq = legs[int(d["episode_start"][1]): int(d["episode_start"][1] + d["episode_length"][1])]
    assert not legs[goto].any()
    assert seq[0] == 0 and seq[-1] == 1 and (np.diff(seq) >= 0).all()
    with np.load(paths[0]) as shard:
        old = {k: shard[k] for k in shard.files if k != "subgoal_index"}  # a shard from before the field
    np.savez(tmp_path / "old.npz", **old)
    assert "subgoal_index" not in load_shards(paths + [str(tmp_path / "old.npz")])
