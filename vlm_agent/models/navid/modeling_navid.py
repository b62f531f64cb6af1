"""NaVid-style navigation VLM on the embodied core.

Data flow for one step (shapes for the defaults: 64 px, patch 8, grid 8, D_v vision, D LM width):
    instruction ids (T,) -> LM embeddings -> GRU -> FiLM parameters (film_layers x 2 x D_v)
    frame (3, 64, 64) -> vision_encoder -> (64, D_v) -> FiLM grounding -> grid (8, 8, D_v)
        current frame: pool to 8x8 -> projector -> 64 tokens (64, D)
        history frame: pool to 2x2 -> projector -> 4 tokens  (4, D), computed ONCE and cached
    <s> instr [HIS] <img>*4k [OBS] <img>*64 [NAV] -> causal LM -> primitive text

Why FiLM: the project's CPU experiment (FINDINGS.md) showed that a small policy given the
instruction only as LM tokens (late fusion) ignores it and stops at any object; letting instruction
words scale/shift vision channels made it ground colour and shape. We apply FiLM *after* the
swappable vision encoder (so accelerated pixel-only encoders still fit) and *before* pooling (so the
4 history tokens already say where instruction-relevant things were).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..embodied_vlm.modeling_embodied_vlm import EmbodiedVLMModel
from .configuration_navid import NavidConfig


class FiLMBlock(nn.Module):
    """Residual FiLM'd MLP over grid features plus a depthwise 3x3 conv for spatial context.

    x (B, g, g, D) and (gamma, beta) (B, D) -> (B, g, g, D).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        self.spatial = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) * (1 + gamma[:, None, None, :]) + beta[:, None, None, :]
        x = x + self.fc2(F.gelu(self.fc1(h)))
        return x + self.spatial(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class FiLMConvStem(nn.Module):
    """The `film_cnn` vision stem: stride-2 conv stages, each scaled/shifted by the instruction.

    pixel_values (B, 3, S, S) and film (B or 1, film_dim) -> features (B, (S / 2**n)**2, C_last), a
    row-major grid like a ViT's patch tokens. Stage k: conv 3x3 stride 2 -> GroupNorm -> FiLM -> ReLU
    (stages after the first add a residual conv 3x3 -> GroupNorm -> FiLM -> ReLU). `film=None` is the
    identity modulation (instruction-blind features, e.g. for shape checks).

    Why: in the project's CPU experiment the instruction had to act inside the CNN, at several
    stages, before pooling, for a small policy to bind colour and shape; at 64 px a target 3 m away
    is 2-4 pixels wide, which a patch-8 ViT averages away before any grounding.
    """

    def __init__(self, channels: list[int]):
        super().__init__()
        self.channels = list(channels)
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        self.res = nn.ModuleList()
        self.res_norm = nn.ModuleList()
        c_in = 3
        for k, c in enumerate(self.channels):
            self.down.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
            self.down_norm.append(nn.GroupNorm(min(8, c), c))
            self.res.append(nn.Conv2d(c, c, 3, padding=1) if k else nn.Identity())
            self.res_norm.append(nn.GroupNorm(min(8, c), c) if k else nn.Identity())
            c_in = c

    @property
    def film_dim(self) -> int:
        """Length of the FiLM vector: (gamma, beta) per channel of every modulated layer."""
        return 2 * (self.channels[0] + 2 * sum(self.channels[1:]))

    def forward(self, pixel_values: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        x, offset, b = pixel_values, 0, pixel_values.shape[0]

        def modulate(h, off):
            c = h.shape[1]
            if film is None:
                return h, off + 2 * c
            g = film[:, off: off + c].expand(b, -1)[:, :, None, None]
            be = film[:, off + c: off + 2 * c].expand(b, -1)[:, :, None, None]
            return h * (1 + g) + be, off + 2 * c

        for k in range(len(self.channels)):
            h, offset = modulate(self.down_norm[k](self.down[k](x)), offset)
            x = F.relu(h)
            if k:
                h, offset = modulate(self.res_norm[k](self.res[k](x)), offset)
                x = F.relu(x + h)
        return x.flatten(2).transpose(1, 2)


class MapEncoder(nn.Module):
    """The egocentric map memory -> a grid of features.

    maps (B, C, N, N) in {0, 1} (free / obstacle / visited, ahead up; `planners/ego_map.py`) ->
    (B, g * g, D_v): stride-2 conv stages (conv 3x3 -> GroupNorm -> ReLU) down to at most 2g cells,
    then average-pooled to g x g (row-major, like the frame grid).
    """

    def __init__(self, in_channels: int, cells: int, dim: int, grid: int):
        super().__init__()
        layers, c_in, size = [], in_channels, cells
        widths = [16, 32]
        k = 0
        while size > 2 * grid or k == 0:
            c = widths[k] if k < len(widths) else dim
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.ReLU()]
            c_in, size, k = c, (size + 1) // 2, k + 1
        layers += [nn.Conv2d(c_in, dim, 3, padding=1), nn.GroupNorm(min(8, dim), dim), nn.ReLU(), nn.AdaptiveAvgPool2d(grid)]
        self.net = nn.Sequential(*layers)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.net(maps).flatten(2).transpose(1, 2)


def _zero_linear(d_in: int, d_out: int) -> nn.Linear:
    """A Linear that starts at zero (FiLM output: the modulation starts as the identity and is
    learnt); `_zero_init` tells the core's init rule to keep it so."""
    layer = nn.Linear(d_in, d_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    layer._zero_init = True
    return layer


class NavidModel(EmbodiedVLMModel):
    config_class = NavidConfig
    config: NavidConfig

    def __init__(self, config: NavidConfig):
        super().__init__(config)
        dv, d = config.vision_config.hidden_size, config.text_config.hidden_size
        self.stem_film = None
        if config.vision_stem == "film_cnn":
            # The CNN replaces the transformers tower (built by the core, dropped here before it holds
            # any saved weight). It is instruction-conditioned, so pixel-only accelerated encoders do
            # not apply (`accepts_external_encoder`); it is small enough for torch on a CPU.
            self.vision_tower = FiLMConvStem(list(config.cnn_channels) + [dv])
            self.stem_film = nn.Sequential(nn.Linear(d, d), nn.GELU(), _zero_linear(d, self.vision_tower.film_dim))
        # A GRU over the instruction's token embeddings: word order matters ("first x, then y").
        self.instruction_encoder = nn.GRU(d, d, batch_first=True)
        self.film_blocks = nn.ModuleList(FiLMBlock(dv) for _ in range(config.film_layers))
        # Zero-initialised last layer: FiLM starts as the identity and learns to modulate.
        self.instruction_film = nn.Sequential(nn.Linear(d, d), nn.GELU(), _zero_linear(d, 2 * dv * config.film_layers)) if config.film_layers else None
        self.map_encoder = MapEncoder(config.map_channels, config.map_cells, dv, config.map_grid_size) if config.map_cells else None
        self.aux_action_head = None
        if config.aux_action_classes:
            self.add_aux_action_head(config.aux_action_classes)
        self.aux_grounding_head = nn.Linear(dv, 1) if config.aux_grounding else None
        self.last_loss_parts: dict[str, float] = {}
        self.post_init()

    @property
    def accepts_external_encoder(self) -> bool:
        """False for the instruction-conditioned film_cnn stem: an exported pixel-only encoder would
        drop the grounding (the planner then keeps the torch stem and says why)."""
        return self.config.vision_stem != "film_cnn"

    def set_vision_encoder(self, encoder) -> None:
        if encoder is not None and not self.accepts_external_encoder:
            raise TypeError("the film_cnn vision stem is instruction-conditioned; it cannot be replaced by a pixel-only encoder")
        super().set_vision_encoder(encoder)

    def grounded_grid(self, pixel_values: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, 3, S, S), condition (B or 1, D) -> grounded grid (B, g, g, D_v): the
        instruction acts inside the CNN stem (film_cnn) and/or in the FiLM blocks after it."""
        if self.stem_film is not None:
            feats = self.vision_tower(pixel_values, self.stem_film(condition))
        else:
            feats = self.get_vision_features(pixel_values)
        return self.ground(feats, condition)

    def add_aux_action_head(self, n_classes: int) -> None:
        """Training-only deep supervision: expert action from one frame's grounded 2x2 grid. A tiny LM
        reading from-scratch vision tokens learns slowly; this gives the vision + FiLM path a direct
        gradient (the recipe that grounded instructions in the project's CPU experiment)."""
        dv = self.config.vision_config.hidden_size
        self.config.aux_action_classes = n_classes
        # With a map memory the head also reads the map's mean feature (exploring depends on it).
        self.aux_action_head = nn.Linear((self.config.history_tokens_per_frame + (1 if self.map_encoder is not None else 0)) * dv, n_classes)

    def add_aux_grounding_head(self) -> None:
        """Training-only deep supervision of grounding: per cell of the grounded grid, is a goal object
        of the instruction there (`grounding_loss`). The action labels say only what to do; they do not
        say which of two blue objects is the cube, and the stop decision depends on exactly that."""
        self.config.aux_grounding = 1
        self.aux_grounding_head = nn.Linear(self.config.vision_config.hidden_size, 1).to(next(self.parameters()).device)

    def grounding_logits(self, grid: torch.Tensor) -> torch.Tensor:
        """grounded grid (B, g, g, D_v) -> (B, g, g) logits of "a goal object is in this cell"."""
        if self.aux_grounding_head is None:
            raise ValueError("this NaVid model has no grounding head (aux_grounding = 0)")
        return self.aux_grounding_head(grid).squeeze(-1)

    def grounding_loss(self, grid: torch.Tensor, target_masks: torch.Tensor, hard_negatives: int = 0) -> torch.Tensor:
        """Class-balanced BCE of `grounding_logits` against target_masks (B, h, w) goal pixels per
        image block (any > 0 = positive; max-pooled to the grid when h != g): the mean over positive
        cells and the mean over negative cells, averaged (about 1% of cells are positive, and a batch
        without any counts its negatives only).

        hard_negatives k > 0: the negative term is the average of the mean over all negative cells and
        the mean over each frame's k highest-scoring negative cells (online hard example mining). Why:
        nearly all negatives are floor and walls, learnt within minutes; the look-alikes that end
        episodes with a wrong stop (the same colour, another shape) are a few cells in a thousand,
        and the plain mean hardly sees them. The hardest negatives of a frame are those look-alikes."""
        logits = self.grounding_logits(grid)
        g = logits.shape[-1]
        target = (target_masks > 0).float()
        if tuple(target.shape[-2:]) != (g, g):
            target = F.adaptive_max_pool2d(target[:, None], g)[:, 0]
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        pos = target > 0.5
        neg_loss = bce[~pos].mean() if (~pos).any() else bce.sum() * 0
        if hard_negatives and (~pos).any():
            flat = logits.flatten(1).masked_fill(pos.flatten(1), float("-inf"))
            k = min(int(hard_negatives), flat.shape[1])
            top, idx = flat.topk(k, dim=1)
            valid = torch.isfinite(top)
            hard = bce.flatten(1).gather(1, idx)[valid]
            neg_loss = 0.5 * (neg_loss + hard.mean())
        if not pos.any():
            return neg_loss
        return 0.5 * (bce[pos].mean() + neg_loss)

    def add_map_memory(self, cells: int, grid_size: int, ego_map: dict, channels: int = 3) -> None:
        """Give a trained model without one a map memory (fine-tuning from a map-less checkpoint):
        a new map encoder, and the auxiliary head widened with zero weights on the map feature, so
        the model's answers are unchanged until the new weights learn. The caller updates the
        processor's `current_tokens` to `config.current_tokens`."""
        if self.map_encoder is not None:
            raise ValueError("the model already has a map memory")
        c = self.config
        c.map_cells, c.map_grid_size, c.map_channels, c.ego_map = int(cells), int(grid_size), int(channels), dict(ego_map)
        dv = c.vision_config.hidden_size
        device = next(self.parameters()).device
        self.map_encoder = MapEncoder(c.map_channels, c.map_cells, dv, c.map_grid_size).to(device)
        if self.aux_action_head is not None:
            old = self.aux_action_head
            self.aux_action_head = nn.Linear(old.in_features + dv, old.out_features).to(device)
            with torch.no_grad():
                self.aux_action_head.weight.zero_()
                self.aux_action_head.weight[:, : old.in_features] = old.weight
                self.aux_action_head.bias.copy_(old.bias)

    # -- instruction and frames --------------------------------------------------------------
    def instruction_condition(self, instruction_ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """instruction_ids (B, T) right-padded (+ mask (B, T), 1 = real) -> condition (B, D): the GRU
        state after the last real token of the LM's token embeddings."""
        emb = self.language_model.get_input_embeddings()(instruction_ids)
        out, _ = self.instruction_encoder(emb)
        if mask is None:
            return out[:, -1]
        last = mask.long().sum(1).clamp_min(1) - 1
        return out[torch.arange(out.shape[0]), last]

    def ground(self, vision_features: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """vision_features (B, N, D_v), condition (B, D) or (1, D) -> grounded grid (B, g, g, D_v)."""
        b, n, dv = vision_features.shape
        g = self.config.grid_size
        x = vision_features.reshape(b, g, g, dv)
        if self.instruction_film is None:
            return x
        film = self.instruction_film(condition).expand(b, -1).reshape(b, self.config.film_layers, 2, dv)
        for i, block in enumerate(self.film_blocks):
            x = block(x, film[:, i, 0], film[:, i, 1])
        return x

    def frame_tokens(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """grounded grid (B, g, g, D_v) -> (current tokens (B, 64, D), history tokens (B, 4, D))."""
        c = self.config
        x = grid.permute(0, 3, 1, 2)
        cur = F.adaptive_avg_pool2d(x, c.current_grid_size).flatten(2).transpose(1, 2)
        his = F.adaptive_avg_pool2d(x, c.history_grid_size).flatten(2).transpose(1, 2)
        return self.multi_modal_projector(cur), self.multi_modal_projector(his)

    def encode_frames(self, pixel_values: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values (B, 3, S, S), condition (B or 1, D) -> (current (B, 64, D), history (B, 4, D)).
        The current tokens are the frame's only: a model with a map memory appends `map_features`."""
        return self.frame_tokens(self.grounded_grid(pixel_values, condition))

    def map_features(self, maps: torch.Tensor) -> torch.Tensor:
        """maps (B, C, N, N) {0, 1} -> map tokens (B, map_grid_size^2, D) (the LM's width)."""
        if self.map_encoder is None:
            raise ValueError("this NaVid model has no map memory (map_cells = 0)")
        c = self.config
        if maps.dim() != 4 or tuple(maps.shape[1:]) != (c.map_channels, c.map_cells, c.map_cells):
            raise ValueError(f"expected maps (B, {c.map_channels}, {c.map_cells}, {c.map_cells}), got {tuple(maps.shape)}")
        return self.multi_modal_projector(self.map_encoder(maps.float()))

    # -- training ------------------------------------------------------------------------------
    def forward_train(self, batch: dict) -> torch.Tensor:
        """Loss over a batch built by `vlm_agent.training.navid.EpisodeBatcher`.

        batch: pixel_values (F, 3, S, S) all frames of the batch's episodes; frame_episode (F,);
            maps (F, C, N, N) their egocentric map memories (models with `map_cells` only);
            target_masks (F, h, w) goal pixels per image block (models with a grounding head; optional);
            instruction_ids/instruction_mask (E, T); input_ids/attention_mask/labels (B, L);
            feature_index (M,) indices into [history tokens of all frames (F*4) | current (F*(64 + map tokens))]
            in placeholder order; loss_weight (B,) per-sample weights.
        Returns the `loss_weight`-weighted mean over samples of each answer's mean token cross-entropy
        (+ `aux_weight` x the auxiliary action loss, + `grounding_weight` x `grounding_loss`, when the
        heads exist). The parts are kept in `last_loss_parts` (floats) for the training log.
        """
        cond = self.instruction_condition(batch["instruction_ids"], batch["instruction_mask"])[batch["frame_episode"]]
        grid = self.grounded_grid(batch["pixel_values"], cond)
        cur, his = self.frame_tokens(grid)
        map_feats = None
        if self.map_encoder is not None:
            map_feats = self.map_encoder(batch["maps"].float())  # (F, g*g, D_v)
            cur = torch.cat([cur, self.multi_modal_projector(map_feats)], dim=1)
        d = cur.shape[-1]
        table = torch.cat([his.reshape(-1, d), cur.reshape(-1, d)])
        feats = table[batch["feature_index"]]
        embeds = self.embed_multimodal(batch["input_ids"], feats)
        out = self.language_model.model(inputs_embeds=embeds, attention_mask=batch["attention_mask"])
        hidden = out.last_hidden_state[:, :-1]
        labels = batch["labels"][:, 1:]
        sel = labels != -100
        logits = self.language_model.lm_head(hidden[sel])
        tok_loss = F.cross_entropy(logits, labels[sel], reduction="none")
        # Per-sample loss: each answer's token losses are averaged first, so a 2-token `stop` counts as
        # much as a 5-token move; `loss_weight` then weights samples (the stop weight acts as stated).
        rows = sel.nonzero()[:, 0]
        n_tok = sel.sum(1).clamp_min(1).to(tok_loss.dtype)
        sample_loss = torch.zeros(labels.shape[0], dtype=tok_loss.dtype, device=tok_loss.device).index_add_(0, rows, tok_loss) / n_tok
        w = batch["loss_weight"] * (sel.any(1)).to(tok_loss.dtype)
        loss = (sample_loss * w).sum() / w.sum().clamp_min(1e-8)
        parts = {"lm": loss.detach().item()}
        if self.aux_grounding_head is not None and "target_masks" in batch and batch.get("grounding_weight", 1.0):
            g_loss = self.grounding_loss(grid, batch["target_masks"], int(batch.get("grounding_hard_negatives", 0)))
            parts["grounding"] = g_loss.detach().item()
            loss = loss + batch.get("grounding_weight", 1.0) * g_loss
        self.last_loss_parts = parts
        if self.aux_action_head is not None and "actions" in batch:
            pooled = F.adaptive_avg_pool2d(grid.permute(0, 3, 1, 2), self.config.history_grid_size).flatten(1)
            if map_feats is not None:
                pooled = torch.cat([pooled, map_feats.mean(1)], dim=1)
            aux = self.aux_action_head(pooled[batch["current_frame"]])
            aux_loss = (F.cross_entropy(aux, batch["actions"], reduction="none") * batch["loss_weight"]).sum() / batch["loss_weight"].sum()
            parts["aux"] = aux_loss.detach().item()
            loss = loss + batch.get("aux_weight", 1.0) * aux_loss
        return loss
