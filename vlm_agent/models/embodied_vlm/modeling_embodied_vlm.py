"""The embodied VLM core: vision tower -> MLP projector -> causal LM over a multimodal sentence.

A multimodal sentence (PaLM-E) is a token sequence with placeholder tokens: every `<img>` receives
one projected vision feature, every `<state>` one projected continuous state vector. Features are
written into the text embeddings with `masked_scatter` after an explicit count check, as in
transformers' LLaVA. Everything is built from transformers parts (`AutoModel.from_config` for the
SigLIP/CLIP vision tower, `AutoModelForCausalLM.from_config` for the Qwen2/Llama LM), and the model
itself is a transformers `PreTrainedModel` + `GenerationMixin`: `save_pretrained`/`from_pretrained`
(meta-device construction, `dtype=`, `device_map=`), `generate()`, `output_hidden_states`, gradient
checkpointing, `resize_token_embeddings` and device handling are transformers', not ours.

What the core adds on top:
- `from_pretrained` is STRICT (any missing, unexpected or mismatched key raises, as SAM 2's builder);
- grammar-constrained decoding over a token trie (`generate_constrained`, and `TrieLogitsProcessor`
  for `generate()`), which every family with an action grammar uses;
- `assemble_from_checkpoints`: a model from a real SigLIP/CLIP directory and a real Qwen2/Llama
  directory, with their own tokenizer and image statistics.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, GenerationMixin, LogitsProcessor, PreTrainedModel

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


class EmbodiedVLMPreTrainedModel(PreTrainedModel):
    """Base of every family: transformers' loading/saving machinery with our init rule.

    Init rule: transformers sub-models (the vision tower's and LM's own `PreTrainedModel`s) init
    themselves; the core's and families' own layers keep PyTorch's default init from `__init__`
    (what they were designed and trained with), except those marked `_zero_init` (FiLM outputs that
    must start as the identity), which are zeroed.
    """

    config_class = EmbodiedVLMConfig
    config: EmbodiedVLMConfig
    base_model_prefix = ""
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _skip_keys_device_placement = ["past_key_values"]

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, "_zero_init", False):
            from transformers import initialization as init

            for p in module.parameters(recurse=False):
                init.zeros_(p)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained` (meta-device build, `dtype`), made strict: ValueError
        naming the keys when the weights do not match the model built from config.json.
        `device="cuda"` moves the loaded model (`device_map` needs `accelerate`, which robots lack)."""
        want_info = kwargs.pop("output_loading_info", False)
        device = kwargs.pop("device", None)
        if not os.path.isfile(os.path.join(os.fspath(pretrained_model_name_or_path), "config.json")):
            raise FileNotFoundError(f"{os.path.join(os.fspath(pretrained_model_name_or_path), 'config.json')} does not exist (expected a model directory)")
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        bad = {k: sorted(map(str, v)) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        if bad:
            detail = "; ".join(f"{k}: {v[:8]}{'...' if len(v) > 8 else ''}" for k, v in bad.items())
            raise ValueError(f"{pretrained_model_name_or_path}: weights do not match the model built from config.json ({detail})")
        if device is not None:
            model = model.to(device)
        model.eval()
        return (model, info) if want_info else model


class TrieLogitsProcessor(LogitsProcessor):
    """Constrains `generate()` to the answers of a token trie ({token: subtree}, {} = end).

    Tokens after the prompt (`prompt_length` of them) walk the trie; every other token gets -inf.
    `first_token_bias` ({token id: bias}) is added at the first decision only (a tuned decision
    threshold, e.g. NaVid's `stop_logit_bias`). Once the trie is exhausted only EOS stays allowed.
    """

    def __init__(self, trie: dict, prompt_length: int, eos_token_id: int, first_token_bias: dict[int, float] | None = None):
        self.trie, self.prompt_length, self.eos = trie, int(prompt_length), int(eos_token_id)
        self.first_token_bias = dict(first_token_bias or {})

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            node = self.trie
            for t in input_ids[row, self.prompt_length:].tolist():
                node = node.get(t) if node else None
                if node is None:
                    break
            allowed = list(node) if node else [self.eos]
            mask[row, allowed] = 0.0
            if input_ids.shape[1] == self.prompt_length:
                for t, b in self.first_token_bias.items():
                    if t in allowed:
                        mask[row, t] += b
        return scores + mask


class EmbodiedVLMModel(EmbodiedVLMPreTrainedModel, GenerationMixin):
    """Vision tower + projector + causal LM (+ optional state projector).

    Attributes:
        vision_tower: `VisionTower` (trainable transformers module).
        vision_encoder: what `get_image_features` calls; the tower by default, replaceable by an
            accelerated encoder with `set_vision_encoder`.
        multi_modal_projector: vision features -> LM embedding size.
        state_projector: continuous state (state_dim) -> LM embedding size (None if state_dim == 0).
        language_model: a transformers `*ForCausalLM`.
    """

    def __init__(self, config: EmbodiedVLMConfig):
        super().__init__(config)
        self.vision_tower = VisionTower(config.vision_config)
        self.multi_modal_projector = MultiModalProjector(config.vision_config.hidden_size, config.text_config.hidden_size, config.projector_hidden_act)
        self.state_projector = nn.Linear(config.state_dim, config.text_config.hidden_size) if config.state_dim else None
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self._external_encoder: nn.Module | None = None
        self.post_init()

    # -- transformers hooks --------------------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

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
        for k in [k for k in sd if k.startswith("_external_encoder.")]:
            del sd[k]
        return sd

    def get_vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> raw vision features (B, N, D_v), N = grid_size ** 2."""
        feats = self.vision_encoder(pixel_values.to(self.dtype) if self._external_encoder is None else pixel_values)
        n = self.config.grid_size ** 2
        if feats.ndim != 3 or feats.shape[1] != n or feats.shape[2] != self.config.vision_config.hidden_size:
            raise ValueError(f"vision encoder returned {tuple(feats.shape)}, expected (B, {n}, {self.config.vision_config.hidden_size})")
        return feats

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S) -> projected image features (B, N, D_lm)."""
        feats = self.get_vision_features(pixel_values)
        return self.multi_modal_projector(feats.to(self.multi_modal_projector.linear_1.weight.dtype))

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
        embeds = self.get_input_embeddings()(ids)
        if image_features is not None and image_features.ndim == 3:
            image_features = image_features.reshape(-1, image_features.shape[-1])
        embeds = scatter_placeholders(embeds, input_ids, cfg.image_token_id, image_features, "image features")
        if state_vectors is not None or (input_ids == cfg.state_token_id).any():
            if self.state_projector is None:
                raise ValueError("state vectors given (or <state> tokens present) but config.state_dim is 0")
            states = None if state_vectors is None else self.state_projector(state_vectors.to(device=embeds.device, dtype=self.state_projector.weight.dtype))
            embeds = scatter_placeholders(embeds, input_ids, cfg.state_token_id, states, "state vectors")
        return embeds

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        state_vectors: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        """input_ids (B, L) with `<img>`/`<state>` slots. Image features come from `pixel_values`
        (P, 3, S, S), whose P * N features fill the `<img>` slots in order, or ready-made from
        `image_features` ((M, D_lm) or (B', N, D_lm), projected; families that condition the vision
        path compute them themselves). labels (B, L) with -100 where no loss.

        Returns the LM's `CausalLMOutputWithPast`: `.logits` (B, L, V), `.loss` with labels,
        `.hidden_states` (a tuple, last = final layer after the norm) with `output_hidden_states=True`
        (a Sa2VA `[SEG]` token reads its last hidden state), `.past_key_values` with `use_cache`.
        """
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("give input_ids or inputs_embeds")
            if pixel_values is not None:
                if image_features is not None:
                    raise ValueError("give pixel_values or image_features, not both")
                image_features = self.get_image_features(pixel_values)
            inputs_embeds = self.embed_multimodal(input_ids, image_features, state_vectors)
        return self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
            labels=labels, use_cache=use_cache, output_hidden_states=output_hidden_states, logits_to_keep=logits_to_keep, **kwargs,
        )

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, is_first_iteration=False, **kwargs):
        # Vision/state inputs fill the prompt's placeholders once (prefill); later steps feed only
        # the new token with the KV cache.
        extra = {k: kwargs.pop(k, None) for k in ("pixel_values", "state_vectors", "image_features")}
        inputs = super().prepare_inputs_for_generation(input_ids, past_key_values=past_key_values, is_first_iteration=is_first_iteration, **kwargs)
        if is_first_iteration or past_key_values is None or not kwargs.get("use_cache", True):
            inputs.update({k: v for k, v in extra.items() if v is not None})
        return inputs

    # -- grammar-constrained decoding -----------------------------------------------------------
    @torch.no_grad()
    def generate_constrained(
        self,
        input_ids: torch.LongTensor,
        trie: dict,
        image_features: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        state_vectors: torch.Tensor | None = None,
        first_token_bias: dict[int, float] | None = None,
        max_new_tokens: int = 48,
    ) -> list[int]:
        """Greedy decoding restricted to a token trie ({token: subtree}, {} = end), for one prompt
        (input_ids (1, L)). Only tokens that keep the output a prefix of a valid answer are scored;
        forced tokens (a single child) are appended without running the LM and fed to it in one call
        before the next real decision, which makes short grammars nearly free. Same answers as
        `generate(..., logits_processor=[TrieLogitsProcessor(...)])` (tested), several times faster.

        Returns the answer token ids (ending with the trie's last token, normally EOS).
        """
        if input_ids.ndim != 2 or input_ids.shape[0] != 1:
            raise ValueError(f"generate_constrained decodes one prompt; input_ids must be (1, L), got {tuple(input_ids.shape)}")
        device = self.get_input_embeddings().weight.device
        out = self(input_ids=input_ids.to(device), image_features=image_features, pixel_values=pixel_values, state_vectors=state_vectors, use_cache=True, logits_to_keep=1)
        past, logits = out.past_key_values, out.logits[0, -1]
        bias = first_token_bias or {}
        node, produced, pending = trie, [], []
        while node and len(produced) < max_new_tokens:
            if pending:  # feed the forced tokens in one call, then decide
                o = self.language_model(input_ids=torch.tensor([pending], device=device), past_key_values=past, use_cache=True, logits_to_keep=1)
                past, logits, pending = o.past_key_values, o.logits[0, -1], []
            allowed = list(node)
            if len(allowed) == 1:
                tok = allowed[0]
            else:
                scores = logits[allowed].float()
                if bias and not produced:
                    scores = scores + torch.tensor([bias.get(t, 0.0) for t in allowed], device=scores.device)
                tok = allowed[int(torch.argmax(scores))]
            produced.append(tok)
            node = node[tok]
            if node:
                pending.append(tok)
            # Walk forced chains without running the LM.
            while len(node) == 1 and len(produced) < max_new_tokens:
                (tok,) = node
                produced.append(tok)
                node = node[tok]
                if node:
                    pending.append(tok)
        return produced


