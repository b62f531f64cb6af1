"""Attribute-verifier shards (`training/verifier_data.py`): written with the documented arrays,
resumable, deterministic (a pure function of split, seed and index), and their instance rows are
the rendered scene's objects (colour, shape, pixels) and furniture blobs (`other`)."""
from __future__ import annotations

import os

import numpy as np
import pytest

import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
from vlm_agent.training import verifier_data
from vlm_agent.training.verifier_data import (OTHER_SHAPE, VERIFIER_SHARD_KEYS, collect_verifier_shards, load_verifier_shards,
                                              render_verifier_views, verifier_vocabulary)

SIZE, VIEWS = 64, 2
KW = dict(episodes=3, episodes_per_shard=2, seed=0, views=VIEWS, image_size=SIZE, progress=False)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("verifier_shards")
    return str(out), collect_verifier_shards(str(out), "train", **KW)


@pytest.fixture(scope="module")
def val_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("verifier_val")
    collect_verifier_shards(str(out), "val", **{**KW, "episodes": 4, "episodes_per_shard": 4, "seed": 1})
    return load_verifier_shards(str(out))


def test_vocabulary_is_the_simulators_with_other_last():
    from vlm_agent.sim.world import COLOURS, SHAPES

    colours, shapes = verifier_vocabulary()
    assert colours == tuple(COLOURS) and shapes[:-1] == tuple(SHAPES) and shapes[-1] == OTHER_SHAPE == "other"


def test_shards_are_written_with_the_documented_arrays(shards):
    out, paths = shards
    assert [os.path.basename(p) for p in paths] == ["shard_00000.npz", "shard_00001.npz"]
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    colours, shapes = verifier_vocabulary()
    views_per_shard = []
    for path in paths:
        with np.load(path) as d:
            assert set(VERIFIER_SHARD_KEYS) | {"colours", "shapes", "image_size"} == set(d.files)
            v, n = len(d["frames"]), len(d["inst_view"])
            views_per_shard.append(v)
            assert d["frames"].shape == (v, SIZE, SIZE, 3) and d["frames"].dtype == np.uint8
            assert d["instances"].shape == (v, SIZE, SIZE) and d["instances"].dtype == np.int8
            for key, dtype in (("inst_view", np.int32), ("inst_colour", np.int8), ("inst_shape", np.int8), ("inst_pixels", np.int32),
                               ("inst_distance", np.float32), ("inst_held_out", np.bool_)):
                assert d[key].shape == (n,) and d[key].dtype == dtype, key
            assert tuple(d["colours"]) == colours and tuple(d["shapes"]) == shapes and int(d["image_size"]) == SIZE
            # rows of one view are contiguous and in view order; every view has rows; the map's values are the view's rows
            assert np.all(np.diff(d["inst_view"]) >= 0) and set(d["inst_view"]) == set(range(v))
            for k in range(v):
                rows = int((d["inst_view"] == k).sum())
                assert set(np.unique(d["instances"][k])) <= set(range(-1, rows))
            assert (d["inst_pixels"] > 0).all() and d["frames"].std() > 5  # a rendered scene, not a blank frame
    assert views_per_shard[0] <= 2 * VIEWS and views_per_shard[1] <= VIEWS and sum(views_per_shard) >= 2 * VIEWS


def test_a_second_call_writes_nothing_and_rendering_is_deterministic(shards, tmp_path, monkeypatch):
    out, paths = shards
    stamps = [os.path.getmtime(p) for p in paths]

    def must_not_render(*a, **k):
        raise AssertionError("an existing shard was rendered again")

    monkeypatch.setattr(verifier_data, "render_verifier_views", must_not_render)
    assert collect_verifier_shards(out, "train", **KW) == paths
    assert [os.path.getmtime(p) for p in paths] == stamps
    monkeypatch.undo()
    # a fresh collection into another folder: the same arrays
    again = collect_verifier_shards(str(tmp_path / "again"), "train", **KW)
    for a, b in zip(paths, again):
        with np.load(a) as x, np.load(b) as y:
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)
    # another seed: other scenes
    other = collect_verifier_shards(str(tmp_path / "other"), "train", **{**KW, "seed": 5, "episodes": 1})
    with np.load(paths[0]) as x, np.load(other[0]) as y:
        assert not np.array_equal(x["frames"][:VIEWS], y["frames"][:VIEWS])


