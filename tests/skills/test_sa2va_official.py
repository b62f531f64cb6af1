"""The released-Sa2VA loader: transformers remote code (trust_remote_code) + `predict_forward`.

No released weights here (and no network): a stand-in checkpoint directory with its own remote code
(`auto_map` -> modeling file in the directory, as the released checkpoints ship theirs) and the
published `predict_forward` contract (`prediction`, `prediction_masks` as (n_frames, H, W) bool)
exercises the real loading path. The test against a real checkpoint runs only when
VLM_AGENT_REAL_SA2VA points at one (and a GPU is present)."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

CONFIG_PY = '''
from transformers import PretrainedConfig


class FakeSa2VAChatConfig(PretrainedConfig):
    model_type = "fake_sa2va_chat"

    def __init__(self, threshold=150, **kwargs):
        self.threshold = threshold
        super().__init__(**kwargs)
'''

MODELING_PY = '''
import numpy as np
import torch
from transformers import PreTrainedModel

from .configuration_fake_sa2va import FakeSa2VAChatConfig


class FakeSa2VAChatModel(PreTrainedModel):
    """predict_forward as released Sa2VA: red pixels when asked to segment something red."""

    config_class = FakeSa2VAChatConfig
    calls = 0

    def __init__(self, config):
        super().__init__(config)
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.post_init()

    def _init_weights(self, module):
        pass

    def predict_forward(self, image=None, video=None, text=None, past_text="", mask_prompts=None, tokenizer=None):
        type(self).calls += 1
        assert tokenizer is not None and text.startswith("<image>")
        rgb = np.asarray(image.convert("RGB")).astype(np.int32)
        if "red" not in text:
            return {"prediction": "I cannot find it.", "prediction_masks": []}
        mask = (rgb[..., 0] > self.config.threshold) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)
        return {"prediction": "Sure, [SEG].", "prediction_masks": [mask[None]]}
'''


@pytest.fixture(scope="module")
def fake_checkpoint(tmp_path_factory):
    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer

    d = tmp_path_factory.mktemp("fake_sa2va")
    os.environ.setdefault("HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf_modules")))
    (d / "configuration_fake_sa2va.py").write_text(textwrap.dedent(CONFIG_PY))
    (d / "modeling_fake_sa2va.py").write_text(textwrap.dedent(MODELING_PY))
    (d / "config.json").write_text(json.dumps({
        "model_type": "fake_sa2va_chat", "threshold": 150, "architectures": ["FakeSa2VAChatModel"],
        "auto_map": {"AutoConfig": "configuration_fake_sa2va.FakeSa2VAChatConfig", "AutoModelForCausalLM": "modeling_fake_sa2va.FakeSa2VAChatModel"},
    }))
    from safetensors.torch import save_file
    import torch

    save_file({"scale": torch.ones(1)}, str(d / "model.safetensors"))
    train_tokenizer().save_pretrained(d)
    return str(d)


def _scene():
    rgb = np.full((40, 60, 3), 90, np.uint8)
    rgb[10:20, 30:45] = (220, 20, 20)
    return rgb


def test_loads_remote_code_and_segments_on_keyframes(fake_checkpoint):
    from vlm_agent.skills.sa2va_official import OfficialSa2VASegmenter
    from vlm_agent.skills.segmentation import Segmenter, make_segmenter

    seg = make_segmenter("sa2va_official", model_dir=fake_checkpoint, device="cpu", dtype="float32", allow_cpu=True, redetect_every=2)
    assert isinstance(seg, OfficialSa2VASegmenter) and isinstance(seg, Segmenter)
    assert type(seg.model).__name__ == "FakeSa2VAChatModel"  # the directory's own code, through trust_remote_code
    with pytest.raises(RuntimeError, match="reset"):
        seg.step(_scene())
    seg.reset("the red cube")
    first, second, third = seg.step(_scene()), seg.step(_scene()), seg.step(_scene())
    assert first.source == "detected" and first.bbox == (30, 10, 45, 20) and first.area == 150 and first.score == 1.0
    assert first.answer == "Sure, [SEG]." and first.label()["tracked"] is False
    assert second.source == "held" and np.array_equal(second.mask, first.mask) and second.label()["tracked"] is True
    assert third.source == "detected" and type(seg.model).calls == 2
    seg.reset("the blue ball")
    none = seg.step(_scene())
    assert none.score == 0.0 and not none.mask.any() and none.answer == "I cannot find it."
    with pytest.raises(ValueError, match="RGB frame"):
        seg.step(np.zeros((4, 4), np.uint8))


def test_refusals_with_reasons(fake_checkpoint, tmp_path):
    from vlm_agent.skills.sa2va_official import OfficialSa2VASegmenter

    with pytest.raises(ValueError, match="CUDA"):
        OfficialSa2VASegmenter(fake_checkpoint, device="cpu")
    with pytest.raises(ValueError, match="not a local Sa2VA checkpoint"):
        OfficialSa2VASegmenter(str(tmp_path / "missing"), device="cpu", allow_cpu=True)
    with pytest.raises(ValueError, match="predict_forward"):
        OfficialSa2VASegmenter(model=object(), tokenizer=None, device="cpu", allow_cpu=True)
    with pytest.raises(ValueError, match="prompt"):
        OfficialSa2VASegmenter(fake_checkpoint, prompt="segment it", device="cpu", allow_cpu=True)

    class Wrong:
        def eval(self):
            return self

        def predict_forward(self, **kw):
            return {"prediction": "[SEG]", "prediction_masks": [np.zeros((1, 5, 5), bool)]}

    seg = OfficialSa2VASegmenter(model=Wrong(), tokenizer=None, device="cpu", allow_cpu=True)
    seg.reset("the red cube")
    with pytest.raises(ValueError, match="mask for a"):
        seg.step(_scene())


@pytest.mark.skipif(not os.environ.get("VLM_AGENT_REAL_SA2VA"),
                    reason="needs a released Sa2VA checkpoint on disk (VLM_AGENT_REAL_SA2VA=/path/to/Sa2VA-1B) and a CUDA GPU; none here, no network")
def test_real_released_checkpoint():  # pragma: no cover (runs only where the weights are)
    import torch

    from vlm_agent.skills.sa2va_official import OfficialSa2VASegmenter

    if not torch.cuda.is_available():
        pytest.skip("the released remote code needs CUDA")
    seg = OfficialSa2VASegmenter(os.environ["VLM_AGENT_REAL_SA2VA"], device="cuda")
    seg.reset("the red cube")
    result = seg.step(_scene())
    assert result.mask.shape == (40, 60) and result.answer
