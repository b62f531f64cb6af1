"""Attribute-verifier training (`training/verifier_train.py`): training crops (deterministic without
augmentation, never an empty mask with it), the val metrics, a short run's files and checkpoint,
resuming, and the CLI family."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vlm_agent.models.attribute_verifier import AttributeVerifierConfig, AttributeVerifierModel
from vlm_agent.training import verifier_train
from vlm_agent.training.verifier_data import collect_verifier_shards, load_verifier_shards
from vlm_agent.training.verifier_train import InstanceBatcher, TrainConfig, VerifierTrainConfig, evaluate_verifier, train

SIZE = 64
SMALL = dict(max_steps=20, batch_size=16, threads=1, minutes=1.0, crop_size=16, channels="8,16", warmup_steps=2)
METRICS = ("colour_acc", "shape_acc", "object_shape_acc", "other_recall", "object_shape_acc_small", "object_shape_acc_medium",
           "object_shape_acc_large", "shape_acc_held_out", "colour_acc_held_out", "shape_acc_seen", "colour_acc_seen", "verify_auc",
           *(f"accept_{w}@{t}" for t in ("0.05", "0.1", "0.2", "0.5") for w in ("true", "lookalike")))


@pytest.fixture(scope="module")
def shard_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("verifier")
    kw = dict(episodes_per_shard=2, views=2, image_size=SIZE, progress=False)
    collect_verifier_shards(str(root / "train"), "train", episodes=3, seed=0, **kw)
    collect_verifier_shards(str(root / "val"), "val", episodes=2, seed=1, **kw)  # seed 1: held-out pairs among its objects
    return str(root / "train"), str(root / "val")


@pytest.fixture(scope="module")
def data(shard_dirs):
    return load_verifier_shards(shard_dirs[0])


@pytest.fixture(scope="module")
def run(shard_dirs, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ck"
    cfg = VerifierTrainConfig(data=[shard_dirs[0]], val_data=[shard_dirs[1]], out_dir=str(out), **SMALL)
    return out, train(cfg, progress=False)


def _cfg(data):
    return AttributeVerifierConfig(colours=data["colours"], shapes=data["shapes"], crop_size=16, channels=(8, 16))


def test_config_is_the_cli_family_config_and_checks_its_fields():
    assert TrainConfig is VerifierTrainConfig
    cfg = VerifierTrainConfig()
    assert cfg.out_dir == "checkpoints/attribute_verifier" and cfg.resume is True and cfg.data == [] and cfg.val_data == []
    for bad, match in (({"batch_size": 0}, "batch_size"), ({"crop_size": 4}, "crop_size"), ({"context": 0.5}, "context")):
        with pytest.raises(ValueError, match=match):
            VerifierTrainConfig(**bad)


def test_unaugmented_crops_are_deterministic_and_show_the_instance(data):
    cfg = _cfg(data)
    rows = np.arange(len(data["inst_view"]))
    a = InstanceBatcher(data, cfg, seed=0, augment=False).crops(rows)
    b = InstanceBatcher(data, cfg, seed=1, augment=False).crops(rows)
    assert a.shape == (len(rows), 4, 16, 16)
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    # the crop of row r is the processor's crop of its frame and its instance mask
    from vlm_agent.models.attribute_verifier import AttributeVerifierProcessor

    proc = AttributeVerifierProcessor(cfg)
    for r in (0, len(rows) - 1):
        view = data["inst_view"][r]
        torch.testing.assert_close(a[r], proc(data["frames"][view], data["instances"][view] == data["inst_local"][r])[0])
    assert (a[:, 3].flatten(1).amax(1) > 0.5).all()  # every crop has its mask in it


def test_augmented_crops_vary_and_perturbed_masks_are_never_empty(data):
    cfg = _cfg(data)
    batcher = InstanceBatcher(data, cfg, seed=0, augment=True)
    rows = np.arange(len(data["inst_view"]))
    a, b = batcher.crops(rows), batcher.crops(rows)
    assert a.shape == b.shape == (len(rows), 4, 16, 16) and not torch.equal(a, b)
    assert float(a[:, :3].min()) >= 0.0 and float(a[:, :3].max()) <= 1.0
    views = data["inst_view"][rows]
    masks = torch.from_numpy(data["instances"][views] == data["inst_local"][rows][:, None, None])
    # hand-made small masks too: one pixel, a 3 px line, a 2x4 block, an L of 9 px
    small = torch.zeros(4, SIZE, SIZE, dtype=torch.bool)
    small[0, 5, 5] = True
    small[1, 10, 10:13] = True
    small[2, 20:22, 30:34] = True
    small[3, 40:45, 40] = True
    small[3, 44, 41:45] = True
    masks = torch.cat([masks, small])
    changed = 0
    for _ in range(12):
        out = batcher._perturb(masks)
        assert out.shape == masks.shape and out.dtype == torch.bool
        assert out.flatten(1).any(1).all()
        changed += int((out != masks).flatten(1).any(1).sum())
    assert changed > 0.3 * 12 * len(masks)  # most draws grow, shave or cut


def test_sample_draws_labels_of_the_rows(data):
    batcher = InstanceBatcher(data, _cfg(data), seed=3, augment=False)
    crops, colour, shape = batcher.sample(32)
    assert crops.shape == (32, 4, 16, 16) and colour.dtype == shape.dtype == torch.int64
    assert set(colour.tolist()) <= set(data["inst_colour"].tolist()) and set(shape.tolist()) <= set(data["inst_shape"].tolist())
    assert ((colour >= 0) | (shape == len(data["shapes"]) - 1)).all()  # colourless rows are furniture ("other")


def test_evaluate_verifier_reports_the_documented_metrics(shard_dirs):
    val = load_verifier_shards(shard_dirs[1])
    torch.manual_seed(0)
    model = AttributeVerifierModel(_cfg(val)).eval()
    res = evaluate_verifier(model, val, batch_size=7)  # batches that do not divide the rows
    assert res["instances"] == len(val["inst_view"]) and res["objects"] == int((val["inst_colour"] >= 0).sum())
    assert set(METRICS) <= set(res)
    for key in METRICS:
        assert math.isnan(res[key]) or 0.0 <= res[key] <= 1.0, key
    for key in ("colour_acc", "shape_acc", "object_shape_acc", "verify_auc", "shape_acc_seen", "other_recall"):
        assert not math.isnan(res[key]), key
    assert evaluate_verifier(model, val, batch_size=512) == res  # batching does not change the result
    # a model that reads every crop as its true labels: perfect scores (heads forced through a lookup of the rows)
    n = len(val["inst_view"])
    colour, shape = val["inst_colour"].astype(int), val["inst_shape"].astype(int)

    class Oracle(torch.nn.Module):
        config = model.config

        def __init__(self):
            super().__init__()
            self.next = 0

        def forward(self, crops):
            rows = np.arange(self.next, self.next + len(crops))
            self.next += len(crops)
            c = torch.full((len(rows), len(self.config.colours)), -30.0)
            s = torch.full((len(rows), len(self.config.shapes)), -30.0)
            c[torch.arange(len(rows)), torch.from_numpy(np.maximum(colour[rows], 0))] = 30.0
            s[torch.arange(len(rows)), torch.from_numpy(shape[rows])] = 30.0
            return c, s

    perfect = evaluate_verifier(Oracle(), val, batch_size=n)
    assert perfect["colour_acc"] == perfect["shape_acc"] == perfect["other_recall"] == perfect["verify_auc"] == 1.0
    assert perfect["accept_true@0.5"] == 1.0 and perfect["accept_lookalike@0.05"] == 0.0


def test_a_short_run_writes_a_loadable_checkpoint(run, shard_dirs):
    out, summary = run
    for name in ("config.json", "model.safetensors", "processor_config.json", "train_log.jsonl", "training_summary.json"):
        assert (out / name).is_file(), name
    assert summary["steps"] == 20 and summary == json.loads((out / "training_summary.json").read_text())
    assert summary["best"]["step"] == 20 and 0.0 <= summary["best"]["verify_auc"] <= 1.0
    assert summary["views"] > 0 and summary["instances"] > 0 and summary["val_instances"] > 0 and summary["params"] > 0
    val_lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if '"val"' in line]
    assert [v["step"] for v in val_lines] == [20] and val_lines[0]["val"]["verify_auc"] == summary["best"]["verify_auc"]
    model = AttributeVerifierModel.from_pretrained(str(out))
    assert model.config.crop_size == 16 and model.config.channels == [8, 16] and model.config.shapes[-1] == "other"
    assert model.num_parameters() == summary["params"]
    # the saved weights are the evaluated ones: their metrics are the summary's best
    res = evaluate_verifier(model, load_verifier_shards(shard_dirs[1]))
    assert res["verify_auc"] == summary["best"]["verify_auc"] and res["colour_acc"] == summary["best"]["colour_acc"]


def test_training_needs_train_and_val_shards(shard_dirs, tmp_path):
    with pytest.raises(ValueError, match="val_data"):
        train(VerifierTrainConfig(data=[shard_dirs[0]], out_dir=str(tmp_path / "a"), **SMALL), progress=False)
    with pytest.raises(ValueError, match=r"\(data\)"):
        train(VerifierTrainConfig(val_data=[shard_dirs[1]], out_dir=str(tmp_path / "b"), **SMALL), progress=False)


def test_a_second_run_resumes_from_the_saved_step(shard_dirs, tmp_path, monkeypatch):
    calls = {"n": 0}
    sample = InstanceBatcher.sample

    def counting(self, batch_size):
        calls["n"] += 1
        return sample(self, batch_size)

    monkeypatch.setattr(verifier_train.InstanceBatcher, "sample", counting)
    base = dict(data=[shard_dirs[0]], val_data=[shard_dirs[1]], out_dir=str(tmp_path / "ck"), **{**SMALL, "max_steps": 8})
    first = train(VerifierTrainConfig(**base), progress=False)
    assert first["steps"] == 8 and calls["n"] == 8
    again = train(VerifierTrainConfig(**{**base, "max_steps": 12}), progress=False)
    assert again["steps"] == 12 and calls["n"] == 12  # 4 more steps, not 12 from scratch
    steps = [json.loads(line)["step"] for line in open(tmp_path / "ck" / "train_log.jsonl")]
    assert steps == [8, 12]  # one log across both runs
    assert again["best"]["step"] in (8, 12)
    fresh = train(VerifierTrainConfig(**{**base, "max_steps": 12, "resume": False}), progress=False)
    assert fresh["steps"] == 12 and calls["n"] == 24  # resume off: from step 0


def test_the_cli_dispatches_the_verifier_family():
    from vlm_agent.cli import build_parser
    from vlm_agent.commands.train import config_from_args

    parse = build_parser(["train"]).parse_args
    cfg, module = config_from_args(parse(["train", "--family", "verifier", "--data", "a", "b", "--val-data", "v1", "v2",
                                          "--crop-size", "24", "--channels", "8,16"]))
    assert module is verifier_train and isinstance(cfg, VerifierTrainConfig)
    assert cfg.data == ["a", "b"] and cfg.val_data == ["v1", "v2"] and cfg.crop_size == 24 and cfg.channels == "8,16"
    assert cfg.out_dir == "checkpoints/attribute_verifier"
    with pytest.raises(ValueError, match="does not take --stop-weight"):
        config_from_args(parse(["train", "--family", "verifier", "--data", "a", "--stop-weight", "3"]))
    with pytest.raises(ValueError, match="does not take --val-data"):
        config_from_args(parse(["train", "--family", "palme", "--data", "a", "--val-data", "v"]))