def test_every_instance_row_is_its_pixels_in_the_map(shards):
    data = load_verifier_shards(shards[0])
    assert data["inst_local"].dtype == np.int8 and len(data["inst_local"]) == len(data["inst_view"])
    for row in range(len(data["inst_view"])):
        view = data["inst_view"][row]
        assert int((data["instances"][view] == data["inst_local"][row]).sum()) == data["inst_pixels"][row], row
    # every labelled pixel belongs to a row
    labelled = sum(int((m >= 0).sum()) for m in data["instances"])
    assert labelled == int(data["inst_pixels"].sum())


def test_objects_have_colour_and_shape_and_furniture_is_other(shards):
    data = load_verifier_shards(shards[0])
    colours, shapes = data["colours"], data["shapes"]
    obj = data["inst_colour"] >= 0
    assert obj.any() and (~obj).any()
    assert (data["inst_colour"] < len(colours)).all() and (data["inst_colour"] >= -1).all()
    assert (data["inst_shape"][obj] != shapes.index(OTHER_SHAPE)).all() and (data["inst_shape"][obj] >= 0).all()
    assert (data["inst_shape"][~obj] == shapes.index(OTHER_SHAPE)).all()
    assert np.isfinite(data["inst_distance"][obj]).all() and (data["inst_distance"][obj] > 0).all()
    assert np.isnan(data["inst_distance"][~obj]).all() and not data["inst_held_out"][~obj].any()
    assert (data["inst_pixels"] >= 6).all()  # min_pixels
    for v in range(len(data["frames"])):  # at most two furniture blobs per view
        assert int(((data["inst_view"] == v) & ~obj).sum()) <= 2


def test_the_rows_are_the_rendered_scenes_objects_and_furniture(shards):
    """render_verifier_views on the env: each object row names an object of the scene (its look-alikes
    included), the last view's object masks are those objects' pixels in a fresh segmentation render,
    furniture blobs lie on furniture or walls, and the shard's first episode is this same call."""
    import mujoco

    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.skills.sim_skills import SimCameraView

    colours, shapes = verifier_vocabulary()
    env = NavEnv(SimConfig(width=64, height=64, render_depth=False))
    view = SimCameraView(env, SIZE, SIZE)
    try:
        rng = np.random.default_rng([7001, 0, 0, 0])  # split train, seed 0, episode 0: the first shard's first episode
        frames, maps, rows = render_verifier_views(env, view, make_episode("manip", "train", 0, 0), VIEWS, rng)
        assert frames.shape == (VIEWS, SIZE, SIZE, 3) and maps.shape == (VIEWS, SIZE, SIZE)
        with np.load(shards[1][0]) as d:
            np.testing.assert_array_equal(d["frames"][:VIEWS], frames)
            np.testing.assert_array_equal(d["instances"][:VIEWS], maps)
            assert list(d["inst_colour"][:len(rows)]) == [r["colour"] for r in rows]
            assert list(d["inst_shape"][:len(rows)]) == [r["shape"] for r in rows]
        scene = {(o.colour, o.shape) for o in env.world.objects}
        objects = [r for r in rows if r["colour"] >= 0]
        assert objects and all((colours[r["colour"]], shapes[r["shape"]]) in scene for r in objects)
        # the env is left at the last view's pose: render again and compare masks to the objects' geoms
        last = len(frames) - 1
        rgb, _ = view.rgbd()
        np.testing.assert_array_equal(rgb, frames[last])
        seg = view.segmentation()
        bodies = {mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, f.name) for f in env.world.furniture}
        furniture = {g for g in range(env.model.ngeom) if int(env.model.geom_bodyid[g]) in bodies}
        furniture |= {mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, w.name) for w in env.world.walls}
        last_rows = [r for r in rows if r["view"] == last]
        assert last_rows
        for local, r in enumerate(last_rows):
            mask = maps[last] == local
            assert int(mask.sum()) == r["pixels"]
            if r["colour"] >= 0:
                geoms = [mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_GEOM, o.name) for o in env.world.objects
                         if (o.colour, o.shape) == (colours[r["colour"]], shapes[r["shape"]])]
                assert any(np.array_equal(mask, seg == g) for g in geoms), r
            else:
                assert np.isin(seg[mask], list(furniture)).all(), r
        for r in objects:
            from vlm_agent.sim.episodes import HELD_OUT_PAIRS

            assert r["held_out"] == ((colours[r["colour"]], shapes[r["shape"]]) in HELD_OUT_PAIRS)
    finally:
        view.close()
        env.close()