# -- loading helpers -------------------------------------------------------------------------------
def load_submodule_strict(module: nn.Module, state: dict[str, Any], what: str) -> None:
    """`module.load_state_dict(state, strict=True)` with a clear error naming `what`."""
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        raise ValueError(f"{what}: missing keys {missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}")


# -- assembling from real transformers checkpoints ------------------------------------------------
VISION_PREFIX = "vision_model."  # vision weights inside full SigLIP/CLIP checkpoints
# Default statistics when a vision checkpoint ships no preprocessor_config.json.
DEFAULT_MEAN_STD = {"siglip_vision_model": ([0.5] * 3, [0.5] * 3), "clip_vision_model": ([0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711])}


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


def image_processor_from_dir(directory: str | os.PathLike, vision_config, processor_cls):
    """The family's image processor with the vision checkpoint's own mean/std (its
    preprocessor_config.json; the model type's published defaults when it has none)."""
    import json

    mean, std = DEFAULT_MEAN_STD[vision_config.model_type]
    path = os.path.join(directory, "preprocessor_config.json")
    if os.path.isfile(path):
        with open(path) as f:
            pp = json.load(f)
        mean, std = pp.get("image_mean", mean), pp.get("image_std", std)
    from .processing_embodied_vlm import EmbodiedVLMImageProcessor

    ip_cls = getattr(processor_cls, "image_processor_cls", EmbodiedVLMImageProcessor)
    s = int(vision_config.image_size)
    return ip_cls(size={"height": s, "width": s}, image_mean=list(mean), image_std=list(std))


