"""The Sa2VA trainer (`training/sa2va_train.py`): what it trains is what the tracker runs, a short run
writes a checkpoint the seg evaluator's policy loads, resume continues, and a run learns."""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.training.sa2va_train import (
    ClipBatcher,
    Sa2VATrainConfig,
    TrainConfig,
    build_model,
    clip_forward,
    clip_train_step,
    decode_candidates,
    train,
)
from vlm_agent.training.seg_data import collect_seg_shards, load_seg_shards

SIZE, CLIP = 64, 3
# 16 px with patch 2 (an 8 x 8 grid), 32 wide, one layer; SAM 2 nano at 64 px.
TINY = dict(vlm_image_size=16, patch_size=2, vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=4, sam2_image_size=64)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg_train_shards")
    collect_seg_shards(str(out), "train", episodes=2, episodes_per_shard=2, seed=0, image_size=SIZE, clip_frames=CLIP, progress=False)
    return str(out)


@pytest.fixture(scope="module")
def data(shard_dir):
    return load_seg_shards([shard_dir])


def _config(shard_dir, out, **kw):
    base = dict(data=[shard_dir], out_dir=str(out), batch_size=2, window_frames=2, warmup_steps=1, val_episodes=1, clip_frames=2,
                threads=1, device="cpu", **TINY)
    return Sa2VATrainConfig(**{**base, **kw})


def _model(data, seed=0, **kw):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return build_model(Sa2VATrainConfig(**{**TINY, **kw}), data["queries"])


