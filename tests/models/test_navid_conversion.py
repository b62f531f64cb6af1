"""The shipped navid_tiny was converted from the legacy layout
(`vlm_agent/models/navid/convert_navid_legacy_checkpoint.py`); it must plan exactly as the legacy
code did. `data/navid_reference_frames.npz` holds 32 simulator frames from 4 oracle-driven val
episodes, `data/navid_tiny_reference_plans.json` the plans the code at 7d1e2a0 produced from them
(history included: each frame is observed after it is planned on). navid_film passed the same check
when converted (commit 16d079a) and has since been replaced by a newer training run."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.models.navid.convert_navid_legacy_checkpoint import convert, convert_in_place, is_legacy_dir

DATA = os.path.join(os.path.dirname(__file__), "data")
CHECKPOINTS = os.path.join(os.path.dirname(__file__), "..", "..", "checkpoints")


@pytest.mark.parametrize("name", ["navid_tiny"])
@pytest.mark.parametrize("decoding", ["constrained", "greedy"])
def test_converted_checkpoints_plan_as_the_legacy_code(name, decoding):
    from vlm_agent.planners.backends import BuiltinNavidBackend

    model_dir = os.path.join(CHECKPOINTS, name)
    if not os.path.isfile(os.path.join(model_dir, "model.safetensors")):
        pytest.skip(f"{model_dir} not present")
    assert not is_legacy_dir(model_dir)
    ref = json.load(open(os.path.join(DATA, f"{name}_reference_plans.json")))["plans"][decoding]
    d = np.load(os.path.join(DATA, "navid_reference_frames.npz"))
    frames, episode, instructions = d["frames"], d["episode"], [str(s) for s in d["instructions"]]
    backend = BuiltinNavidBackend(model_dir, decoding=decoding)
    plans = []
    for e, instruction in enumerate(instructions):
        backend.reset(instruction)
        for i in np.flatnonzero(episode == e):
            plans.append(backend.generate(frames[i]))
            backend.observe(frames[i])
    assert len(plans) == len(ref) == 32
    assert plans == ref


def _legacy_copy(model, processor, directory):
    """Write `model` in the legacy layout: dataclass-style config.json (no transformers_version),
    SigLIP head weights present, save_model-style weights, tokenizer only."""
    from safetensors.torch import save_model
    from transformers import SiglipVisionModel

    os.makedirs(directory, exist_ok=True)
    cfg = model.config.to_dict()
    for key in ("transformers_version", "architectures", "dtype", "tie_word_embeddings", "output_hidden_states", "return_dict", "use_cache"):
        cfg.pop(key, None)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["vision_config"]["vision_use_head"] = True
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f)
    head = SiglipVisionModel(type(model.config.vision_config)(**{**model.config.vision_config.to_dict(), "vision_use_head": True})).head
    holder = torch.nn.Module()
    holder.inner = model
    model.vision_tower.model.head = head  # legacy models built (and saved) the pooling head
    save_model(model, os.path.join(directory, "model.safetensors"))
    del model.vision_tower.model.head
    processor.tokenizer.save_pretrained(directory)


def test_legacy_directory_converts_with_the_same_outputs(tmp_path):
    from vlm_agent.models.registry import load_model_and_processor

    from .conftest import tiny_model_and_processor

    model, processor = tiny_model_and_processor("navid", seed=3, vision_layers=1)
    torch.nn.init.normal_(model.instruction_film[-1].weight, std=0.05)
    legacy = tmp_path / "legacy"
    _legacy_copy(model, processor, legacy)
    assert is_legacy_dir(str(legacy))
    convert(str(legacy), str(tmp_path / "new"))
    new_model, new_proc = load_model_and_processor(tmp_path / "new")
    ids = processor.encode_instruction("go to the red ball")
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = []
        for m, p in ((model, processor), (new_model, new_proc)):
            cur, his = m.encode_frames(pixels, m.instruction_condition(torch.tensor([ids])))
            prompt = torch.tensor([p.prompt_ids(ids, 1)])
            outs.append(m(input_ids=prompt, image_features=torch.cat([his[0], cur[1]])).logits)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    # In place: the legacy files are replaced, others kept; a second conversion is refused.
    (legacy / "MODEL_CARD.md").write_text("card")
    convert_in_place(str(legacy))
    assert (legacy / "MODEL_CARD.md").read_text() == "card" and (legacy / "processor_config.json").is_file()
    with pytest.raises(ValueError, match="not a legacy NaVid directory"):
        convert(str(legacy), str(tmp_path / "again"))
