"""The NaVid trainer's run plumbing: `device` (checked before any work, model and batches on it),
a short CPU run end to end, and the accel defaults that mirror the trainer's architecture."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.actions import ACTIONS
from vlm_agent.devices import check_device, check_device_name, to_device
from vlm_agent.training.data import expand_shards, load_shards
from vlm_agent.training.navid import NavidTrainConfig, train

# 16 px with patch 2: the 8x8 current-frame grid NaVid expects, at a test-sized cost.
TINY = dict(image_size=16, patch_size=2, vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=4, film_layers=1,
            max_history_frames=4)


def _write_shard(path, n_episodes=2, length=5, size=16, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, frames=rng.integers(0, 255, (n_episodes * length, size, size, 3), dtype=np.uint8),
             actions=rng.integers(0, len(ACTIONS), n_episodes * length).astype(np.int8),
             episode_start=np.arange(n_episodes, dtype=np.int64) * length, episode_length=np.full(n_episodes, length, np.int64),
             instructions=np.array(["go to the red ball", "walk to the green box"][:n_episodes]),
             episode_ids=np.array([f"e{i}" for i in range(n_episodes)]))
    return str(path)


def test_expand_and_load_shards_skip_unfinished_files(tmp_path):
    _write_shard(tmp_path / "shard_00001.npz", seed=1)
    _write_shard(tmp_path / "shard_00000.npz", seed=0)
    _write_shard(tmp_path / "shard_00002.npz.tmp.npz")  # an interrupted collection's temporary file
    paths = expand_shards([str(tmp_path)])
    assert [os.path.basename(p) for p in paths] == ["shard_00000.npz", "shard_00001.npz"]
    d = load_shards(paths)
    assert len(d["frames"]) == 20 and list(d["episode_start"]) == [0, 5, 10, 15]


def test_a_shard_listed_twice_is_loaded_once_and_sampled_twice_as_often(tmp_path):
    from vlm_agent.training.navid import EpisodeBatcher

    a, b = _write_shard(tmp_path / "a.npz", seed=0), _write_shard(tmp_path / "b.npz", seed=1)
    assert "episode_weight" not in load_shards([a, b]) and "episode_weight" not in load_shards([a, a])
    d = load_shards([a, b, str(tmp_path / "b.npz")])
    assert len(d["frames"]) == 20  # b's frames are held once
    np.testing.assert_array_equal(d["episode_weight"], [1, 1, 2, 2])

    class _Draws(EpisodeBatcher):
        def __init__(self, data):  # only the sampler: no processor needed
            self.data, self.rng, self.drawn = data, np.random.default_rng(0), []

        def build(self, episodes, steps=None):
            self.drawn.extend(episodes)

    batcher = _Draws(d)
    for _ in range(3000):
        batcher.sample(1)
    share_b = np.isin(batcher.drawn, [2, 3]).mean()
    assert 0.62 < share_b < 0.71  # 2/3 of the draws, as if b's episodes were there twice


def test_device_names_are_checked():
    assert check_device("cpu") == "cpu"
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(ValueError, match="is not one of cpu, cuda, cuda:N, mps"):
            check_device_name(bad)
    with pytest.raises(ValueError, match="NavidTrainConfig.device"):
        NavidTrainConfig(device="gpu")


def test_cuda_without_cuda_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available here"):
        check_device("cuda:0")
    out = tmp_path / "ckpt"
    # The shard does not exist: a FileNotFoundError would mean the data was read before the device check.
    cfg = NavidTrainConfig(data=[str(tmp_path / "missing.npz")], out_dir=str(out), device="cuda")
    with pytest.raises(ValueError, match="device 'cuda': CUDA is not available here"):
        train(cfg, progress=False)
    assert not out.exists()


def test_to_device_moves_tensors_and_keeps_other_values():
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "aux_weight": 0.5}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["input_ids"].device.type == "cpu" and moved["aux_weight"] == 0.5 and moved is not batch


def test_grounding_weight_adds_the_head_and_needs_target_masks(tmp_path):
    bare = _write_shard(tmp_path / "bare.npz")
    cfg = dict(max_steps=2, batch_episodes=2, steps_per_episode=2, warmup_steps=1, val_episodes=0, threads=1, grounding_weight=0.5, **TINY)
    with pytest.raises(ValueError, match="target_masks"):
        train(NavidTrainConfig(data=[bare], out_dir=str(tmp_path / "x"), **cfg), progress=False)
    d = dict(np.load(bare))
    d["target_masks"] = np.random.default_rng(0).integers(0, 2, (len(d["frames"]), 2, 2)).astype(np.uint8)
    np.savez(tmp_path / "masks.npz", **d)
    out = tmp_path / "ckpt"
    summary = train(NavidTrainConfig(data=[str(tmp_path / "masks.npz")], out_dir=str(out), **cfg), progress=False)
    assert summary["steps"] == 2 and json.loads((out / "config.json").read_text())["aux_grounding"] == 1
    last = json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])
    assert set(last["loss_parts_ema"]) == {"lm", "aux", "grounding"}


def test_two_steps_on_cpu_write_a_checkpoint_and_a_summary(tmp_path):
    shard = _write_shard(tmp_path / "shard_00000.npz")
    out = tmp_path / "ckpt"
    cfg = NavidTrainConfig(data=[shard], out_dir=str(out), max_steps=2, batch_episodes=2, steps_per_episode=2, warmup_steps=1,
                           val_episodes=1, val_max_steps=4, threads=1, device="cpu", **TINY)
    summary = train(cfg, progress=False)
    assert summary["steps"] == 2 and summary["config"]["device"] == "cpu"
    assert summary["best"]["episodes"] == 1  # the closed-loop selection ran (on the same device)
    assert (out / "config.json").is_file()
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 2
    assert (tmp_path / "ckpt.work" / "train_state.pt").is_file()  # resumable


def test_accel_default_tower_is_what_train_builds():
    from vlm_agent.accel.defaults import NAVID_TRAIN_DEFAULTS

    t = NavidTrainConfig()
    assert NAVID_TRAIN_DEFAULTS == {k: getattr(t, k) for k in NAVID_TRAIN_DEFAULTS}
