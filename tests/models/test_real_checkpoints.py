"""Assembling the core from real transformers checkpoint directories (SigLIP/CLIP + Qwen2/Llama).

The same code path runs on tiny checkpoints that transformers itself writes (always) and on real
ones when `VLM_AGENT_REAL_SIGLIP` and `VLM_AGENT_REAL_QWEN2` name local directories (marked
`checkpoint`; nothing is downloaded). The assembled model is saved, reloaded by the planner's
backend and by `vlm-agent train --init-from`, with identical logits."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import assemble_from_checkpoints, read_safetensors_dir
from vlm_agent.models.navid.modeling_navid import NavidModel
from vlm_agent.models.navid.processing_navid import NavidProcessor
from vlm_agent.models.registry import load_model_and_processor

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]


def _qwen_dir(tmp_path):
    """A tiny Qwen2 causal LM with its own tokenizer (no BOS, eos = pad = <|endoftext|>, as Qwen2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["go to the red ball stop move forward 25 cm turn left right 30 degrees, "]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    qwen.save_pretrained(tmp_path / "qwen2")
    hf_tok.save_pretrained(tmp_path / "qwen2")
    return str(tmp_path / "qwen2")


def _siglip_dir(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    siglip = SiglipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=40, patch_size=4),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=100),
    )
    SiglipModel(siglip).save_pretrained(tmp_path / "siglip")  # a full image-text checkpoint, like google/siglip-*
    return str(tmp_path / "siglip")


