"""Tiny random transformers image-text-to-text models (LLaVA, Qwen2.5-VL, SmolVLM) saved to a dir.

Built from configs with a locally trained byte-level BPE tokenizer, so nothing is downloaded. Their
output is random text: the point is that the transformers backend loads and runs them and that the
strict parser turns their garbage into a stop.
"""
from __future__ import annotations

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}{{ image_placeholder }}{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
)


def _tokenizer(specials: list[str], extra_attrs: dict | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    base = ["<pad>", "<s>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=base + specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["move forward 25 cm turn left 30 degrees turn right stop go to the red ball"], trainer=trainer)
    t = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>", extra_special_tokens=extra_attrs or {})
    t.add_special_tokens({"additional_special_tokens": specials})
    return t


def _template(placeholder: str) -> str:
    return CHAT_TEMPLATE.replace("{{ image_placeholder }}", placeholder)


def save_tiny_llava(directory: str) -> str:
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = _tokenizer(["<image>"])
    image_id = tok.convert_tokens_to_ids("<image>")
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=16, patch_size=4, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=image_id, image_seq_length=16, vision_feature_layer=-1)
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(directory)
    ip = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=4, vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=_template("<image>"))
    proc.save_pretrained(directory)
    return directory


def save_tiny_qwen2_5_vl(directory: str) -> str:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from vlm_agent.planners.backends import _no_video_processor_class

    tok = _tokenizer(["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, patch_size=4, spatial_merge_size=2, temporal_patch_size=2, window_size=8, fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(directory)
    ip = Qwen2VLImageProcessorPil(patch_size=4, merge_size=2, temporal_patch_size=2, min_pixels=16 * 16, max_pixels=32 * 32)
    proc = _no_video_processor_class("Qwen2_5_VLProcessor")(image_processor=ip, tokenizer=tok, chat_template=_template("<|vision_start|><|image_pad|><|vision_end|>"))
    proc.save_pretrained(directory)
    return directory


def save_tiny_smolvlm(directory: str) -> str:
    from transformers import LlamaConfig, SmolVLMConfig, SmolVLMForConditionalGeneration, SmolVLMImageProcessorPil

    from vlm_agent.planners.backends import _no_video_processor_class

    specials = ["<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>"] + [f"<row_{r}_col_{c}>" for r in range(1, 4) for c in range(1, 4)]
    tok = _tokenizer(specials, {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>", "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"})
    image_id = tok.convert_tokens_to_ids("<image>")
    text = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=16, patch_size=4)
    config = SmolVLMConfig(vision_config=vision, text_config=text, scale_factor=2, image_token_id=image_id)
    torch.manual_seed(0)
    SmolVLMForConditionalGeneration(config).save_pretrained(directory)
    ip = SmolVLMImageProcessorPil(do_resize=True, size={"longest_edge": 16}, do_image_splitting=False, max_image_size={"longest_edge": 16})
    proc = _no_video_processor_class("SmolVLMProcessor")(image_processor=ip, tokenizer=tok, image_seq_len=4, chat_template=_template("<image>"))
    proc.save_pretrained(directory)
    return directory


BUILDERS = {"llava": save_tiny_llava, "qwen2_5_vl": save_tiny_qwen2_5_vl, "smolvlm": save_tiny_smolvlm}