def assemble_from_checkpoints(model_cls, processor_cls, vision_dir: str, text_dir: str, dtype: torch.dtype | None = None, **config_kwargs):
    """Build `model_cls` from a real SigLIP/CLIP directory and a real Qwen2/Llama directory.

    The vision tower and the LM load their checkpoints strictly (every key present, nothing
    unexpected; SigLIP's pooling head, which the core does not build, is the one thing dropped). The
    projector and the family's own layers start at their init and need training. The text tokenizer
    gains the family's special tokens (`processor_cls.special_tokens()`, looked up by name); the LM's
    embedding matrix grows to cover them (new rows = mean of the old ones, a common, stable start).
    Image statistics come from the vision checkpoint. Returns (model, processor).
    """
    from transformers import AutoConfig, AutoTokenizer

    vision_config = vision_config_from_dir(vision_dir)
    text_config = AutoConfig.from_pretrained(text_dir)
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    processor_cls.add_special_tokens_to(tokenizer)
    old_vocab = text_config.vocab_size
    text_config.vocab_size = max(old_vocab, len(tokenizer))
    processor = processor_cls(image_processor_from_dir(vision_dir, vision_config, processor_cls), tokenizer)
    config = model_cls.config_class(vision_config=vision_config, text_config=text_config, **processor.config_token_ids(), **config_kwargs)
    model = model_cls(config)
    raw = read_safetensors_dir(vision_dir)
    # Full image-text checkpoints (and vision-only ones written by transformers 4) prefix the vision
    # weights with `vision_model.`; transformers 5 vision-only checkpoints do not.
    if any(k.startswith(VISION_PREFIX) for k in raw):
        raw = {k[len(VISION_PREFIX):]: v for k, v in raw.items() if k.startswith(VISION_PREFIX)}
    if not getattr(config.vision_config, "vision_use_head", True):
        raw = {k: v for k, v in raw.items() if not k.startswith("head.")}
    if isinstance(model.vision_tower, VisionTower):
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
    if getattr(text_config, "tie_word_embeddings", False):
        model.tie_weights()
    if dtype is not None:
        model = model.to(dtype)
    processor.check_config(model.config)
    return model.eval(), processor
