"""Convert a NaVid checkpoint of the pre-transformers layout to the current one (kept for old dirs).

Legacy layout (before the core became a transformers `PreTrainedModel`):
    config.json        a plain dataclass dump (`model_type: navid`, nested vision/text configs, no
                       `transformers_version`), SigLIP towers with the unused attention-pooling head
    model.safetensors  written by `safetensors.torch.save_model` (tied LM weights stored once)
    tokenizer*.json    special tokens at fixed ids 0..8; no image statistics saved (0.5 / 0.5 implied)
Current layout: `NavidConfig.save_pretrained` + `NavidModel.save_pretrained` + `NavidProcessor.
save_pretrained` (processor_config.json and preprocessor_config.json with size, mean, std, crop rule).

The weights are carried over unchanged except the SigLIP pooling head, which the core no longer
builds (it was computed and never read). The test `tests/models/test_navid_conversion.py` checks
the converted shipped checkpoints plan exactly as the legacy code did on saved frames.

    python -m vlm_agent.models.navid.convert_navid_legacy_checkpoint --input OLD_DIR --output NEW_DIR
    python -m vlm_agent.models.navid.convert_navid_legacy_checkpoint --input DIR --in-place
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

LEGACY_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
LEGACY_MEAN_STD = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])  # the legacy ImagePreprocessor's fixed statistics


def is_legacy_dir(directory: str) -> bool:
    """True for a NaVid directory in the legacy layout (no processor saved, dataclass config)."""
    path = os.path.join(directory, "config.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        raw = json.load(f)
    return raw.get("model_type") == "navid" and "transformers_version" not in raw and not os.path.isfile(os.path.join(directory, "processor_config.json"))


def convert(input_dir: str, output_dir: str):
    """Read a legacy NaVid directory, write the current layout to `output_dir`; returns (model, processor)."""
    import torch
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    from ..embodied_vlm.processing_embodied_vlm import EmbodiedVLMImageProcessor
    from ..registry import register_auto_classes
    from .configuration_navid import NavidConfig
    from .modeling_navid import NavidModel
    from .processing_navid import NavidProcessor

    if not is_legacy_dir(input_dir):
        raise ValueError(f"{input_dir} is not a legacy NaVid directory (needs a dataclass config.json with model_type navid and no processor_config.json)")
    register_auto_classes()
    with open(os.path.join(input_dir, "config.json")) as f:
        raw = json.load(f)
    raw.pop("model_type")
    for sub in ("vision_config", "text_config"):
        for key in ("transformers_version", "architectures", "_name_or_path", "dtype", "id2label", "label2id"):
            raw[sub].pop(key, None)
    raw["vision_config"]["vision_use_head"] = False
    config = NavidConfig(**raw)
    model = NavidModel(config)
    state = load_file(os.path.join(input_dir, "model.safetensors"))
    state = {k: v for k, v in state.items() if not k.startswith("vision_tower.model.head.")}
    # save_model kept one name of the tied pair; give the other the same tensor.
    emb, head = "language_model.model.embed_tokens.weight", "language_model.lm_head.weight"
    if config.tie_word_embeddings:
        if emb not in state and head in state:
            state[emb] = state[head]
        state.setdefault(head, state[emb])
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (k == head and config.tie_word_embeddings)]
    if missing or result.unexpected_keys:
        raise ValueError(f"{input_dir}: legacy weights do not fit NavidModel (missing {missing[:8]}, unexpected {list(result.unexpected_keys)[:8]})")
    model.tie_weights()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(input_dir)
    image_processor = EmbodiedVLMImageProcessor(size={"height": config.image_size, "width": config.image_size}, image_mean=LEGACY_MEAN_STD[0], image_std=LEGACY_MEAN_STD[1])
    processor = NavidProcessor.from_config(image_processor, tokenizer, config)
    processor.check_config(config)
    model.eval()
    with torch.no_grad():
        os.makedirs(output_dir, exist_ok=True)
        model.save_pretrained(output_dir)
        processor.save_pretrained(output_dir)
    return model, processor


def convert_in_place(directory: str):
    """Convert `directory` itself: the legacy files are replaced, everything else (model card,
    evaluation JSON, plots) is kept."""
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(directory))) as tmp:
        out = convert(directory, tmp)
        for name in LEGACY_FILES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                os.remove(path)
        for name in os.listdir(tmp):
            shutil.move(os.path.join(tmp, name), os.path.join(directory, name))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", required=True, help="legacy NaVid checkpoint directory")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--output", help="directory to write the converted checkpoint to")
    group.add_argument("--in-place", action="store_true", help="replace the legacy files in --input, keep the rest")
    args = parser.parse_args(argv)
    if args.in_place:
        convert_in_place(args.input)
        print(f"converted {args.input} in place")
    else:
        convert(args.input, args.output)
        print(f"converted {args.input} -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
