"""Seg-clip shards (`training/seg_data.py`): written, resumable, deterministic, and their masks are
the evaluator's and the oracle segmenter's ground truth frame for frame."""
from __future__ import annotations

import os

import numpy as np
import pytest

from vlm_agent.training import seg_data
from vlm_agent.training.seg_data import SEG_SHARD_KEYS, collect_seg_shards, load_seg_shards

SIZE, CLIP = 64, 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_shards")
    return str(out), collect_seg_shards(str(out), "val", episodes=3, episodes_per_shard=2, seed=0, image_size=SIZE, clip_frames=CLIP, progress=False)


def test_shards_are_written_with_the_documented_arrays(shards):
    out, paths = shards
    assert [os.path.basename(p) for p in paths] == ["shard_00000.npz", "shard_00001.npz"]
    with np.load(paths[0]) as d:
        assert set(SEG_SHARD_KEYS) <= set(d.files)
        assert d["frames"].shape == (2 * CLIP, SIZE, SIZE, 3) and d["frames"].dtype == np.uint8
        assert d["masks"].shape == (2 * CLIP, SIZE, SIZE) and d["masks"].dtype == bool
        assert list(d["frame_index"]) == [0, 1, 2, 0, 1, 2] and list(d["frame_episode"]) == [0, 0, 0, 1, 1, 1]
        assert int(d["image_size"]) == SIZE and int(d["clip_frames"]) == CLIP
    data = load_seg_shards([out])
    assert len(data["queries"]) == 3 and len(data["frames"]) == 3 * CLIP
    assert list(data["episode_start"]) == [0, CLIP, 2 * CLIP] and list(data["frame_episode"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    from vlm_agent.sim.episodes import make_episodes

    assert list(data["episode_ids"]) == [e.episode_id for e in make_episodes("seg", "val", 3, 0)]
    assert data["held_out"].dtype == bool and data["queries"].dtype.kind == "U"


def test_a_second_call_writes_nothing_and_rendering_is_deterministic(shards, tmp_path, monkeypatch):
    out, paths = shards
    stamps = [os.path.getmtime(p) for p in paths]

    def must_not_render(*a, **k):
        raise AssertionError("an existing shard was rendered again")

    monkeypatch.setattr(seg_data, "render_seg_clip", must_not_render)
    assert collect_seg_shards(out, "val", episodes=3, episodes_per_shard=2, image_size=SIZE, clip_frames=CLIP, progress=False) == paths
    assert [os.path.getmtime(p) for p in paths] == stamps
    monkeypatch.undo()
    # A half-collected run resumes with the missing shard only, identical to the first collection's.
    again = tmp_path / "again"
    again.mkdir()
    os.link(paths[0], again / "shard_00000.npz")
    collect_seg_shards(str(again), "val", episodes=3, episodes_per_shard=2, image_size=SIZE, clip_frames=CLIP, progress=False)
    a, b = load_seg_shards([out]), load_seg_shards([str(again)])
    for key in SEG_SHARD_KEYS:
        np.testing.assert_array_equal(a[key], b[key])


def test_masks_are_the_evaluators_ground_truth_and_the_oracles(shards):
    """Replaying the stored masks through the seg evaluator scores IoU 1 on every clip frame (so the
    frames, poses and masks are the evaluator's), and the oracle segmenter agrees pixel for pixel."""
    import vlm_agent.sim  # noqa: F401
    from vlm_agent.evaluation.oracle_segmenter import OracleSegmenter
    from vlm_agent.evaluation.rollouts import evaluate
    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.sim.seg_clips import seg_clip_poses

    data = load_seg_shards([shards[0]])
    masks = data["masks"]
    assert masks.reshape(len(masks), -1).any(1).all()  # the clip keeps the target in view on every frame

    class Replay:
        def reset(self, episode):
            self.row = int(np.flatnonzero(data["episode_ids"] == episode.episode_id)[0])
            self.k = 0

        def act(self, obs):
            i = int(data["episode_start"][self.row]) + self.k
            np.testing.assert_array_equal(obs.rgb, data["frames"][i])
            self.k += 1
            return masks[i]

    episodes = make_episodes("seg", "val", 3, 0)
    env = NavEnv(seg_data.seg_sim_config(SIZE))
    try:
        result = evaluate("seg", Replay(), episodes, env, seg_clip_frames=CLIP)
    finally:
        env.close()
    assert all(v == 1.0 for m in result.per_episode for v in m["frame_ious"])
    assert result.metrics["clip_miou"] == 1.0

    oracle = OracleSegmenter(width=SIZE, height=SIZE)
    try:
        for row, ep in enumerate(episodes):
            oracle.load_episode(ep.episode_id)
            oracle.reset(ep.instruction)
            for k, pose in enumerate(seg_clip_poses(ep, CLIP)):
                oracle.set_pose(*pose)
                i = int(data["episode_start"][row]) + k
                np.testing.assert_array_equal(oracle.step(data["frames"][i]).mask, masks[i])
    finally:
        oracle.close()


def test_bad_arguments_and_mixed_sizes_are_refused(shards, tmp_path):
    with pytest.raises(ValueError, match="split"):
        collect_seg_shards(str(tmp_path), "dev", episodes=1, progress=False)
    with pytest.raises(ValueError, match="clip_frames"):
        collect_seg_shards(str(tmp_path), "val", episodes=1, clip_frames=0, progress=False)
    other = tmp_path / "other"
    collect_seg_shards(str(other), "val", episodes=1, episodes_per_shard=1, image_size=32, clip_frames=1, progress=False)
    with pytest.raises(ValueError, match="different frame sizes"):
        load_seg_shards([shards[0], str(other)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no seg shards"):
        load_seg_shards([str(tmp_path / "empty")])


def test_absent_target_clips_keep_the_query_and_show_no_target(shards, tmp_path):
    """--absent-fraction 1: the same scenes and queries filmed turned away; every mask is empty and
    the task says so (or, where no heading hides the target, the episode stays a normal one)."""
    out, _ = shards
    data = load_seg_shards([out])
    absent_dir = tmp_path / "absent"
    collect_seg_shards(str(absent_dir), "val", episodes=3, episodes_per_shard=2, seed=0, image_size=SIZE, clip_frames=CLIP,
                       progress=False, absent_fraction=1.0)
    absent = load_seg_shards([str(absent_dir)])
    np.testing.assert_array_equal(absent["queries"], data["queries"])
    np.testing.assert_array_equal(absent["episode_ids"], data["episode_ids"])
    turned = absent["tasks"] == seg_data.ABSENT_TASK
    assert turned.sum() >= 2  # the seg scenes are rooms: some heading hides the target
    for e in range(3):
        rows = slice(int(absent["episode_start"][e]), int(absent["episode_start"][e] + absent["episode_length"][e]))
        if turned[e]:
            assert not absent["masks"][rows].any()
            assert not np.array_equal(absent["frames"][rows], data["frames"][rows])  # another view
        else:
            np.testing.assert_array_equal(absent["masks"][rows], data["masks"][rows])
    assert data["masks"][data["frame_index"] == 0].reshape(3, -1).any(axis=1).all()  # the positives show their target
    with pytest.raises(ValueError, match="absent_fraction"):
        collect_seg_shards(str(tmp_path / "bad"), "val", episodes=1, image_size=SIZE, clip_frames=CLIP, progress=False, absent_fraction=1.5)


def test_manip_view_clips_ask_for_the_object_to_move_by_name_from_the_episode_start(tmp_path):
    from vlm_agent.sim.episodes import make_episodes

    out = tmp_path / "manip_views"
    collect_seg_shards(str(out), "val", episodes=4, episodes_per_shard=4, seed=0, image_size=SIZE, clip_frames=CLIP, progress=False,
                       source="manip")
    data = load_seg_shards([str(out)])
    episodes = make_episodes("manip", "val", 4, 0)
    assert list(data["episode_ids"]) == [e.episode_id for e in episodes]
    assert set(data["tasks"]) == {seg_data.MANIP_VIEW_TASK}
    import re

    from vlm_agent.sim.env import NavEnv

    env = NavEnv(seg_data.seg_sim_config(SIZE))
    try:
        for e, ep in enumerate(episodes):
            env.reset(ep)
            name = env.world.object(ep.goal_objects[0]).label  # "red cube": what the skills ask the segmenter for
            assert re.fullmatch(r"\w+ \w+", name) and data["queries"][e] in (name, f"the {name}")
    finally:
        env.close()
    assert data["masks"].any()  # turned towards it, the object to move is in view (unless furniture hides it)
    absent = tmp_path / "manip_absent"
    collect_seg_shards(str(absent), "val", episodes=4, episodes_per_shard=4, seed=0, image_size=SIZE, clip_frames=CLIP, progress=False,
                       source="manip", absent_fraction=1.0)
    turned = load_seg_shards([str(absent)])
    assert (turned["tasks"] == seg_data.ABSENT_TASK).sum() >= 2
    assert not turned["masks"][np.isin(turned["frame_episode"], np.flatnonzero(turned["tasks"] == seg_data.ABSENT_TASK))].any()
    with pytest.raises(ValueError, match="source"):
        collect_seg_shards(str(tmp_path / "bad"), "val", episodes=1, image_size=SIZE, clip_frames=CLIP, progress=False, source="nav")


def test_mixed_manip_views_add_stack_bases_and_near_views_and_keep_the_start_views(tmp_path):
    import vlm_agent.sim  # noqa: F401
    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import make_episode

    env = NavEnv(seg_data.seg_sim_config(SIZE))
    try:
        subjects, starts = set(), []
        for i in range(24):
            ep = make_episode("manip", "val", 0, i)
            env.reset(ep)
            target, start = seg_data._manip_view_subject(env, ep, np.random.default_rng([0, i]), "mixed")
            assert target.name in ep.goal_objects
            subjects.add(target.name == ep.goal_objects[0])
            d = float(np.hypot(start[0] - target.pos[0], start[1] - target.pos[1]))
            near = start != tuple(float(v) for v in ep.start_pose[:2])
            starts.append(near)
            if near:
                assert seg_data.MANIP_VIEW_NEAR_M[0] - 0.1 <= d <= seg_data.MANIP_VIEW_NEAR_M[1] + 0.1
            # "start" views: always the object to move, from the episode's start
            t0, s0 = seg_data._manip_view_subject(env, ep, np.random.default_rng([0, i]), "start")
            assert t0.name == ep.goal_objects[0] and s0 == tuple(float(v) for v in ep.start_pose[:2])
        assert subjects == {True, False} and any(starts) and not all(starts)
        with pytest.raises(ValueError, match="views"):
            seg_data.render_manip_view_clip(env, ep, CLIP, np.random.default_rng(0), views="aerial")
    finally:
        env.close()


def test_search_views_are_the_full_circle_the_perception_turns_through(tmp_path):
    """`manip_views="search"`: from the start pose, `clip_frames` headings a full circle apart from the
    start heading (what `SegmenterPerception`'s search renders), the object to move or its
    destination object as the query, ground-truth masks (mostly empty); absent_fraction does not apply."""
    import vlm_agent.sim  # noqa: F401
    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import make_episodes

    out = tmp_path / "search"
    collect_seg_shards(str(out), "val", episodes=6, episodes_per_shard=6, seed=0, image_size=SIZE, clip_frames=8, progress=False,
                       source="manip", manip_views="search", absent_fraction=1.0)
    data = load_seg_shards([str(out)])
    assert set(data["tasks"]) == {seg_data.MANIP_SEARCH_TASK} and list(data["episode_length"]) == [8] * 6
    shown = data["masks"].reshape(len(data["masks"]), -1).any(axis=1)
    assert 0 < shown.mean() < 0.5  # the target in a few of the views, not in most
    env = NavEnv(seg_data.seg_sim_config(SIZE))
    try:
        for e, ep in enumerate(make_episodes("manip", "val", 6, 0)):
            env.reset(ep)
            labels = {env.world.object(n).label: n for n in ep.goal_objects[:2] if n in {o.name for o in env.world.objects}}
            query = str(data["queries"][e]).removeprefix("the ")
            assert query in labels
            x, y, yaw = env.pose
            k = 3  # the fourth view: the start heading turned by 3/8 of a circle
            env.set_pose(x, y, yaw + 2 * np.pi * k / 8)
            frame = data["frames"][data["episode_start"][e] + k]
            assert np.array_equal(frame, env.observation().rgb)
            assert np.array_equal(data["masks"][data["episode_start"][e] + k], env.object_mask(labels[query]))
    finally:
        env.close()


def test_look_alikes_both_films_the_extra_look_alike_and_is_seg_only(shards, tmp_path):
    """look_alikes="both": the same queries, the target's mask where the default has it, and frames
    that differ only where a look-alike of the target's colour was added (seg_simple episodes)."""
    out, _ = shards
    data = load_seg_shards([out])
    both_dir = tmp_path / "both"
    collect_seg_shards(str(both_dir), "val", episodes=3, episodes_per_shard=2, seed=0, image_size=SIZE, clip_frames=CLIP,
                       progress=False, look_alikes="both")
    both = load_seg_shards([str(both_dir)])
    np.testing.assert_array_equal(both["queries"], data["queries"])
    simple = both["tasks"] == "seg_simple"
    assert simple.any()
    for e in range(3):
        rows = slice(int(both["episode_start"][e]), int(both["episode_start"][e] + both["episode_length"][e]))
        assert both["masks"][rows].any()
        if simple[e]:
            assert not np.array_equal(both["frames"][rows], data["frames"][rows])  # one more object in view
        else:
            np.testing.assert_array_equal(both["frames"][rows], data["frames"][rows])
    with pytest.raises(ValueError, match="look_alikes"):
        collect_seg_shards(str(tmp_path / "bad"), "val", episodes=1, image_size=SIZE, clip_frames=CLIP, progress=False,
                           source="manip", look_alikes="both")
    with pytest.raises(ValueError, match="look_alikes"):
        collect_seg_shards(str(tmp_path / "bad2"), "val", episodes=1, image_size=SIZE, clip_frames=CLIP, progress=False, look_alikes="x")


def test_manip_look_alikes_stand_beside_the_filmed_object_and_apply_to_manip_only(tmp_path):
    """`with_look_alikes`: one of the object's shape in a neighbouring colour and one of its colour in
    another shape, 0.7-1.2 m from it, away from the camera, labels not duplicated, held-out pairs never
    in train; `manip_look_alikes` films them (same queries and episodes as without)."""
    import math

    from vlm_agent.sim.episodes import HELD_OUT_PAIRS, make_episodes

    added = 0
    for split in ("train", "val"):
        for ep in make_episodes("manip", split, 12, 3):
            target = ep.goal_objects[0]
            rng = np.random.default_rng(0)
            out = seg_data.with_look_alikes(ep, target, rng, avoid=[ep.start_pose[:2]])
            before = {o["name"] for o in ep.objects}
            new = [o for o in out.objects if o["name"] not in before]
            t = next(o for o in ep.objects if o["name"] == target)
            assert out.objects[: len(ep.objects)] == ep.objects and len(new) <= 2
            added += len(new)
            old_labels = {(o["colour"], o["shape"]) for o in ep.objects}
            new_labels = [(o["colour"], o["shape"]) for o in new]
            assert len(new_labels) == len(set(new_labels)) and not old_labels & set(new_labels)  # no label added twice
            for o in new:
                assert (o["shape"] == t["shape"] and o["colour"] in seg_data.HUE_NEIGHBOURS[t["colour"]]) or \
                       (o["colour"] == t["colour"] and o["shape"] != t["shape"])
                d = math.dist(o["pos"][:2], t["pos"][:2])
                assert seg_data.LOOK_ALIKE_RANGE_M[0] - 1e-9 <= d <= seg_data.LOOK_ALIKE_RANGE_M[1] + 1e-9
                assert math.dist(o["pos"][:2], ep.start_pose[:2]) >= 0.6 and o["support"] == "floor"
                assert split != "train" or (o["colour"], o["shape"]) not in HELD_OUT_PAIRS
    assert added >= 20  # most episodes get both
    plain, alike = tmp_path / "plain", tmp_path / "alike"
    for d, flag in ((plain, False), (alike, True)):
        collect_seg_shards(str(d), "val", episodes=3, episodes_per_shard=3, seed=0, image_size=SIZE, clip_frames=CLIP, progress=False,
                           source="manip", manip_views="search", manip_look_alikes=flag)
    a, b = load_seg_shards([str(plain)]), load_seg_shards([str(alike)])
    np.testing.assert_array_equal(a["queries"], b["queries"])
    assert not np.array_equal(a["frames"], b["frames"])  # look-alikes in view
    with pytest.raises(ValueError, match="manip_look_alikes"):
        collect_seg_shards(str(tmp_path / "bad"), "val", episodes=1, image_size=SIZE, clip_frames=CLIP, progress=False, manip_look_alikes=True)


@pytest.mark.parametrize("views", ["mixed", "search"])
def test_decoy_views_show_the_look_alikes_without_the_object(tmp_path, views):
    """`manip_decoy_fraction`: those episodes are filmed with the object's look-alikes but without the
    object (task manip_decoy, every mask empty, the query still naming it); the others are ordinary
    look-alike views with their masks; fraction 0 keeps the old streams; the fraction is checked and
    applies to the manip source only."""
    from vlm_agent.sim.episodes import make_episode

    kw = dict(episodes=8, episodes_per_shard=8, seed=4, image_size=SIZE, clip_frames=CLIP, progress=False, source="manip",
              manip_views=views, manip_look_alikes=True)
    decoy, plain = load_seg_shards([collect_seg_shards(str(tmp_path / "d"), "val", manip_decoy_fraction=0.5, **kw)[0]]), \
        load_seg_shards([collect_seg_shards(str(tmp_path / "p"), "val", **kw)[0]])
    tasks = list(decoy["tasks"])
    assert 0 < tasks.count(seg_data.MANIP_DECOY_TASK) < len(tasks)
    for e, task in enumerate(tasks):
        rows = decoy["frame_episode"] == e
        if task == seg_data.MANIP_DECOY_TASK:
            assert not decoy["masks"][rows].any()
            target = make_episode("manip", "val", 4, e)
            names = {o["name"]: f'{o["colour"]} {o["shape"]}' for o in target.objects}
            assert decoy["queries"][e].removeprefix("the ") in {names[n] for n in target.goal_objects[:2] if n in names}
        else:
            assert task == (seg_data.MANIP_SEARCH_TASK if views == "search" else seg_data.MANIP_VIEW_TASK)
    assert decoy["masks"][np.isin(decoy["frame_episode"], [e for e, t in enumerate(tasks) if t != seg_data.MANIP_DECOY_TASK])].any()
    # the same look-alikes, the object taken out
    ep = make_episode("manip", "val", 4, 0)
    target = ep.goal_objects[0]
    with_obj = seg_data.with_look_alikes(ep, target, np.random.default_rng(1))
    without = seg_data.with_look_alikes(ep, target, np.random.default_rng(1), drop_target=True)
    assert len(with_obj.objects) > len(ep.objects)
    assert without.objects == [o for o in with_obj.objects if o["name"] != target]
    # fraction 0 (the default) is the collection without decoys, draw for draw
    again = load_seg_shards([collect_seg_shards(str(tmp_path / "z"), "val", manip_decoy_fraction=0.0, **kw)[0]])
    np.testing.assert_array_equal(again["frames"], plain["frames"])
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="manip_decoy_fraction"):
            collect_seg_shards(str(tmp_path / "bad"), "val", manip_decoy_fraction=bad, **kw)
    with pytest.raises(ValueError, match="manip_decoy_fraction"):
        collect_seg_shards(str(tmp_path / "bad2"), "val", episodes=1, image_size=SIZE, clip_frames=CLIP, progress=False,
                           manip_decoy_fraction=0.5)
