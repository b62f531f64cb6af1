"""ModelTester-style suite run over every registered model, plus core-specific checks."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.models.embodied_vlm.configuration_embodied_vlm import EmbodiedVLMConfig
from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import EmbodiedVLMModel, scatter_placeholders
from vlm_agent.models.embodied_vlm.processing_embodied_vlm import BOS_ID, IMAGE_ID, SPECIAL_TOKENS, STATE_ID, ImagePreprocessor, load_tokenizer
from vlm_agent.models.registry import MODEL_REGISTRY, get_config_class, load_pretrained, model_type_of

from .conftest import tiny_config


def _sentence(config, n_images: int = 1, n_states: int = 0):
    n = config.grid_size ** 2
    ids = [BOS_ID, 20, 21] + [IMAGE_ID] * (n * n_images) + [STATE_ID] * n_states + [22, 23]
    return torch.tensor([ids])


def _inputs(model, n_states=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = model.config
    pixels = torch.randn(1, 3, c.image_size, c.image_size, generator=g)
    states = torch.randn(n_states, c.state_dim, generator=g) if n_states else None
    return _sentence(c, 1, n_states), pixels, states


def test_every_registered_model_builds_and_runs(tiny_model):
    ids, pixels, states = _inputs(tiny_model, n_states=2 if tiny_model.config.state_dim else 0)
    out = tiny_model(ids, pixel_values=pixels, state_vectors=states)
    assert out.logits.shape == (1, ids.shape[1], tiny_model.config.text_config.vocab_size)
    assert torch.isfinite(out.logits).all()


def test_save_load_round_trip_is_exact(tiny_model, tiny_tokenizer, tmp_path):
    tiny_model.save_pretrained(tmp_path, tokenizer=tiny_tokenizer)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(tmp_path))
    assert model_type_of(tmp_path) == tiny_model.config.model_type
    loaded = load_pretrained(tmp_path)
    assert type(loaded) is type(tiny_model)
    ids, pixels, states = _inputs(tiny_model, n_states=2 if tiny_model.config.state_dim else 0)
    with torch.no_grad():
        a = tiny_model(ids, pixel_values=pixels, state_vectors=states).logits
        b = loaded(ids, pixel_values=pixels, state_vectors=states).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    tok = load_tokenizer(tmp_path)
    assert tok.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == SPECIAL_TOKENS


def test_strict_load_rejects_missing_and_unexpected_keys(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny_model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    state = load_file(path)
    missing = dict(state)
    missing.pop(next(k for k in missing if k.startswith("multi_modal_projector.")))
    save_file(missing, path)
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(tmp_path)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, path)
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(tmp_path)


def test_placeholder_count_mismatch_is_a_clear_error(tiny_model):
    c = tiny_model.config
    ids = _sentence(c, n_images=1)
    pixels = torch.randn(2, 3, c.image_size, c.image_size)  # features for 2 images, slots for 1
    with pytest.raises(ValueError, match=r"placeholder tokens .* feature vectors"):
        tiny_model(ids, pixel_values=pixels)


def test_scatter_places_features_in_row_major_order():
    embeds = torch.zeros(2, 4, 3)
    ids = torch.tensor([[9, 4, 9, 4], [4, 9, 9, 9]])
    feats = torch.arange(9, dtype=torch.float32).reshape(3, 3)
    out = scatter_placeholders(embeds, ids, 4, feats, "x")
    assert out[0, 1].tolist() == [0, 1, 2] and out[0, 3].tolist() == [3, 4, 5] and out[1, 0].tolist() == [6, 7, 8]
    assert out[0, 0].abs().sum() == 0


def test_state_vectors_reach_the_lm_and_are_checked(tiny_tokenizer):
    torch.manual_seed(0)
    model = EmbodiedVLMModel(tiny_config("embodied_vlm", 512, state_dim=3)).eval()
    ids, pixels, states = _inputs(model, n_states=2)
    with torch.no_grad():
        a = model(ids, pixel_values=pixels, state_vectors=states).logits
        b = model(ids, pixel_values=pixels, state_vectors=states + 1.0).logits
    assert not torch.allclose(a[:, -1], b[:, -1])
    with pytest.raises(ValueError, match="state vectors"):
        model(ids, pixel_values=pixels, state_vectors=states[:1])
    no_state = EmbodiedVLMModel(tiny_config("embodied_vlm", 512)).eval()
    with pytest.raises(ValueError, match="state_dim is 0"):
        no_state(ids, pixel_values=pixels, state_vectors=states)


@pytest.mark.parametrize("vision,text", [("clip", "llama"), ("siglip", "llama"), ("clip", "qwen2")])
def test_clip_and_llama_sub_configs(vision, text, tmp_path):
    torch.manual_seed(0)
    model = EmbodiedVLMModel(tiny_config("embodied_vlm", 512, vision=vision, text=text)).eval()
    feats = model.get_image_features(torch.randn(2, 3, 16, 16))
    assert feats.shape == (2, 64, 32)  # CLIP's class token dropped: a pure 8x8 grid
    model.save_pretrained(tmp_path)
    again = EmbodiedVLMModel.from_pretrained(tmp_path)
    assert again.config.vision_config.model_type == model.config.vision_config.model_type


def test_vision_encoder_is_swappable(tiny_model):
    c = tiny_model.config
    pixels = torch.randn(2, 3, c.image_size, c.image_size)
    ref = tiny_model.get_image_features(pixels)
    tower = tiny_model.vision_tower

    class NumpyEncoder:  # the accel interface: encode(pixel_values) -> (B, N, D)
        calls = 0

        def encode(self, pv):
            NumpyEncoder.calls += 1
            with torch.no_grad():
                return tower(pv).numpy()

    tiny_model.set_vision_encoder(NumpyEncoder())
    with torch.no_grad():
        torch.testing.assert_close(tiny_model.get_image_features(pixels), ref, atol=1e-6, rtol=0)
    assert NumpyEncoder.calls == 1
    assert not any(k.startswith("_external") for k in tiny_model.state_dict())

    class Wrong:
        def encode(self, pv):
            return np.zeros((pv.shape[0], 5, 7), np.float32)

    tiny_model.set_vision_encoder(Wrong())
    with pytest.raises(ValueError, match="vision encoder returned"):
        tiny_model.get_image_features(pixels)
    tiny_model.set_vision_encoder(None)
    assert tiny_model.vision_encoder is tower
    with pytest.raises(TypeError):
        tiny_model.set_vision_encoder(object())


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
    ({"state_token_id": 4}, "must differ"),
    ({"state_dim": -1}, "state_dim"),
])
def test_config_validation(bad, match):
    good = tiny_config("embodied_vlm", 512).to_dict()
    with pytest.raises(ValueError, match=match):
        EmbodiedVLMConfig.from_dict({**good, **bad})


def test_config_round_trip_and_unknown_keys(tmp_path):
    for name in MODEL_REGISTRY:
        cfg = tiny_config(name, 512)
        cfg.save_pretrained(tmp_path / name)
        again = get_config_class(name).from_pretrained(tmp_path / name)
        assert again.to_dict() == cfg.to_dict()
    with pytest.raises(ValueError, match="unknown keys"):
        EmbodiedVLMConfig.from_dict({**tiny_config("embodied_vlm", 512).to_dict(), "imgae_token_id": 3})


def test_image_preprocessor_shapes_and_errors():
    pre = ImagePreprocessor(16)
    frames = [np.full((48, 64, 3), 255, np.uint8), np.zeros((16, 16, 3), np.uint8)]
    pv = pre(frames)
    assert pv.shape == (2, 3, 16, 16) and pv.dtype == torch.float32
    assert torch.allclose(pv[0], torch.ones(3, 16, 16)) and torch.allclose(pv[1], -torch.ones(3, 16, 16))
    for bad in (np.zeros((16, 16), np.uint8), np.zeros((16, 16, 3), np.float32), np.zeros((0, 16, 3), np.uint8), "img"):
        with pytest.raises(ValueError):
            pre(bad if isinstance(bad, np.ndarray) else [bad])


REFERENCE = os.path.join(os.path.dirname(__file__), "data", "navid_reference.json")


def test_regression_reference_logits():
    """Seeded tiny NaVid model on a fixed input vs. saved reference numbers (catches silent changes
    to initialisation order, feature placement or FiLM). Regenerate with VLM_AGENT_UPDATE_REFERENCE=1."""
    from vlm_agent.models.navid.modeling_navid import NavidModel

    torch.manual_seed(1234)
    model = NavidModel(tiny_config("navid", 512)).eval()
    # Non-zero FiLM output so the reference covers grounding too.
    torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.05)
    g = torch.Generator().manual_seed(7)
    pixels = torch.randn(3, 3, 16, 16, generator=g)
    c = model.config
    with torch.no_grad():
        cond = model.instruction_condition(torch.tensor([[20, 21, 22]]))
        cur, his = model.encode_frames(pixels, cond)
        feats = torch.cat([his[0], his[1], cur[2]])
        ids = torch.tensor([[c.bos_token_id, 20, 21, 22, c.his_token_id] + [c.image_token_id] * 8 + [c.obs_token_id] + [c.image_token_id] * 64 + [c.nav_token_id]])
        logits = model.language_model(inputs_embeds=model.embed_multimodal(ids, feats)).logits[0, -1, :16]
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
    pre = ImagePreprocessor(16)
    np.testing.assert_array_equal(pre.to_array(wide), pre.to_array(square))
    np.testing.assert_array_equal(pre.to_array(tall), pre.to_array(square))