def _clip_vision_dir(tmp_path):
    """A vision-only CLIP checkpoint with CLIP's own statistics in preprocessor_config.json."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, image_size=32, patch_size=4)).save_pretrained(tmp_path / "clip")
    with open(tmp_path / "clip" / "preprocessor_config.json", "w") as f:
        json.dump({"image_mean": CLIP_MEAN, "image_std": [0.26862954, 0.26130258, 0.27577711], "crop_size": {"height": 32, "width": 32}}, f)
    return str(tmp_path / "clip")


def _prompt_logits(model, processor, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = (torch.rand(48, 64, 3, generator=g) * 255).to(torch.uint8).numpy()
    ids = processor.encode_instruction("go to the red ball")
    with torch.no_grad():
        cond = model.instruction_condition(torch.tensor([ids]))
        cur, _ = model.encode_frames(processor.pixel_values(rgb), cond)
        prompt = torch.tensor([processor.prompt_ids(ids, 0)])
        return model(input_ids=prompt, image_features=cur[0]).logits


def _check_assembled(model, processor, vision_dir, text_dir, tmp_path):
    vision = read_safetensors_dir(vision_dir)
    if any(k.startswith("vision_model.") for k in vision):
        vision = {k[len("vision_model."):]: v for k, v in vision.items() if k.startswith("vision_model.")}
    vision = {k: v for k, v in vision.items() if not k.startswith("head.")}  # SigLIP's pooling head is not built
    tower = model.vision_tower.model.state_dict()
    assert set(tower) == set(vision)
    for k, v in tower.items():
        torch.testing.assert_close(v, vision[k].to(v.dtype), rtol=0, atol=0)
    text = read_safetensors_dir(text_dir)
    emb = model.get_input_embeddings().weight
    n_old = text["model.embed_tokens.weight"].shape[0]
    torch.testing.assert_close(emb[:n_old], text["model.embed_tokens.weight"].to(emb.dtype), rtol=0, atol=0)
    tok = processor.tokenizer
    assert emb.shape[0] >= len(tok) and all(processor.token_id(t) >= n_old for t in NavidProcessor.special_tokens())
    assert model.config.bos_token_id is None or tok.bos_token_id == model.config.bos_token_id
    logits = _prompt_logits(model, processor)
    assert torch.isfinite(logits).all()
    out = tmp_path / "assembled"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    # Reloaded by the registry (what the planner and the trainer use)...
    again, proc = load_model_and_processor(out)
    torch.testing.assert_close(_prompt_logits(again, proc), logits, rtol=0, atol=1e-5)
    # ... by the planner's backend, which plans grammar text from it...
    from vlm_agent.planners.backends import BuiltinNavidBackend

    backend = BuiltinNavidBackend(str(out))
    backend.reset("go to the red ball")
    assert backend.generate(np.zeros((48, 64, 3), np.uint8))
    torch.testing.assert_close(_prompt_logits(backend.model, backend.processor), logits, rtol=0, atol=1e-5)
    return str(out)


def _train_from(model_dir, tmp_path):
    """`vlm-agent train --init-from <assembled>` for one step; the selected checkpoint reloads."""
    from vlm_agent.training.navid import NavidTrainConfig, train

    _, proc = load_model_and_processor(model_dir)
    s = proc.image_processor.image_size
    rng = np.random.default_rng(0)
    shard = tmp_path / "shard.npz"
    np.savez(shard, frames=rng.integers(0, 255, (6, s, s, 3), dtype=np.uint8), actions=np.array([0, 1, 0, 2, 0, 3], np.int8),
             episode_start=np.array([0]), episode_length=np.array([6]), instructions=np.array(["go to the red ball"]), episode_ids=np.array(["e0"]))
    out = tmp_path / "finetuned"
    summary = train(NavidTrainConfig(data=[str(shard)], out_dir=str(out), init_from=model_dir, max_steps=1, minutes=5, image_size=s,
                                     batch_episodes=1, steps_per_episode=2, val_episodes=0, threads=1), progress=False)
    assert summary["steps"] == 1
    model, processor = load_model_and_processor(out)
    assert type(model) is NavidModel and processor.token_id("[NAV]") == model.config.nav_token_id


def test_assemble_siglip_and_qwen2_save_reload_plan_and_finetune(tmp_path):
    torch.manual_seed(0)
    vision_dir, text_dir = _siglip_dir(tmp_path), _qwen_dir(tmp_path)
    model, processor = assemble_from_checkpoints(NavidModel, NavidProcessor, vision_dir, text_dir)
    assert model.config.grid_size == 10  # 40 px / patch 4, not a multiple of 8: adaptive pooling to 8x8
    assert model.config.bos_token_id is None  # Qwen2 has no BOS; the prompt starts with the instruction
    assert list(processor.image_processor.image_mean) == [0.5, 0.5, 0.5]  # SigLIP's published statistics
    out = _check_assembled(model, processor, vision_dir, text_dir, tmp_path)
    _train_from(out, tmp_path)


def test_assemble_takes_clip_statistics_from_the_checkpoint(tmp_path):
    torch.manual_seed(0)
    vision_dir, text_dir = _clip_vision_dir(tmp_path), _qwen_dir(tmp_path)
    model, processor = assemble_from_checkpoints(NavidModel, NavidProcessor, vision_dir, text_dir, dtype=torch.float32)
    np.testing.assert_allclose(processor.image_processor.image_mean, CLIP_MEAN)
    _check_assembled(model, processor, vision_dir, text_dir, tmp_path)
    _, proc = load_model_and_processor(tmp_path / "assembled")
    np.testing.assert_allclose(proc.image_processor.image_mean, CLIP_MEAN)


def test_assemble_rejects_incomplete_checkpoints(tmp_path):
    from safetensors.torch import load_file, save_file

    vision_dir, text_dir = _siglip_dir(tmp_path), _qwen_dir(tmp_path)
    path = os.path.join(text_dir, "model.safetensors")
    state = load_file(path)
    state.pop(next(k for k in state if "layers.1." in k))
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing keys"):
        assemble_from_checkpoints(NavidModel, NavidProcessor, vision_dir, text_dir)


@pytest.mark.checkpoint
def test_real_siglip_and_qwen2_checkpoints(tmp_path):
    vision_dir, text_dir = os.environ.get("VLM_AGENT_REAL_SIGLIP"), os.environ.get("VLM_AGENT_REAL_QWEN2")
    if not (vision_dir and text_dir and os.path.isdir(vision_dir) and os.path.isdir(text_dir)):
        pytest.skip("set VLM_AGENT_REAL_SIGLIP and VLM_AGENT_REAL_QWEN2 to local SigLIP/CLIP and Qwen2/Llama checkpoint directories")
    model, processor = assemble_from_checkpoints(NavidModel, NavidProcessor, vision_dir, text_dir, dtype=torch.bfloat16)
    _check_assembled(model.float(), processor, vision_dir, text_dir, tmp_path)
