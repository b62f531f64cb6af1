"""Manipulation planner data (recorded loop calls, perturbed oracle, rewards) and the PaLM-E / Octopus trainer."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlm_agent.cli import build_parser
from vlm_agent.planners.palme_grammar import grammar_text
from vlm_agent.commands.train import config_from_args
from vlm_agent.training.manip import (ManipBatcher, ManipTrainConfig, collect_manip_shards, load_manip_shards, sample_loss, train,
                                      training_examples)


@pytest.fixture(scope="module")
def palme_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("palme")
    collect_manip_shards(str(root), "palme", episodes=6, episodes_per_shard=3, perturb=0.4, seed=3, image_size=32, progress=False)
    return root


def test_unperturbed_collection_is_the_oracle_and_succeeds(tmp_path):
    for style in ("palme", "octopus"):
        collect_manip_shards(str(tmp_path / style), style, episodes=3, episodes_per_shard=3, perturb=0.0, image_size=32, progress=False)
        images, records = load_manip_shards([str(tmp_path / style)])
        assert len(images) == len(records) > 0
        assert all(r["executed"] == r["label"] and r["episode_success"] == 1.0 for r in records)
        if style == "palme":
            assert records[0]["label"].startswith("1. navigate_to(") and any(r["label"] == "1. done()" for r in records)
            assert "<state>" in records[0]["prompt"] and grammar_text() not in records[0]["prompt"]
        else:
            assert all(r["reward"] == 1.0 for r in records) and "robot.pick(" in records[0]["label"]


def test_perturbed_collection_holds_failures_and_recoveries(palme_data, tmp_path):
    _, records = load_manip_shards([str(palme_data)])
    wrong = [k for k, r in enumerate(records) if r["executed"] != r["label"]]
    assert wrong, "perturb=0.4 never perturbed a call"
    # the call after a wrong step sees it in its history, and the oracle's label is for that state
    k = next(k for k in wrong if k + 1 < len(records) and records[k + 1]["episode_id"] == records[k]["episode_id"])
    step = records[k]["executed"].split(". ", 1)[1]
    assert step.split("(")[0] in records[k + 1]["prompt"].split("Done so far:")[-1]
    # Octopus: a perturbed program fails its round (reward 0) and the next round recovers
    collect_manip_shards(str(tmp_path / "o"), "octopus", episodes=8, episodes_per_shard=8, perturb=0.5, seed=1, image_size=32, progress=False)
    _, orec = load_manip_shards([str(tmp_path / "o")])
    failed = [r for r in orec if r["executed"] != r["label"]]
    assert any(r["reward"] == 0.0 for r in failed)  # (a perturbed program can still reach the target: RLEF then rewards it)
    assert any("Feedback on an earlier attempt" in r["prompt"] and r["reward"] == 1.0 for r in orec)


def test_collection_is_resumable_and_deterministic(palme_data, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in palme_data.glob("*.npz")}
    collect_manip_shards(str(palme_data), "palme", episodes=6, episodes_per_shard=3, perturb=0.4, seed=3, image_size=32, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in palme_data.glob("*.npz")} == before
    collect_manip_shards(str(tmp_path), "palme", episodes=3, episodes_per_shard=3, perturb=0.4, seed=3, image_size=32, progress=False)
    a = np.load(palme_data / "manip_00000.npz")["records"]
    b = np.load(tmp_path / "manip_00000.npz")["records"]
    assert list(a) == list(b)


def test_rlef_examples_weight_successful_own_rounds_only():
    recs = [{"prompt": "p1", "label": "L1", "executed": "E1", "reward": 1.0}, {"prompt": "p2", "label": "L2", "executed": "E2", "reward": 0.0},
            {"prompt": "p3", "label": "L3", "executed": "L3", "reward": 1.0}]
    assert [(p, a, w) for _, p, a, w in training_examples(recs)] == [("p1", "L1", 1.0), ("p2", "L2", 1.0), ("p3", "L3", 1.0)]
    ex = training_examples(recs, rlef_weight=2.0)
    assert ("p1", "E1", 2.0) in [(p, a, w) for _, p, a, w in ex] and len(ex) == 4


def test_batches_train_the_answer_only_with_the_state_vector(palme_data):
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.palme.processing_palme import PalmeProcessor
    from vlm_agent.models.registry import new_model

    images, records = load_manip_shards([str(palme_data)])
    tok = train_tokenizer([r["prompt"] for r in records], special_tokens=PalmeProcessor.special_tokens())
    model, proc = new_model("palme", tok, image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, text_hidden=32, text_layers=1, heads=2,
                            max_images=1, max_prompt_tokens=512)
    batcher = ManipBatcher("palme", proc, images, records, training_examples(records))
    batch = batcher.build([0, 1], augment=False)
    answer = proc.answer_ids(records[0]["label"])
    labelled = batch["labels"][0][batch["labels"][0] != -100].tolist()
    assert labelled == answer
    assert batch["state_vectors"].shape == (2, 7) and batch["pixel_values"].shape == (2, 3, 32, 32)
    assert torch.isfinite(sample_loss(model, batch))


def test_training_learns_resumes_and_the_checkpoint_plans(palme_data, tmp_path):
    from vlm_agent.evaluation.manip_planners import evaluate_manip_planner
    from vlm_agent.planners.manip_backends import make_manip_backend

    out = tmp_path / "ck"
    small = dict(family="palme", data=[str(palme_data)], out_dir=str(out), image_size=32, patch_size=16, vision_hidden=32, vision_layers=1,
                 text_hidden=48, text_layers=2, heads=2, val_episodes=2, threads=1, lr=3e-3, warmup_steps=5, batch_size=16)
    summary = train(ManipTrainConfig(**small, max_steps=120, minutes=5), progress=False)
    losses = [json.loads(line)["loss_ema"] for line in open(out / "train_log.jsonl") if "val" not in line]
    assert summary["steps"] == 120 and losses[-1] < 0.5 * losses[0], losses
    assert (out / "training_curves.png").exists() and (out / "training_summary.json").exists()
    backend = make_manip_backend("palme", "builtin", model_dir=str(out))
    res = evaluate_manip_planner("palme", 1, backend_factory=lambda env: backend, image_size=32)
    assert res["per_episode"][0]["parse_errors"] == 0  # constrained decoding: always an executable step
    again = train(ManipTrainConfig(**small, max_steps=125, minutes=5), progress=False)  # resumes at 120
    assert again["steps"] == 125


def test_train_cli_dispatches_families_and_refuses_foreign_flags():
    parse = build_parser(["train"]).parse_args
    cfg, module = config_from_args(parse(["train", "--family", "octopus", "--data", "d", "--rlef-weight", "1"]))
    assert cfg.family == "octopus" and cfg.rlef_weight == 1.0 and cfg.out_dir == "checkpoints/octopus_tiny" and module.__name__.endswith("manip")
    cfg, module = config_from_args(parse(["train", "--data", "d", "--stop-weight", "3"]))
    assert module.__name__.endswith("navid") and cfg.stop_weight == 3.0
    with pytest.raises(ValueError, match="does not take --stop-weight"):
        config_from_args(parse(["train", "--family", "palme", "--data", "d", "--stop-weight", "3"]))
    with pytest.raises(ValueError, match="--data is required"):
        config_from_args(parse(["train", "--family", "palme"]))


def test_augmentation_rewords_around_the_object_phrases_only():
    from vlm_agent.planners.manip_backends import object_phrases
    from vlm_agent.sim.episodes import HELD_OUT_TEMPLATES, TEMPLATES
    from vlm_agent.training.manip import FILLER_WORDS, augment_instruction, augment_prompt

    def words(templates):
        return {w for task in ("place", "stack", "bring") for t in templates[task] for w in t.split() if "{" not in w}

    only_held_out = words(HELD_OUT_TEMPLATES) - words(TEMPLATES)  # set, down, pile, onto, carry, over
    assert only_held_out and not only_held_out & set(FILLER_WORDS)
    from vlm_agent.skills.resolver import COLOURS, SHAPE_SYNONYMS

    assert not set(FILLER_WORDS) & (set(COLOURS) | set(SHAPE_SYNONYMS))  # a filler must not read as an object
    rng = np.random.default_rng(0)
    text = "stack the cyan cube on top of the green cube"
    outs = {augment_instruction(rng, text) for _ in range(50)}
    assert len(outs) > 20
    assert all(object_phrases(o) == ["cyan cube", "green cube"] for o in outs)
    prompt = "<img> Robot: x\nTask: " + text + "\nFeedback on an earlier attempt (1 of 1):\nrobot.pick('cyan cube')"
    new = augment_prompt(rng, prompt)
    assert new.split("\n")[0] == "<img> Robot: x" and new.split("\n", 2)[2] == prompt.split("\n", 2)[2]


def test_nonce_colours_replace_the_task_colours_consistently_in_prompt_and_answer():
    from vlm_agent.training.manip import nonce_colours

    prompt = ("<img> Robot: gripper closed; holding red cube\nTask: put the red cube on the blue plate\n"
              "Feedback on an earlier attempt (1 of 1):\n- pick('red cube'): ok: holding red cube")
    answer = "robot.navigate_to('blue plate')\nrobot.place_on('blue plate')\nTarget state:\n1. on(red cube, blue plate)"
    p, a = nonce_colours(np.random.default_rng(1), prompt, answer)
    assert "red" not in p + a and "blue" not in p + a
    red = p.split("Task: put the ")[1].split(" cube")[0]
    blue = p.split(" cube on the ")[1].split(" plate")[0]
    assert red != blue and p.count(red + " cube") == 4 and a.count(red + " cube") == 1 and a.count(blue + " plate") == 3
