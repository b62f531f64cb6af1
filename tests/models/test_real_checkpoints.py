"""Assembling the core from real transformers checkpoint directories (SigLIP/CLIP + Qwen2/Llama).

The same code path runs on tiny checkpoints that transformers itself writes (always) and on real
ones when `VLM_AGENT_REAL_SIGLIP` and `VLM_AGENT_REAL_QWEN2` name local directories (marked
`checkpoint`; nothing is downloaded)."""
from __future__ import annotations

import os

import pytest
import torch

from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import assemble_from_checkpoints, read_safetensors_dir
from vlm_agent.models.embodied_vlm.processing_embodied_vlm import SPECIAL_TOKENS
from vlm_agent.models.navid.modeling_navid import NavidModel

NAVID_TOKENS = dict(image_token_id="<img>", state_token_id="<state>", his_token_id="[HIS]", obs_token_id="[OBS]", nav_token_id="[NAV]")


def _tiny_real_dirs(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    siglip = SiglipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=40, patch_size=4),
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, vocab_size=100),
    )
    SiglipModel(siglip).save_pretrained(tmp_path / "siglip")  # a full image-text checkpoint, like google/siglip-*
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["go to the red ball stop move forward"], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    qwen.save_pretrained(tmp_path / "qwen2")
    hf_tok.save_pretrained(tmp_path / "qwen2")
    return str(tmp_path / "siglip"), str(tmp_path / "qwen2")


def _check_assembled(model, tokenizer, vision_dir, text_dir, tmp_path):
    vision = read_safetensors_dir(vision_dir)
    if any(k.startswith("vision_model.") for k in vision):
        vision = {k[len("vision_model."):]: v for k, v in vision.items() if k.startswith("vision_model.")}
    tower = model.vision_tower.model.state_dict()
    assert set(tower) == set(vision)
    for k, v in tower.items():
        torch.testing.assert_close(v, vision[k].to(v.dtype), rtol=0, atol=0)
    text = read_safetensors_dir(text_dir)
    emb = model.language_model.get_input_embeddings().weight
    n_old = text["model.embed_tokens.weight"].shape[0]
    torch.testing.assert_close(emb[:n_old], text["model.embed_tokens.weight"].to(emb.dtype), rtol=0, atol=0)
    assert emb.shape[0] >= len(tokenizer) and all(tokenizer.convert_tokens_to_ids(t) >= n_old for t in SPECIAL_TOKENS[4:])
    c = model.config
    ids = tokenizer("go to the red ball", add_special_tokens=False).input_ids
    prompt = torch.tensor([ids + [c.his_token_id, c.obs_token_id] + [c.image_token_id] * 64 + [c.nav_token_id]])
    with torch.no_grad():
        cond = model.instruction_condition(torch.tensor([ids]))
        cur, _ = model.encode_frames(torch.randn(1, 3, c.image_size, c.image_size), cond)
        logits = model.language_model(inputs_embeds=model.embed_multimodal(prompt, cur[0])).logits
    assert torch.isfinite(logits).all()
    model.save_pretrained(tmp_path / "assembled", tokenizer=tokenizer)
    again = NavidModel.from_pretrained(tmp_path / "assembled")
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)


def test_assemble_from_transformers_written_checkpoints(tmp_path):
    vision_dir, text_dir = _tiny_real_dirs(tmp_path)
    model, tokenizer = assemble_from_checkpoints(NavidModel, vision_dir, text_dir, SPECIAL_TOKENS[4:], **NAVID_TOKENS)
    assert model.config.grid_size == 10  # 40 px / patch 4, not a multiple of 8: adaptive pooling to 8x8
    _check_assembled(model, tokenizer, vision_dir, text_dir, tmp_path)


def test_assemble_rejects_incomplete_checkpoints(tmp_path):
    from safetensors.torch import load_file, save_file

    vision_dir, text_dir = _tiny_real_dirs(tmp_path)
    path = os.path.join(text_dir, "model.safetensors")
    state = load_file(path)
    state.pop(next(k for k in state if "layers.1." in k))
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="missing keys"):
        assemble_from_checkpoints(NavidModel, vision_dir, text_dir, SPECIAL_TOKENS[4:], **NAVID_TOKENS)


@pytest.mark.checkpoint
def test_real_siglip_and_qwen2_checkpoints(tmp_path):
    vision_dir, text_dir = os.environ.get("VLM_AGENT_REAL_SIGLIP"), os.environ.get("VLM_AGENT_REAL_QWEN2")
    if not (vision_dir and text_dir and os.path.isdir(vision_dir) and os.path.isdir(text_dir)):
        pytest.skip("set VLM_AGENT_REAL_SIGLIP and VLM_AGENT_REAL_QWEN2 to local SigLIP/CLIP and Qwen2/Llama checkpoint directories")
    model, tokenizer = assemble_from_checkpoints(NavidModel, vision_dir, text_dir, SPECIAL_TOKENS[4:], **NAVID_TOKENS)
    _check_assembled(model, tokenizer, vision_dir, text_dir, tmp_path)