def test_config_is_the_cli_family_config_and_checks_its_fields():
    assert TrainConfig is Sa2VATrainConfig
    cfg = Sa2VATrainConfig()
    assert cfg.sam2_variant == "nano" and cfg.sam2_trainable == "all" and cfg.out_dir == "checkpoints/sa2va_nano" and cfg.val_episodes == 50
    for bad, match in (({"device": "gpu"}, "Sa2VATrainConfig.device"), ({"sam2_image_size": 100}, "multiple of 32"),
                       ({"sam2_trainable": "encoder"}, "sam2_trainable"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=match):
            Sa2VATrainConfig(**bad)
    assert all(f.metadata["description"] for f in dataclasses.fields(Sa2VATrainConfig))


def test_the_whole_nano_sam2_trains(data):
    model, _ = _model(data)
    assert model.config.sam2_trainable == "all" and all(p.requires_grad for p in model.sam2.parameters())
    model.train()
    assert model.sam2.memory_attention.training and model.sam2.memory_encoder.training and model.sam2.image_encoder.training


@pytest.mark.parametrize("query_film", [0, 1])
def test_the_training_pass_is_the_trackers(data, query_film):
    """In eval mode (no dropout) the keyframe decoding equals `decode_masks` (the tracker's keyframe
    call) and every frame's kept mask and score equal what `Sa2VATracker` produces on the same clip,
    with a query-conditioned image encoder too (every frame encoded with its keyframe's [SEG] state)."""
    from vlm_agent.models.sa2va.processing_sa2va import mask_score, resize_mask_logits, threshold_mask
    from vlm_agent.models.sa2va.tracking_sa2va import Sa2VATracker, TrackerConfig

    model, proc = _model(data, seed=3, query_film=query_film)
    model.eval()
    if query_film:  # non-zero FiLM, so the encoder really reads the condition
        with torch.no_grad():
            model.query_film.linear.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    batch = ClipBatcher(data, proc, CLIP).build([1], [0])
    with torch.no_grad():
        _, frames = clip_forward(model, batch)
        out = model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"], output_hidden_states=True)
        hidden, _ = model.seg_hidden(out.hidden_states[-1], batch["input_ids"])
        prompt = model.seg_projector(hidden)
        feats = model.sam_features(batch["sam_pixel_values"][:1], condition=hidden if query_film else None)
        ref = model.decode_masks(feats, prompt, gate_absent=True)
        mine = decode_candidates(model, feats, prompt)
    torch.testing.assert_close(mine[3], ref.low_res_logits)
    torch.testing.assert_close(mine[5], ref.obj_ptr)
    torch.testing.assert_close(mine[6], ref.object_score_logits)
    tracker = Sa2VATracker(model, proc, TrackerConfig(min_score=0.0, redetect_every=100))
    tracker.reset(str(data["queries"][1]))
    start = int(data["episode_start"][1])
    for k, heads in enumerate(frames):
        step = tracker.step(data["frames"][start + k])
        assert step.source == ("detected" if k == 0 else "tracked")
        np.testing.assert_array_equal(step.mask, threshold_mask(resize_mask_logits(heads[3][0, 0], (SIZE, SIZE))))
        best = int(heads[2][0].argmax())
        assert step.score == pytest.approx(mask_score(float(heads[2][0, best]), float(heads[6][0, 0])), abs=1e-5)


def test_query_noise_inserts_made_up_words_and_leaves_the_windows_alone(data):
    """query_noise: the query keeps its words in order plus 1-2 made-up ones (none a training word),
    the answer is still [SEG], the frames and masks drawn are those of a run without noise, and
    query_noise 0 gives exactly the plain examples."""
    _, proc = _model(data)
    plain, noisy = ClipBatcher(data, proc, 2, seed=4), ClipBatcher(data, proc, 2, seed=4, query_noise=1.0)
    a, b = plain.sample(2), noisy.sample(2)
    torch.testing.assert_close(a["sam_pixel_values"], b["sam_pixel_values"])
    torch.testing.assert_close(a["gt_masks"], b["gt_masks"])
    assert not torch.equal(a["input_ids"], b["input_ids"]) or a["input_ids"].shape != b["input_ids"].shape
    known = {w for q in data["queries"] for w in str(q).lower().split()}
    for query in [str(q) for q in data["queries"]] * 5:
        got = noisy.noisy_query(query).split()
        extra = list(got)
        for w in query.split():  # the original words, in order
            extra.remove(w)
        assert 1 <= len(extra) <= 2 and not set(extra) & known and all(3 <= len(w) <= 8 and w.isalpha() for w in extra)
    ids, labels = noisy.example(0)
    assert [t for t in labels if t != -100] == plain.examples[0][1][-len([t for t in labels if t != -100]):]
    assert all(plain.example(e) == plain.examples[e] for e in range(plain.episodes))
    with pytest.raises(ValueError, match="query_noise"):
        ClipBatcher(data, proc, 2, query_noise=1.5)


def test_a_run_learns_a_handful_of_frames(data):
    """40 steps on the same two windows: the mask loss of the kept candidates falls clearly and the
    kept masks come to overlap the targets (untrained: IoU 0)."""
    model, proc = _model(data)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batch = ClipBatcher(data, proc, 2).build([0, 1], [0, 1])
    hist = [clip_train_step(model, batch, opt) for _ in range(40)]
    first, last = hist[:3], hist[-3:]
    assert np.mean([h["mask_dice"] for h in last]) < 0.75 * np.mean([h["mask_dice"] for h in first])
    assert np.mean([h["mask_loss"] for h in last]) < 0.25 * np.mean([h["mask_loss"] for h in first])
    assert np.mean([h["keyframe_iou"] for h in last]) > 0.25 and np.mean([h["tracked_iou"] for h in last]) > 0.25
    assert last[-1]["lm_loss"] < 0.5 * first[0]["lm_loss"]


def test_three_steps_write_a_checkpoint_the_eval_policy_runs(shard_dir, tmp_path):
    import vlm_agent.sim  # noqa: F401
    from vlm_agent.evaluation.seg_policies import make_sa2va_policy
    from vlm_agent.sim.env import NavEnv
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.training.seg_data import seg_sim_config

    out = tmp_path / "ckpt"
    summary = train(_config(shard_dir, out, max_steps=3), progress=False)
    assert summary["steps"] == 3 and summary["episodes"] == 2 and summary["frames"] == 2 * CLIP and summary["frame_size"] == SIZE
    assert summary["best"]["episodes"] == 1 and 0.0 <= summary["best"]["clip_miou"] <= 1.0  # the closed-loop selection ran
    # ... and the absent-target check beside it: the val episode filmed turned away, every frame scored
    best = summary["best"]
    assert best["absent_episodes"] == 1 and 0.0 <= best["absent_empty_rate"] <= 1.0 and best["absent_mean_false_pixels"] >= 0
    assert best["absent_clip_empty_rate"] in (0.0, 1.0)
    for name in ("config.json", "model.safetensors", "training_summary.json", "training_curves.png", "train_log.jsonl"):
        assert (out / name).is_file(), name
    assert json.loads((out / "training_summary.json").read_text())["config"]["sam2_trainable"] == "all"
    assert (tmp_path / "ckpt.work" / "train_state.pt").is_file()
    policy = make_sa2va_policy("seg", model_dir=str(out))
    episode = make_episodes("seg", "val", 1, 0)[0]
    env = NavEnv(seg_sim_config(SIZE))
    try:
        obs = env.reset(episode)
        policy.reset(episode)
        mask = policy.act(obs)
    finally:
        env.close()
    assert mask.shape == (SIZE, SIZE) and mask.dtype == bool and policy.last_source == "detected"


def test_resume_continues_from_the_saved_step(shard_dir, tmp_path):
    out = tmp_path / "ckpt"
    train(_config(shard_dir, out, max_steps=2, val_episodes=0), progress=False)
    state = torch.load(tmp_path / "ckpt.work" / "train_state.pt", weights_only=False)
    assert state["step"] == 2
    summary = train(_config(shard_dir, out, max_steps=4, val_episodes=0), progress=False)
    assert summary["steps"] == 4
    assert torch.load(tmp_path / "ckpt.work" / "train_state.pt", weights_only=False)["step"] == 4
    evals = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines() if "val" in json.loads(line)]
    assert evals == [2, 4]
    fresh = train(_config(shard_dir, tmp_path / "other", max_steps=2, val_episodes=0, resume=0), progress=False)
    assert fresh["steps"] == 2 and os.path.isdir(tmp_path / "other")
