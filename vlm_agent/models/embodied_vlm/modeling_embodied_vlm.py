"""The embodied VLM core: vision tower -> MLP projector -> causal LM over a multimodal sentence.

A multimodal sentence (PaLM-E) is a token sequence with placeholder tokens: every `<img>` receives
one projected vision feature, every `<state>` one projected continuous state vector. Features are
written into the text embeddings with `masked_scatter` after an explicit count check, as in
transformers' LLaVA. Everything is built from transformers parts (`AutoModel.from_config` for the
SigLIP/CLIP vision tower, `AutoModelForCausalLM.from_config` for the Qwen2/Llama LM).

Directories: `config.json` (composite config), `model.safetensors` (loaded STRICTLY: any missing or
unexpected key raises), tokenizer files next to them.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .configuration_embodied_vlm import EmbodiedVLMConfig

WEIGHTS_NAME = "model.safetensors"


class VisionTower(nn.Module):
    """pixel_values (B, 3, S, S) float32 -> patch features (B, N, D), N = (S / patch) ** 2.

    A clean module with no data-dependent Python control flow, so it exports to ONNX and can be
    replaced by an accelerated encoder (see `EmbodiedVLMModel.set_vision_encoder`). CLIP's class
    token is dropped so both SigLIP and CLIP give a pure row-major patch grid.
    """

    def __init__(self, vision_config):
        super().__init__()
        from transformers import AutoModel

        self.model = AutoModel.from_config(vision_config)
        self.drop_cls = vision_config.model_type == "clip_vision_model"

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=pixel_values).last_hidden_state
        return hidden[:, 1:] if self.drop_cls else hidden


class _ExternalEncoder(nn.Module):
    """Adapts an object with `encode(pixel_values) -> (B, N, D)` (torch or numpy) to a module.

    Used for the accelerated encoders (ONNX Runtime / TensorRT); it holds no parameters, so it never
    appears in saved weights.
    """

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.encoder.encode(pixel_values)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out)
        return out.to(device=pixel_values.device, dtype=torch.float32)


class MultiModalProjector(nn.Module):
    """LLaVA's 2-layer MLP: vision features (..., D_v) -> LM embeddings (..., D_lm)."""

    def __init__(self, in_dim: int, out_dim: int, act: str = "gelu"):
        super().__init__()
        from transformers.activations import ACT2FN

        self.linear_1 = nn.Linear(in_dim, out_dim)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


def scatter_placeholders(embeds: torch.Tensor, input_ids: torch.Tensor, token_id: int, features: torch.Tensor, what: str) -> torch.Tensor:
    """Write `features` (M, D) into `embeds` (B, L, D) where `input_ids == token_id`, in row-major order.

    Raises ValueError when the number of placeholders differs from M: a silent mismatch would shift
    every feature to the wrong position.
    """
    mask = input_ids == token_id
    n_slots = int(mask.sum())
    n_feats = int(features.shape[0]) if features is not None else 0
    if n_slots != n_feats:
        raise ValueError(f"{what}: the sentence has {n_slots} placeholder tokens (id {token_id}) but {n_feats} feature vectors were given")
    if n_slots == 0:
        return embeds
    features = features.to(embeds.dtype)
    return embeds.masked_scatter(mask.unsqueeze(-1).expand_as(embeds), features)


