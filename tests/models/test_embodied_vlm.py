"""ModelTester-style suite run over every registered family, plus core-specific checks."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.models.embodied_vlm.configuration_embodied_vlm import EmbodiedVLMConfig
from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import EmbodiedVLMModel, TrieLogitsProcessor, scatter_placeholders
from vlm_agent.models.embodied_vlm.processing_embodied_vlm import EmbodiedVLMImageProcessor, EmbodiedVLMProcessor, train_tokenizer
from vlm_agent.models.registry import MODEL_REGISTRY, get_config_class, load_model_and_processor, load_pretrained, model_type_of, register_auto_classes

from .conftest import tiny_config, tiny_model_and_processor


def _sentence(model, processor, n_images: int = 1, n_states: int = 0):
    c = model.config
    words = processor.tokenizer("go to the red ball", add_special_tokens=False).input_ids
    ids = [c.bos_token_id] + words[:3] + [c.image_token_id] * (c.grid_size ** 2 * n_images) + [c.state_token_id] * n_states + words[3:]
    return torch.tensor([ids])


def _inputs(model, processor, n_states=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    pixels = torch.randn(1, 3, c.image_size, c.image_size, generator=g)
    states = torch.randn(n_states, c.state_dim, generator=g) if n_states else None
    return _sentence(model, processor, 1, n_states), pixels, states


def _n_states(model):
    return 2 if model.config.state_dim else 0


def _save(model, processor, directory):
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def test_every_registered_model_builds_and_runs(tiny_pair):
    model, processor = tiny_pair
    ids, pixels, states = _inputs(model, processor, _n_states(model))
    out = model(ids, pixel_values=pixels, state_vectors=states)
    assert out.logits.shape == (1, ids.shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()
    assert out.hidden_states is None


def test_hidden_states_on_request(tiny_pair):
    """A Sa2VA [SEG] token reads the last hidden state: one per layer + embeddings, the last equal to
    what the LM head sees (final norm applied)."""
    model, processor = tiny_pair
    ids, pixels, states = _inputs(model, processor, _n_states(model))
    with torch.no_grad():
        out = model(ids, pixel_values=pixels, state_vectors=states, output_hidden_states=True)
    n_layers = model.config.text_config.num_hidden_layers
    assert len(out.hidden_states) == n_layers + 1
    last = out.hidden_states[-1]
    assert last.shape == (1, ids.shape[1], model.config.text_config.hidden_size)
    torch.testing.assert_close(model.get_output_embeddings()(last), out.logits, atol=1e-5, rtol=1e-5)


def test_save_load_round_trip(tiny_pair, tmp_path):
    model, processor = tiny_pair
    _save(model, processor, tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "preprocessor_config.json"} <= set(os.listdir(tmp_path))
    assert model_type_of(tmp_path) == model.config.model_type
    loaded, proc = load_model_and_processor(tmp_path)
    assert type(loaded) is type(model) and type(proc) is type(processor)
    ids, pixels, states = _inputs(model, processor, _n_states(model))
    with torch.no_grad():
        a = model(ids, pixel_values=pixels, state_vectors=states).logits
        b = loaded(ids, pixel_values=pixels, state_vectors=states).logits
        c = load_pretrained(tmp_path)(ids, pixel_values=pixels, state_vectors=states).logits
    # Same weights; oneDNN may pick another kernel for a freshly allocated copy (last-bit noise).
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(b, c, rtol=0, atol=0)
    for name in processor.special_tokens():
        assert proc.token_id(name) == processor.token_id(name)


def test_auto_classes_load_our_directories(tiny_pair, tmp_path):
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

    register_auto_classes()
    model, processor = tiny_pair
    _save(model, processor, tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is type(model.config)
    assert type(AutoModel.from_pretrained(tmp_path)) is type(model)
    assert type(AutoProcessor.from_pretrained(tmp_path)) is type(processor)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), EmbodiedVLMImageProcessor)


def test_generate_with_and_without_hidden_states(tiny_pair):
    """transformers' generate() on the multimodal prompt equals a hand-rolled greedy loop; with
    output_hidden_states it also returns them per step."""
    model, processor = tiny_pair
    ids, pixels, states = _inputs(model, processor, _n_states(model))
    kw = dict(pixel_values=pixels, state_vectors=states, attention_mask=torch.ones_like(ids), max_new_tokens=4, do_sample=False,
              eos_token_id=-1 if False else model.config.eos_token_id, pad_token_id=model.config.pad_token_id, min_new_tokens=4)
    with torch.no_grad():
        seq = model.generate(input_ids=ids, **kw)
        out = model.generate(input_ids=ids, output_hidden_states=True, return_dict_in_generate=True, **kw)
        cur, manual = ids, []
        for _ in range(4):
            logits = model(cur, pixel_values=pixels, state_vectors=states).logits[0, -1]
            if len(manual) < 4:  # min_new_tokens: EOS masked
                logits[model.config.eos_token_id] = -float("inf")
            tok = int(torch.argmax(logits))
            manual.append(tok)
            cur = torch.cat([cur, torch.tensor([[tok]])], 1)
    assert seq[0, ids.shape[1]:].tolist() == manual
    assert out.sequences[0, ids.shape[1]:].tolist() == manual
    assert len(out.hidden_states) == 4 and out.hidden_states[0][-1].shape[1] == ids.shape[1]


def test_constrained_decoding_matches_generate_with_the_trie_processor(tiny_pair):
    """The fast trie decoder (forced tokens skipped) gives the same answer as generate() with
    TrieLogitsProcessor, with and without a first-token bias."""
    model, processor = tiny_pair
    tok = processor.tokenizer
    answers = ["move forward 25 cm", "turn left 30 degrees", "turn left 30 degrees, stop", "stop"]
    trie: dict = {}
    for a in answers:
        node = trie
        for t in tok(a, add_special_tokens=False).input_ids + [model.config.eos_token_id]:
            node = node.setdefault(t, {})
    ids, pixels, states = _inputs(model, processor, _n_states(model))
    for bias in ({}, {next(iter(trie)): 5.0}, {t: -5.0 for t in trie}):
        with torch.no_grad():
            fast = model.generate_constrained(ids, trie, pixel_values=pixels, state_vectors=states, first_token_bias=bias)
            proc = TrieLogitsProcessor(trie, ids.shape[1], model.config.eos_token_id, bias)
            slow = model.generate(input_ids=ids, pixel_values=pixels, state_vectors=states, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                                  do_sample=False, logits_processor=[proc], eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id)
        assert fast == slow[0, ids.shape[1]:].tolist()
        assert tok.decode(fast, skip_special_tokens=True) in answers


def test_strict_load_rejects_missing_and_unexpected_keys(tiny_pair, tmp_path):
    from safetensors.torch import load_file, save_file

    model, processor = tiny_pair
    _save(model, processor, tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    missing = dict(state)
    missing.pop(next(k for k in missing if k.startswith("multi_modal_projector.")))
    save_file(missing, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(tmp_path)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(tmp_path)


def test_dtype_and_device_on_load(tiny_pair, tmp_path):
    model, processor = tiny_pair
    _save(model, processor, tmp_path)
    half = load_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.language_model.dtype == torch.bfloat16
    ids, pixels, states = _inputs(model, processor, _n_states(model))
    with torch.no_grad():
        out = half(ids, pixel_values=pixels, state_vectors=states).logits
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError, ValueError)):
            load_pretrained(tmp_path, device="cuda")


def test_tokenizer_and_config_must_agree(tiny_pair, tmp_path):
    """Token ids are looked up by name; a directory whose tokenizer moved a special token is refused."""
    model, processor = tiny_pair
    _save(model, processor, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["image_token_id"] = cfg["eos_token_id"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="disagree on special token ids"):
        load_model_and_processor(tmp_path)


def test_family_tokens_are_added_by_name_to_any_tokenizer():
    """A tokenizer without the family's tokens (e.g. Qwen2's own) gains them; ids are wherever the
    tokenizer put them, not fixed."""
    tok = train_tokenizer()
    before = len(tok)

    class SegProcessor(EmbodiedVLMProcessor):
        extra_special_tokens = ("[SEG]",)

    assert SegProcessor.add_special_tokens_to(tok) == 1 and len(tok) == before + 1
    proc = SegProcessor(EmbodiedVLMImageProcessor(), tok)
    assert proc.token_id("[SEG]") == before
    assert tok.decode([proc.token_id("[SEG]")]) == "[SEG]"
    assert SegProcessor.add_special_tokens_to(tok) == 0
    with pytest.raises(ValueError, match="no '\\[NAV\\]' token"):
        proc.token_id("[NAV]")


def test_resize_token_embeddings_for_new_tokens(tiny_pair):
    model, processor = tiny_pair
    n = model.config.text_config.vocab_size
    model.resize_token_embeddings(n + 64)
    assert model.get_input_embeddings().weight.shape[0] == n + 64 == model.config.text_config.vocab_size
    assert model.get_output_embeddings().weight.shape[0] == n + 64


def test_placeholder_count_mismatch_is_a_clear_error(tiny_pair):
    model, processor = tiny_pair
    c = model.config
    ids = _sentence(model, processor, n_images=1)
    pixels = torch.randn(2, 3, c.image_size, c.image_size)  # features for 2 images, slots for 1
    with pytest.raises(ValueError, match=r"placeholder tokens .* feature vectors"):
        model(ids, pixel_values=pixels)


def test_scatter_places_features_in_row_major_order():
    embeds = torch.zeros(2, 4, 3)
    ids = torch.tensor([[9, 4, 9, 4], [4, 9, 9, 9]])
    feats = torch.arange(9, dtype=torch.float32).reshape(3, 3)
    out = scatter_placeholders(embeds, ids, 4, feats, "x")
    assert out[0, 1].tolist() == [0, 1, 2] and out[0, 3].tolist() == [3, 4, 5] and out[1, 0].tolist() == [6, 7, 8]
    assert out[0, 0].abs().sum() == 0


def test_state_vectors_reach_the_lm_and_are_checked():
    model, processor = tiny_model_and_processor("embodied_vlm", state_dim=3)
    ids, pixels, states = _inputs(model, processor, n_states=2)
    with torch.no_grad():
        a = model(ids, pixel_values=pixels, state_vectors=states).logits
        b = model(ids, pixel_values=pixels, state_vectors=states + 1.0).logits
    assert not torch.allclose(a[:, -1], b[:, -1])
    with pytest.raises(ValueError, match="state vectors"):
        model(ids, pixel_values=pixels, state_vectors=states[:1])
    no_state, _ = tiny_model_and_processor("embodied_vlm")
    with pytest.raises(ValueError, match="state_dim is 0"):
        no_state(ids, pixel_values=pixels, state_vectors=states)


@pytest.mark.parametrize("vision,text", [("clip", "llama"), ("siglip", "llama"), ("clip", "qwen2")])
def test_clip_and_llama_sub_configs(vision, text, tmp_path):
    model, processor = tiny_model_and_processor("embodied_vlm", vision=vision, text=text)
    feats = model.get_image_features(torch.randn(2, 3, 16, 16))
    assert feats.shape == (2, 64, 32)  # CLIP's class token dropped: a pure 8x8 grid
    _save(model, processor, tmp_path)
    again = EmbodiedVLMModel.from_pretrained(tmp_path)
    assert again.config.vision_config.model_type == model.config.vision_config.model_type


def test_siglip_pooling_head_is_not_built():
    model, _ = tiny_model_and_processor("embodied_vlm")
    assert model.config.vision_config.vision_use_head is False
    assert not any(".head." in k for k in model.state_dict())


def test_patch_grid_follows_the_conv_for_non_divisible_sizes():
    """siglip-so400m-patch14-384: 384 / 14 is not an integer; the conv gives a 27 x 27 grid."""
    from transformers import SiglipVisionConfig

    cfg = EmbodiedVLMConfig(vision_config=SiglipVisionConfig(image_size=30, patch_size=4, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2),
                            text_config={"model_type": "qwen2", "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1})
    assert cfg.grid_size == 7
    model = EmbodiedVLMModel(cfg).eval()
    assert model.get_vision_features(torch.randn(1, 3, 30, 30)).shape == (1, 49, 16)


def test_vision_encoder_is_swappable(tiny_pair, tmp_path):
    model, processor = tiny_pair
    c = model.config
    pixels = torch.randn(2, 3, c.image_size, c.image_size)
    ref = model.get_image_features(pixels)
    tower = model.vision_tower

    class NumpyEncoder:  # the accel interface: encode(pixel_values) -> (B, N, D)
        calls = 0

        def encode(self, pv):
            NumpyEncoder.calls += 1
            with torch.no_grad():
                return tower(pv).numpy()

    model.set_vision_encoder(NumpyEncoder())
    with torch.no_grad():
        torch.testing.assert_close(model.get_image_features(pixels), ref, atol=1e-6, rtol=0)
    assert NumpyEncoder.calls == 1
    assert not any(k.startswith("_external") for k in model.state_dict())
    model.set_vision_encoder(torch.nn.Identity() if False else _Doubler(tower))
    _save(model, processor, tmp_path)  # an external torch module is never saved
    assert not any(k.startswith("_external") for k in load_pretrained(tmp_path).state_dict())

    class Wrong:
        def encode(self, pv):
            return np.zeros((pv.shape[0], 5, 7), np.float32)

    model.set_vision_encoder(Wrong())
    with pytest.raises(ValueError, match="vision encoder returned"):
        model.get_image_features(pixels)
    model.set_vision_encoder(None)
    assert model.vision_encoder is tower
    with pytest.raises(TypeError):
        model.set_vision_encoder(object())


class _Doubler(torch.nn.Module):
    def __init__(self, tower):
        super().__init__()
        self.tower = tower
        self.scale = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, pv):
        return self.tower(pv) * self.scale


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_vision_tower_traces_without_python_control_flow(tiny_model):
    c = tiny_model.config
    traced = torch.jit.trace(tiny_model.vision_tower, torch.randn(2, 3, c.image_size, c.image_size), check_trace=False)
    x = torch.randn(3, 3, c.image_size, c.image_size)  # another batch size through the same graph
    torch.testing.assert_close(traced(x), tiny_model.vision_tower(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bad,match", [
    ({"vision_config": {"model_type": "qwen2"}}, "model_type 'qwen2'"),
    ({"text_config": {"model_type": "siglip_vision_model"}}, "not one of"),
    ({"image_token_id": 10_000}, "image_token_id"),
    ({"state_token_id": 4, "image_token_id": 4}, "must differ"),
    ({"state_dim": -1}, "state_dim"),
])
def test_config_validation(bad, match):
    good = tiny_config("embodied_vlm").to_dict()
    good.pop("transformers_version", None)
    with pytest.raises(ValueError, match=match):
        EmbodiedVLMConfig(**{**good, **bad})


def test_config_round_trip(tmp_path):
    for name in MODEL_REGISTRY:
        cfg = tiny_config(name)
        cfg.save_pretrained(tmp_path / name)
        again = get_config_class(name).from_pretrained(tmp_path / name)
        assert again.to_dict() == cfg.to_dict()


def test_image_processor_shapes_statistics_and_errors(tmp_path):
    pre = EmbodiedVLMImageProcessor(size={"height": 16, "width": 16})
    frames = [np.full((48, 64, 3), 255, np.uint8), np.zeros((16, 16, 3), np.uint8)]
    pv = pre(frames)["pixel_values"]
    assert pv.shape == (2, 3, 16, 16) and pv.dtype == torch.float32
    assert torch.allclose(pv[0], torch.ones(3, 16, 16)) and torch.allclose(pv[1], -torch.ones(3, 16, 16))
    for bad in (np.zeros((16, 16), np.uint8), np.zeros((16, 16, 3), np.float32), np.zeros((0, 16, 3), np.uint8), "img"):
        with pytest.raises(ValueError):
            pre(bad if isinstance(bad, np.ndarray) else [bad])
    # CLIP statistics survive a save/load (they used to be hard-coded to 0.5/0.5).
    clip = EmbodiedVLMImageProcessor(size={"height": 16, "width": 16}, image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    clip.save_pretrained(tmp_path)
    again = EmbodiedVLMImageProcessor.from_pretrained(tmp_path)
    np.testing.assert_allclose(again.image_mean, clip.image_mean)
    gray = np.full((16, 16, 3), 128, np.uint8)
    expected = (128 / 255 - np.array(clip.image_mean)) / np.array(clip.image_std)
    np.testing.assert_allclose(again(gray)["pixel_values"][0, :, 0, 0].numpy(), expected, rtol=1e-5)


REFERENCE = os.path.join(os.path.dirname(__file__), "data", "navid_reference.json")


def test_regression_reference_logits():
    """Seeded tiny NaVid model on a fixed input vs. saved reference numbers (catches silent changes
    to initialisation order, feature placement or FiLM). Regenerate with VLM_AGENT_UPDATE_REFERENCE=1
    only for a deliberate change (last: the core moved onto transformers' PreTrainedModel)."""
    model, processor = tiny_model_and_processor("navid", seed=1234)
    # Non-zero FiLM output so the reference covers grounding too.
    torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.05)
    g = torch.Generator().manual_seed(7)
    pixels = torch.randn(3, 3, 16, 16, generator=g)
    words = processor.encode_instruction("go to the red ball")
    with torch.no_grad():
        cond = model.instruction_condition(torch.tensor([words]))
        cur, his = model.encode_frames(pixels, cond)
        feats = torch.cat([his[0], his[1], cur[2]])
        ids = torch.tensor([processor.prompt_ids(words, 2)])
        logits = model(input_ids=ids, image_features=feats).logits[0, -1, :16]
    values = [round(float(v), 6) for v in logits]
    if os.environ.get("VLM_AGENT_UPDATE_REFERENCE"):
        with open(REFERENCE, "w") as f:
            json.dump({"torch": torch.__version__, "last_logits_first16": values}, f, indent=1)
    with open(REFERENCE) as f:
        ref = json.load(f)["last_logits_first16"]
    np.testing.assert_allclose(values, ref, atol=1e-4)


def test_wide_frames_are_centre_cropped_not_squashed():
    """A 4:3 camera frame gives the model its centre square (the training view geometry)."""
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    wide = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    wide[:, 8:56] = square
    tall = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    tall[8:56] = square
    pre = EmbodiedVLMImageProcessor(size={"height": 16, "width": 16})
    np.testing.assert_array_equal(pre.to_array(wide), pre.to_array(square))
    np.testing.assert_array_equal(pre.to_array(tall), pre.to_array(square))


def test_from_pretrained_builds_on_the_meta_device(tiny_pair, tmp_path, monkeypatch):
    """No random fp32 weights are materialised before loading (what made 1B+ models unusable):
    transformers builds the module on the meta device and the checkpoint fills it."""
    from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import VisionTower

    model, processor = tiny_pair
    _save(model, processor, tmp_path)
    seen = []
    original = VisionTower.__init__

    def spy(self, vision_config):
        original(self, vision_config)
        seen.append(next(self.parameters()).device.type)

    monkeypatch.setattr(VisionTower, "__init__", spy)
    loaded = load_pretrained(tmp_path)
    assert "meta" in seen
    assert all(p.device.type == "cpu" for p in loaded.parameters())