def test_held_out_pairs_are_flagged_and_never_in_the_train_split(shards, val_data):
    from vlm_agent.sim.episodes import HELD_OUT_PAIRS

    train = load_verifier_shards(shards[0])
    assert not train["inst_held_out"].any()
    assert val_data["inst_held_out"].any()  # the val split has them (seed 1, 4 episodes), so the flag is tested both ways
    for data in (train, val_data):
        obj = np.flatnonzero(data["inst_colour"] >= 0)
        pairs = [(data["colours"][data["inst_colour"][i]], data["shapes"][data["inst_shape"][i]]) for i in obj]
        np.testing.assert_array_equal(data["inst_held_out"][obj], [p in HELD_OUT_PAIRS for p in pairs])
    assert not any(p in HELD_OUT_PAIRS for p in
                   [(train["colours"][c], train["shapes"][s]) for c, s in zip(train["inst_colour"], train["inst_shape"]) if c >= 0])


def test_loading_accepts_a_folder_a_list_and_files_and_rejects_nothing(shards, tmp_path):
    out, paths = shards
    folder = load_verifier_shards(out)
    listed = load_verifier_shards([out])
    files = load_verifier_shards(list(paths))
    for key in (*VERIFIER_SHARD_KEYS, "inst_local"):
        np.testing.assert_array_equal(folder[key], listed[key])
        np.testing.assert_array_equal(folder[key], files[key])
    # view indices re-based across shards: the second shard's rows point past the first shard's views
    with np.load(paths[0]) as first:
        v0, n0 = len(first["frames"]), len(first["inst_view"])
    assert folder["inst_view"][n0] == v0 and len(folder["frames"]) == folder["inst_view"].max() + 1
    assert folder["inst_local"][n0] == 0
    # the same shard twice: twice the rows, the second copy pointing at the second copy's views
    twice = load_verifier_shards([paths[0], paths[0]])
    assert len(twice["frames"]) == 2 * v0 and list(twice["inst_view"][n0:]) == list(twice["inst_view"][:n0] + v0)
    with pytest.raises(ValueError, match="no verifier shards"):
        load_verifier_shards([])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no verifier shards"):
        load_verifier_shards(str(empty))
    # shards of another vocabulary are refused
    with np.load(paths[0]) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["shapes"] = np.array(["cube", "ball", "cylinder", "plate", "cone"])
    np.savez_compressed(tmp_path / "odd.npz", **arrays)
    with pytest.raises(ValueError, match="different vocabularies"):
        load_verifier_shards([paths[0], str(tmp_path / "odd.npz")])


def test_bad_counts_are_refused(tmp_path):
    for bad in ({"episodes": 0}, {"episodes_per_shard": 0}, {"views": 0}):
        with pytest.raises(ValueError, match="must be positive"):
            collect_verifier_shards(str(tmp_path / "x"), "train", **{**KW, **bad})
