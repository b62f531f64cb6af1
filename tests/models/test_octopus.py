"""Octopus family specifics: the multimodal sentence without a state slot, layout saved and checked,
greedy response generation, hostile prompts. (It also runs the ModelTester suite of
test_embodied_vlm.py, as every registered family.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vlm_agent.models.octopus.configuration_octopus import OctopusConfig
from vlm_agent.models.octopus.processing_octopus import OctopusProcessor
from vlm_agent.models.registry import load_model_and_processor

from .conftest import tiny_model_and_processor


@pytest.fixture(scope="module")
def pair():
    return tiny_model_and_processor("octopus", max_new_tokens=24)


def frame(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_prompt_expansion_by_hand(pair):
    """Three images in the text where their placeholders stand (64 tokens each); the robot state is
    text, and '<state>' in it is characters, not the state placeholder."""
    model, proc = pair
    c = model.config
    words = lambda s: proc.tokenizer(s, add_special_tokens=False).input_ids  # noqa: E731
    prompt = "<img><img> Robot: gripper <state>open</state>\nTask: stack the red cube on the blue cube<img>"
    out = proc(text=prompt, images=[frame(0), frame(1), frame(2)])
    head = words(" Robot: gripper ")
    assert out["input_ids"][0, : 1 + 128 + len(head)].tolist() == [c.bos_token_id] + [c.image_token_id] * 128 + head
    ids = out["input_ids"][0].tolist()
    assert ids.count(c.image_token_id) == 192 and ids[-64:] == [c.image_token_id] * 64
    assert c.state_token_id not in ids and "state_vectors" not in out
    assert proc.decode(ids) == prompt.replace("<img>", "")
    assert out["pixel_values"].shape == (3, 3, 16, 16)


@pytest.mark.parametrize("kwargs,match", [
    (dict(text=42), "expected the prompt as text"),
    (dict(text=""), "empty prompt"),
    (dict(text="<img> Task", images=[]), "1 <img> placeholder.* 0 image"),
    (dict(text="Task <img>", images=[frame(), frame()]), "1 <img> placeholder.* 2 image"),
    (dict(text="<img>" * 5, images=[frame()] * 5), "at most 4"),
    (dict(text="Task: go", state={"gripper": "open"}), "takes no robot state vector"),
    (dict(text="Task: " + "stack the red cube on the blue cube " * 200), "tokens after expansion"),
])
def test_hostile_and_malformed_prompts_raise_clear_errors(pair, kwargs, match):
    _, proc = pair
    with pytest.raises(ValueError, match=match):
        proc(**kwargs)


def test_greedy_response_is_text_and_bounded(pair):
    model, proc = pair
    inputs = proc(text="<img> Robot: base pose unknown\nTask: put the red cube on the blue plate", images=[frame()])
    n = inputs["input_ids"].shape[1]
    with torch.no_grad():
        seq = model.generate(**inputs, max_new_tokens=model.config.max_new_tokens, do_sample=False,
                             eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id)
    assert 1 <= seq.shape[1] - n <= 24
    assert isinstance(proc.decode(seq[0, n:]), str)


def test_layout_saved_with_the_model_and_checked(pair, tmp_path):
    model, proc = pair
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert {k: saved[k] for k in OctopusProcessor.LAYOUT_FIELDS} == {"image_tokens": 64, "max_images": 4, "max_prompt_tokens": 1536}
    loaded, lproc = load_model_and_processor(tmp_path)
    assert type(lproc) is OctopusProcessor and loaded.config.max_new_tokens == 24
    saved["max_images"] = 2
    (tmp_path / "processor_config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="max_images: processor 2 vs config 4"):
        load_model_and_processor(tmp_path)


@pytest.mark.parametrize("bad,match", [
    ({"state_dim": 7}, "state_dim: 7 must be 0"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"max_prompt_tokens": 1800, "max_new_tokens": 384}, "exceed text_config.max_position_embeddings 2048"),
])
def test_config_validation(pair, bad, match):
    good = pair[0].config.to_dict()
    good.pop("transformers_version", None)
    with pytest.raises(ValueError, match=match):
        OctopusConfig(**{**good, **bad})
