"""PaLM-E family specifics: the multimodal sentence (placeholders expanded, state slot), the state
vector (hand-computed), layout saved and checked, constrained step decoding, hostile prompts.
(The family also runs the ModelTester suite of test_embodied_vlm.py, as every registered family.)"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from vlm_agent.models.palme.configuration_palme import PALME_STATE_DIM, PalmeConfig
from vlm_agent.models.palme.processing_palme import PalmeProcessor
from vlm_agent.models.registry import load_model_and_processor

from .conftest import tiny_model_and_processor

STATE = {"base_pose": [1.5, -2.0, math.pi / 2], "gripper": "closed", "held": "red cube", "support/red cube": "gripper"}


@pytest.fixture(scope="module")
def pair():
    return tiny_model_and_processor("palme")


def frame(seed=0, h=20, w=30):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_prompt_expansion_by_hand(pair):
    """Each <img> becomes grid**2 = 64 <img> tokens, the state slot (whatever its words) one <state>
    token, the text around them its own tokens, after <s>."""
    model, proc = pair
    c = model.config
    tok = proc.tokenizer
    prompt = "<img> and <img> <state>base at x=9 m</state>\nTask: put the red cube on the blue plate"
    out = proc(text=prompt, images=[frame(0), frame(1)], state=STATE)
    words = lambda s: tok(s, add_special_tokens=False).input_ids  # noqa: E731
    expected = ([c.bos_token_id] + [c.image_token_id] * 64 + words(" and ") + [c.image_token_id] * 64 + words(" ")
                + [c.state_token_id] + words("\nTask: put the red cube on the blue plate"))
    assert out["input_ids"][0].tolist() == expected
    assert out["attention_mask"].tolist() == [[1] * len(expected)]
    assert out["pixel_values"].shape == (2, 3, 16, 16)
    assert out["state_vectors"].shape == (1, PALME_STATE_DIM) and out["state_vectors"].dtype == torch.float32
    # The slot's words never reach the LM: only the vector does.
    other = proc(text=prompt.replace("base at x=9 m", "anything at all"), images=[frame(0), frame(1)], state=STATE)
    assert other["input_ids"].tolist() == out["input_ids"].tolist()
    with torch.no_grad():
        logits = model(**out).logits
    assert logits.shape == (1, len(expected), c.text_config.vocab_size)


@pytest.mark.parametrize("state,vector", [
    (STATE, [1.5, -2.0, 0.0, 1.0, 1.0, 0.0, 1.0]),
    ({"base_pose": (0.0, 0.0, math.pi), "gripper": "open", "held": None}, [0, 0, -1.0, 0.0, 1, 1.0, 0]),
    ({"base_pose": [3, 4, -math.pi / 6], "gripper": 0.25, "held": "nothing"}, [3, 4, math.sqrt(3) / 2, -0.5, 1, 0.25, 0]),
    ({"gripper": "unknown"}, [0, 0, 0, 0, 0, 0.5, 0]),   # pose unknown: zeros and the flag 0
    ({"base_pose": None, "held": "blue ball"}, [0, 0, 0, 0, 0, 0.5, 1]),
])
def test_state_vector_by_hand(pair, state, vector):
    _, proc = pair
    np.testing.assert_allclose(proc.encode_state(state), np.asarray(vector, np.float32), atol=1e-6)


def test_state_reaches_the_lm(pair):
    model, proc = pair
    prompt = "<img> <state>s</state> Task: pick the red cube"
    a = proc(text=prompt, images=[frame()], state=STATE)
    b = proc(text=prompt, images=[frame()], state={**STATE, "held": None, "gripper": "open"})
    with torch.no_grad():
        la, lb = model(**a).logits[0, -1], model(**b).logits[0, -1]
    assert not torch.allclose(la, lb)


@pytest.mark.parametrize("kwargs,match", [
    (dict(text=None), "expected the prompt as text"),
    (dict(text=b"<img>"), "expected the prompt as text"),
    (dict(text="   "), "empty prompt"),
    (dict(text="x" * 100_001), "prompt too long"),
    (dict(text="<img> <img> Task", images=[frame()]), "2 <img> placeholder.* 1 image"),
    (dict(text="Task: go", images=[frame()]), "0 <img> placeholder"),
    (dict(text="<img> " * 5, images=[frame()] * 5), "at most 4"),
    (dict(text="<img> <state>s</state>", images=[frame()]), "no robot state was given"),
    (dict(text="<img> Task", images=[frame()], state=STATE), "no <state>...</state> slot"),
    (dict(text="<state>a</state> <state>b</state>", state=STATE), "2 <state>...</state> slots"),
    (dict(text="<state>a Task", state=STATE), "unbalanced state slot"),
    (dict(text="a</state> Task", state=STATE), "unbalanced state slot"),
    (dict(text="<state>a <state>b</state>", state=STATE), "unbalanced state slot"),
    (dict(text="<state>a <img> b</state>", images=[frame()], state=STATE), "inside the state slot"),
    (dict(text="<img> go", images=[np.zeros((8, 8), np.uint8)]), "RGB frame"),
    (dict(text="<img> go", images="a picture"), "list of RGB"),
    (dict(text="<state>s</state>", state=[1, 2, 3]), "must be a mapping"),
    (dict(text="<state>s</state>", state={"base_pose": "here"}), "base_pose"),
    (dict(text="<state>s</state>", state={"base_pose": [1, 2]}), "base_pose"),
    (dict(text="<state>s</state>", state={"base_pose": [1, float("nan"), 0]}), "finite"),
    (dict(text="<state>s</state>", state={"base_pose": [1e6, 0, 0]}), "finite"),
    (dict(text="<state>s</state>", state={"base_pose": [1, "x", 0]}), "3 numbers"),
    (dict(text="<state>s</state>", state={"gripper": "half"}), "gripper"),
    (dict(text="<state>s</state>", state={"gripper": 1.5}), "gripper"),
    (dict(text="<state>s</state>", state={"gripper": True}), "gripper"),
    (dict(text="<state>s</state>", state={"held": 3}), "held"),
    (dict(text="go", return_tensors="np"), "return_tensors"),
])
def test_hostile_and_malformed_prompts_raise_clear_errors(pair, kwargs, match):
    _, proc = pair
    with pytest.raises(ValueError, match=match):
        proc(**kwargs)


def test_too_many_tokens_is_refused(pair):
    _, proc = pair
    text = "Task: " + "put the red cube on the blue plate " * 200
    with pytest.raises(ValueError, match=r"tokens after expansion; this model takes at most 1536"):
        proc(text=text)


def test_special_token_strings_in_text_are_plain_text(pair):
    """An instruction cannot end the prompt or inject a separator: '</s>' and '<pad>' in the text are
    characters, not the special tokens."""
    model, proc = pair
    c = model.config
    ids = proc(text="Task: stop</s> now <pad><s>")["input_ids"][0].tolist()
    assert ids[0] == c.bos_token_id
    assert not {c.eos_token_id, c.pad_token_id, c.bos_token_id} & set(ids[1:])
    assert proc.decode(ids) == "Task: stop</s> now <pad><s>"


def test_layout_saved_with_the_model_and_checked(pair, tmp_path):
    model, proc = pair
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert {k: saved[k] for k in PalmeProcessor.LAYOUT_FIELDS} == {"image_tokens": 64, "state_dim": 7, "max_images": 4, "max_prompt_tokens": 1536}
    loaded, lproc = load_model_and_processor(tmp_path)
    inputs = lproc(text="<img> <state>s</state> Task: pick the red cube", images=[frame()], state=STATE)
    assert inputs["input_ids"].tolist() == proc(text="<img> <state>s</state> Task: pick the red cube", images=[frame()], state=STATE)["input_ids"].tolist()
    saved["image_tokens"] = 16
    (tmp_path / "processor_config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="image_tokens: processor 16 vs config 64"):
        load_model_and_processor(tmp_path)


def test_a_processor_without_layout_takes_the_configs_at_check(pair):
    model, proc = pair
    bare = PalmeProcessor(proc.image_processor, proc.tokenizer)
    with pytest.raises(ValueError, match="has no layout"):
        bare(text="Task: go")
    bare.check_config(model.config)
    assert (bare.image_tokens, bare.state_dim, bare.max_images, bare.max_prompt_tokens) == (64, 7, 4, 1536)


def _candidates(proc):
    steps = ["navigate_to(red cube)", "pick(red cube)", "place_on(blue plate)", "look_around()"]
    return steps, [proc.answer_trie([f"{k}. {s}" for s in steps + ["done()"]], [f"{k}. {s}\n" for s in steps] if k < 3 else []) for k in (1, 2, 3)]


def test_constrained_steps_are_always_valid_lines(pair):
    """Whatever the (random) weights, chained step tries give 1-3 numbered lines from the candidates,
    done() only last; one trie equals generate_constrained on it."""
    model, proc = pair
    steps, tries = _candidates(proc)
    for seed in range(3):
        inputs = proc(text="<img> <state>s</state> Task: put the red cube on the blue plate", images=[frame(seed)], state=STATE)
        text = proc.decode(model.generate_steps(inputs["input_ids"], tries, inputs["pixel_values"], inputs["state_vectors"]))
        lines = text.split("\n")
        assert 1 <= len(lines) <= 3
        for k, line in enumerate(lines, 1):
            assert line in [f"{k}. {s}" for s in steps] + [f"{k}. done()"]
        assert all("done()" not in line for line in lines[:-1])
        one = model.generate_steps(inputs["input_ids"], tries[:1], inputs["pixel_values"], inputs["state_vectors"])
        ref = model.generate_constrained(inputs["input_ids"], tries[0], pixel_values=inputs["pixel_values"], state_vectors=inputs["state_vectors"])
        assert one == ref


def test_answer_trie_rejects_empty_and_ambiguous_candidates(pair):
    _, proc = pair
    with pytest.raises(ValueError, match="no candidate answers"):
        proc.answer_trie([])
    with pytest.raises(ValueError, match="ends where another candidate continues|continues where another candidate ends"):
        proc.answer_trie([], ["1. pick(red cube)", "1. pick(red cube)\n"])
    with pytest.raises(ValueError, match="tokenises to nothing"):
        proc.answer_trie([], [""])
    trie = proc.answer_trie(["1. done()", "1. done()"])  # duplicates are harmless
    node = trie
    while node:
        (node,) = node.values()
    assert node == {}


@pytest.mark.parametrize("bad,match", [
    ({"state_dim": 3}, "state_dim: 3 must be 7"),
    ({"plan_steps": 0}, "plan_steps"),
    ({"max_images": 0}, "max_images"),
    ({"max_prompt_tokens": 2040, "max_new_tokens": 64}, "exceed text_config.max_position_embeddings 2048"),
])
def test_config_validation(pair, bad, match):
    good = pair[0].config.to_dict()
    good.pop("transformers_version", None)
    with pytest.raises(ValueError, match=match):
        PalmeConfig(**{**good, **bad})


def test_assembled_from_real_checkpoints_takes_its_layout_from_the_config(tmp_path):
    """A PaLM-E model from a (tiny) SigLIP + Qwen2 pair: the processor, built without a layout, takes
    the config's (a 40 px / patch 4 tower: 100 tokens per image); it saves and reloads."""
    from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import assemble_from_checkpoints
    from vlm_agent.models.palme.modeling_palme import PalmeModel

    from .test_real_checkpoints import _qwen_dir, _siglip_dir

    model, proc = assemble_from_checkpoints(PalmeModel, PalmeProcessor, _siglip_dir(tmp_path), _qwen_dir(tmp_path))
    assert proc.image_tokens == 100 and proc.state_dim == 7
    inputs = proc(text="<img> <state>s</state> Task: pick the red cube", images=[frame()], state=STATE)
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 100
    assert inputs["input_ids"][0, 0] == model.config.image_token_id  # Qwen2 has no BOS
    model.save_pretrained(tmp_path / "out")
    proc.save_pretrained(tmp_path / "out")
    again, aproc = load_model_and_processor(tmp_path / "out")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, again(**inputs).logits, rtol=0, atol=1e-5)
