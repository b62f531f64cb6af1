"""Parity: ONNX Runtime equals PyTorch within 1e-4 for every default encoder at batch 1 and 4."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vlm_agent.accel.defaults import default_encoders
from vlm_agent.accel.factory import make_encoder

DEFAULTS = default_encoders()


def test_there_is_at_least_one_default_encoder():
    assert DEFAULTS, "no default encoders found (checkpoints/ or built-in default configs)"


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_onnxruntime_matches_torch(name, cache_dir):
    module, info = DEFAULTS[name]()
    ref = make_encoder(module, backend="torch", fallback=False)
    ort = make_encoder(module, backend="onnxruntime", fallback=False, engine_cache_dir=cache_dir, num_threads=1)
    rng = np.random.default_rng(0)
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, info.image_size, info.image_size), dtype=np.float32)
        a, b = ref.encode(x), ort.encode(x)
        assert a.shape == b.shape == (batch, info.num_tokens, info.hidden_size)
        err = float((a - b).abs().max())
        assert err < 1e-4, f"{name} batch {batch}: max abs error {err:.2e}"
        # Batch independence: row 0 of the batch equals the single-image result.
        if batch == 4:
            assert torch.allclose(b[:1], ort.encode(x[:1]), atol=1e-5)


def test_default_encoders_pick_up_shipped_checkpoints(tmp_path):
    """A built-in checkpoint under checkpoints/ replaces the family's default-config tower."""
    from vlm_agent.models.navid.modeling_navid import NavidModel
    from vlm_agent.models.registry import make_config

    torch.manual_seed(0)
    model = NavidModel(make_config("navid", vocab_size=512, image_size=32, patch_size=8, vision_hidden=32, text_hidden=32, current_grid_size=4, film_layers=0))
    model.save_pretrained(tmp_path / "navid_tiny")
    found = default_encoders(tmp_path)
    assert list(found) == ["navid_tiny"]
    module, info = found["navid_tiny"]()
    assert info.name == "navid_tiny" and info.num_tokens == 16
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(module(x), model.vision_tower(x))  # the trained weights, loaded strictly


def test_default_encoders_skip_instruction_conditioned_stems(tmp_path):
    """A film_cnn NaVid checkpoint has no pixel-only tower to accelerate: it is not a default encoder."""
    import json

    from vlm_agent.models.navid.modeling_navid import NavidModel
    from vlm_agent.models.registry import make_config

    torch.manual_seed(0)
    model = NavidModel(make_config("navid", vocab_size=512, image_size=32, patch_size=8, vision_hidden=32, text_hidden=32, current_grid_size=4, film_layers=0))
    model.save_pretrained(tmp_path / "navid_film")
    cfg_path = tmp_path / "navid_film" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    assert "navid_film" in default_encoders(tmp_path)  # a vit stem counts
    cfg["vision_stem"] = "film_cnn"
    cfg_path.write_text(json.dumps(cfg))
    assert "navid_film" not in default_encoders(tmp_path)