class EmbodiedVLMModel(nn.Module):
    """Vision tower + projector + causal LM (+ optional state projector).

    Attributes:
        vision_tower: `VisionTower` (trainable transformers module).
        vision_encoder: what `get_image_features` calls; the tower by default, replaceable by an
            accelerated encoder with `set_vision_encoder`.
        multi_modal_projector: vision features -> LM embedding size.
        state_projector: continuous state (state_dim) -> LM embedding size (None if state_dim == 0).
        language_model: a transformers `*ForCausalLM`.
    """

    config_class = EmbodiedVLMConfig

    def __init__(self, config: EmbodiedVLMConfig):
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.config = config
        self.vision_tower = VisionTower(config.vision_config)
        self.multi_modal_projector = MultiModalProjector(config.vision_config.hidden_size, config.text_config.hidden_size, config.projector_hidden_act)
        self.state_projector = nn.Linear(config.state_dim, config.text_config.hidden_size) if config.state_dim else None
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self._external_encoder: nn.Module | None = None

    # -- the swappable vision path -------------------------------------------------------------
    @property
    def vision_encoder(self) -> nn.Module:
        return self._external_encoder if self._external_encoder is not None else self.vision_tower

    def set_vision_encoder(self, encoder) -> None:
        """Use `encoder` for image features: an `nn.Module` mapping pixel_values -> (B, N, D), or an
        object with `encode(pixel_values)` (e.g. `vlm_agent.accel.VisionEncoder`); None restores the
        built-in tower. The tower's weights stay in the model (saving is unaffected)."""
        if encoder is None or encoder is self.vision_tower:
            self._external_encoder = None
        elif isinstance(encoder, nn.Module):
            self._external_encoder = encoder
        elif callable(getattr(encoder, "encode", None)):
            self._external_encoder = _ExternalEncoder(encoder)
        else:
            raise TypeError(f"vision encoder must be an nn.Module or have encode(pixel_values); got {type(encoder).__name__}")

    def state_dict(self, *args, **kwargs):
        # An external encoder is a runtime swap, not part of the checkpoint.
        sd = super().state_dict(*args, **kwargs)
        return {k: v for k, v in sd.items() if not k.startswith("_external_encoder.")}

    def get_vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> raw vision features (B, N, D_v), N = grid_size ** 2."""
        feats = self.vision_encoder(pixel_values)
        n = self.config.grid_size ** 2
        if feats.ndim != 3 or feats.shape[1] != n or feats.shape[2] != self.config.vision_config.hidden_size:
            raise ValueError(f"vision encoder returned {tuple(feats.shape)}, expected (B, {n}, {self.config.vision_config.hidden_size})")
        return feats

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> projected image features (B, N, D_lm)."""
        return self.multi_modal_projector(self.get_vision_features(pixel_values))

    # -- the multimodal sentence ---------------------------------------------------------------
    def embed_multimodal(
        self,
        input_ids: torch.Tensor,
        image_features: torch.Tensor | None = None,
        state_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token ids (B, L) + features -> input embeddings (B, L, D_lm).

        image_features: (M, D_lm) projected features, one per `<img>` token (row-major over the batch),
            or (B', N, D_lm) which is flattened. state_vectors: (K, state_dim), one per `<state>` token.
        """
        cfg = self.config
        ids = input_ids.masked_fill((input_ids == cfg.image_token_id) | (input_ids == cfg.state_token_id), cfg.pad_token_id)
        embeds = self.language_model.get_input_embeddings()(ids)
        if image_features is not None and image_features.ndim == 3:
            image_features = image_features.reshape(-1, image_features.shape[-1])
        embeds = scatter_placeholders(embeds, input_ids, cfg.image_token_id, image_features, "image features")
        if state_vectors is not None or (input_ids == cfg.state_token_id).any():
            if self.state_projector is None:
                raise ValueError("state vectors given (or <state> tokens present) but config.state_dim is 0")
            states = None if state_vectors is None else self.state_projector(state_vectors.to(embeds.dtype))
            embeds = scatter_placeholders(embeds, input_ids, cfg.state_token_id, states, "state vectors")
        return embeds

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        state_vectors: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ):
        """input_ids (B, L) with `<img>`/`<state>` slots; pixel_values (P, 3, S, S) whose P * N features
        fill the `<img>` slots in order; labels (B, L) with -100 where no loss. Returns the LM output
        (`.logits` (B, L, V), `.loss` when labels are given)."""
        image_features = self.get_image_features(pixel_values) if pixel_values is not None else None
        embeds = self.embed_multimodal(input_ids, image_features, state_vectors)
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

    # -- directories -----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike, tokenizer=None) -> None:
        """Write config.json, model.safetensors (and the tokenizer files when given)."""
        from safetensors.torch import save_model

        os.makedirs(directory, exist_ok=True)
        self.config.save_pretrained(directory)
        # save_model de-duplicates tied tensors (a plain save_file refuses shared storage).
        external, self._external_encoder = self._external_encoder, None
        try:
            save_model(self, os.path.join(directory, WEIGHTS_NAME))
        finally:
            self._external_encoder = external
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: str | torch.device = "cpu"):
        """config -> build -> STRICT weight load -> `.to(device).eval()` (SAM 2's build path)."""
        config = cls.config_class.from_pretrained(directory)
        model = cls(config)
        load_weights_strict(model, os.path.join(directory, WEIGHTS_NAME))
        return model.to(device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_weights_strict(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors file into `model`; raise ValueError naming missing/unexpected keys."""
    from safetensors.torch import load_model

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist")
    try:
        load_model(model, path, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the model built from config.json: {exc}") from exc


def load_submodule_strict(module: nn.Module, state: dict[str, Any], what: str) -> None:
    """`module.load_state_dict(state, strict=True)` with a clear error naming `what`."""
    missing, unexpected = [], []
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise ValueError(f"{what}: missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")


# -- assembling from real transformers checkpoints ------------------------------------------------
VISION_PREFIX = "vision_model."  # vision weights inside full SigLIP/CLIP checkpoints


def read_safetensors_dir(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a transformers checkpoint directory (single file or sharded with an index)."""
    import json

    from safetensors.torch import load_file

    single = os.path.join(directory, WEIGHTS_NAME)
    if os.path.isfile(single):
        return load_file(single)
    index = os.path.join(directory, "model.safetensors.index.json")
    if not os.path.isfile(index):
        raise FileNotFoundError(f"{directory}: no model.safetensors or model.safetensors.index.json")
    with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    out: dict[str, torch.Tensor] = {}
    for name in files:
        out.update(load_file(os.path.join(directory, name)))
    return out


def vision_config_from_dir(directory: str | os.PathLike):
    """The vision sub-config of a SigLIP/CLIP checkpoint (vision-only or full image-text)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(directory)
    if cfg.model_type in ("siglip", "clip"):
        cfg = cfg.vision_config
    return cfg


def assemble_from_checkpoints(model_cls, vision_dir: str, text_dir: str, extra_special_tokens: list[str], **config_kwargs):
    """Build `model_cls` from a real SigLIP/CLIP directory and a real Qwen2/Llama directory.

    The vision tower and the LM load their checkpoints strictly (every key of the tower / LM must be
    present and nothing unexpected); the projector (and any model-specific heads) start random and
    need training. The text tokenizer gains `extra_special_tokens` (`<img>`, `<state>`, ...); the LM's
    embedding matrix grows to cover them (new rows = mean of the old ones, a common, stable start).
    Returns (model, tokenizer).
    """
    from transformers import AutoConfig, AutoTokenizer

    vision_config = vision_config_from_dir(vision_dir)
    text_config = AutoConfig.from_pretrained(text_dir)
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special_tokens)})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in extra_special_tokens}
    old_vocab = text_config.vocab_size
    text_config.vocab_size = max(old_vocab, len(tokenizer))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    config = model_cls.config_class(
        vision_config=vision_config, text_config=text_config,
        pad_token_id=pad, bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else pad,
        eos_token_id=tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad,
        **{k: ids[v] if isinstance(v, str) and v in ids else v for k, v in config_kwargs.items()},
    )
    model = model_cls(config)
    raw = read_safetensors_dir(vision_dir)
    # Full image-text checkpoints (and vision-only ones written by transformers 4) prefix the vision
    # weights with `vision_model.`; transformers 5 vision-only checkpoints do not.
    if any(k.startswith(VISION_PREFIX) for k in raw):
        raw = {k[len(VISION_PREFIX):]: v for k, v in raw.items() if k.startswith(VISION_PREFIX)}
    load_submodule_strict(model.vision_tower.model, raw, f"vision tower from {vision_dir}")
    text_state = read_safetensors_dir(text_dir)
    lm = model.language_model
    if "lm_head.weight" not in text_state and getattr(text_config, "tie_word_embeddings", False):
        text_state["lm_head.weight"] = text_state["model.embed_tokens.weight"]
    for key in ("model.embed_tokens.weight", "lm_head.weight"):
        w = text_state.get(key)
        if w is not None and w.shape[0] < text_config.vocab_size:
            grown = w.new_empty((text_config.vocab_size, w.shape[1]))
            grown[: w.shape[0]] = w
            grown[w.shape[0]:] = w.mean(0, keepdim=True)
            text_state[key] = grown
    load_submodule_strict(lm, text_state, f"language model from {text_dir}")
    return model.eval(), tokenizer
