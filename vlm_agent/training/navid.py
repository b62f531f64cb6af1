"""Behaviour-cloning trainer of the built-in NaVid model on collected shards (see `training/data.py`).

A batch holds whole slices of episodes: the frames they need are encoded once (vision tower + FiLM),
then every chosen step becomes one multimodal sentence whose history slots index those encodings,
exactly as the planner's cache does at run time (the same `select_history` subsampling).
Only the answer tokens are trained (cross-entropy), stop labels weighted by `stop_weight`.
Model selection is by *closed-loop* success on validation episodes, never per-step accuracy
(`training/selection.py`). The model, every batch and the selection runs live on `device`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import typing

import numpy as np
import torch

from vlm_agent.actions import ACTIONS
from vlm_agent.config import ConfigBase, param
from vlm_agent.devices import DEVICE_NAMES, check_device, check_device_name, to_device
from vlm_agent.models.navid.processing_navid import NavidProcessor
from vlm_agent.training.data import expand_shards, load_shards
from vlm_agent.training.selection import closed_loop_eval


@dataclasses.dataclass
class NavidTrainConfig(ConfigBase):
    """Training run settings (the `vlm-agent train` flags)."""

    data: list[str] = param([], "training shards (.npz from `vlm-agent collect`, or their directories); one listed k times is sampled k times as often (navid)")
    out_dir: str = param("checkpoints/navid_tiny", "checkpoint directory to write")
    init_from: str = param("", "start from this checkpoint directory instead of random weights (fine-tuning, DAgger)")
    minutes: float = param(20.0, "wall-clock training budget in minutes", min=0.1, max=10000.0)
    max_steps: int = param(100000, "optimiser steps at most", min=1)
    batch_episodes: int = param(4, "episodes per batch", min=1, max=256)
    steps_per_episode: int = param(8, "time steps sampled per episode per batch", min=1, max=1024)
    lr: float = param(1.5e-3, "peak AdamW learning rate", min=1e-6, max=1.0)
    weight_decay: float = param(0.01, "AdamW weight decay", min=0.0, max=1.0)
    warmup_steps: int = param(100, "linear warm-up steps", min=0)
    stop_weight: float = param(2.0, "loss weight of stop labels (rare, and a missed stop fails the episode)", min=0.0, max=100.0)
    image_size: int = param(64, "input size in pixels (must equal the shards' frames)", min=8, max=1024)
    patch_size: int = param(8, "vision patch size (64 / 8 = the 8x8 grid NaVid uses for the current frame)", min=1, max=64)
    vision_hidden: int = param(64, "vision tower width", min=8, max=2048)
    vision_layers: int = param(2, "vision tower layers", min=1, max=48)
    text_hidden: int = param(64, "LM width", min=8, max=4096)
    text_layers: int = param(2, "LM layers", min=1, max=64)
    heads: int = param(4, "attention heads (vision and LM)", min=1, max=64)
    film_layers: int = param(2, "instruction FiLM blocks over the vision grid", min=0, max=16)
    aux_weight: float = param(1.0, "weight of the training-only expert-action head on each frame's grounded grid (0 = none)", min=0.0, max=100.0)
    grounding_weight: float = param(0.0, "weight of the training-only grounding head: per grid cell, is a goal object there (needs shards with "
                                         "target_masks; 0 = none)", min=0.0, max=100.0)
    grounding_hard_negatives: int = param(0, "grounding head: also average the loss over each frame's k highest-scoring negative cells "
                                              "(look-alikes; 0 = all negatives alike)", min=0, max=4096)
    max_history_frames: int = param(8, "history frames fed to the LM (uniform subsample)", min=1, max=4096)
    recent_history_frames: int = param(0, "of those, the most recent frames always fed (0 = uniform subsample over the episode)", min=0, max=4096)
    vision_stem: str = param("vit", "vision stem: vit (SigLIP tower, FiLM after it) or film_cnn (instruction FiLM inside every CNN stage)", choices=("vit", "film_cnn"))
    cnn_channels: str = param("24,48", "film_cnn channels of the stages before the last (comma-separated)")
    current_grid_size: int = param(8, "current-frame token grid (8 -> 64 tokens)", min=1, max=64)
    ego_map: int = param(1, "1 = a new model gets the map memory when the shards hold egocentric maps (planners/ego_map.py); 0 = never", min=0, max=1)
    map_grid_size: int = param(4, "map memory token grid (4 -> 16 tokens)", min=1, max=16)
    val_episodes: int = param(50, "closed-loop validation episodes per evaluation (0 = none)", min=0)
    val_max_steps: int = param(300, "step cap per validation episode (300 = the episodes' full horizon)", min=1)
    resume: int = param(1, "1 = continue from <out_dir>.work/train_state.pt when it exists (model, optimiser, step, clock)", min=0, max=1)
    eval_every_min: float = param(6.0, "minutes between closed-loop evaluations", min=0.1)
    threads: int = param(2, "torch CPU threads", min=1, max=256)
    seed: int = param(0, "random seed")
    device: str = param("cpu", f"torch device for training and the closed-loop selection ({', '.join(DEVICE_NAMES)}); checked before any work")

    def __post_init__(self):
        super().__post_init__()
        try:
            check_device_name(self.device)
        except ValueError as exc:
            raise ValueError(f"NavidTrainConfig.device: {exc}") from None


class EpisodeBatcher:
    """Builds `NavidModel.forward_train` batches (CPU tensors) from a dataset dict (see `training.data.load_shards`)."""

    def __init__(self, data: dict, processor: NavidProcessor, steps_per_episode: int, stop_weight: float, seed: int = 0, map_cells: int = 0,
                 target_masks: bool = False):
        self.data, self.processor = data, processor
        if target_masks and "target_masks" not in data:
            raise ValueError("grounding supervision needs shards with target_masks (collect without --no-target-masks)")
        self.target_masks = target_masks
        if map_cells and "maps" not in data:
            raise ValueError("the model reads a map memory but the shards hold no egocentric maps (collect without --no-ego-map)")
        if map_cells and data["ego_map_config"]["cells"] != map_cells:
            raise ValueError(f"the shards' maps have {data['ego_map_config']['cells']} cells, the model reads {map_cells}")
        self.map_cells = map_cells
        self.steps_per_episode, self.stop_weight = steps_per_episode, stop_weight
        self.rng = np.random.default_rng(seed)
        self.instr_ids = [processor.encode_instruction(str(t)) for t in data["instructions"]]
        self.answers = [processor.answer_ids([a]) for a in ACTIONS]

    def sample(self, n_episodes: int) -> dict:
        """`n_episodes` distinct episodes, drawn with probability proportional to `episode_weight` when the data has one."""
        n = len(self.data["episode_start"])
        w = self.data.get("episode_weight")
        p = None if w is None else w / w.sum()
        eps = self.rng.choice(n, size=min(n_episodes, n), replace=False, p=p)
        return self.build(list(eps))

    def build(self, episodes: list[int], steps: list[np.ndarray] | None = None) -> dict:
        proc, d = self.processor, self.data
        frame_ids: list[int] = []
        frame_episode: list[int] = []
        seqs, labels, feat_index, weights, actions, current = [], [], [], [], [], []
        per_frame_his, per_frame_cur = proc.history_tokens_per_frame, proc.current_tokens
        plans = []
        for j, e in enumerate(episodes):
            start, length = int(d["episode_start"][e]), int(d["episode_length"][e])
            if steps is not None:
                chosen = steps[j]
            elif length <= self.steps_per_episode:
                chosen = np.arange(length)
            else:
                chosen = np.sort(self.rng.choice(length, self.steps_per_episode, replace=False))
            needed = set(int(s) for s in chosen)
            hists = {int(s): proc.history_indices(int(s)) for s in chosen}
            for h in hists.values():
                needed.update(int(i) for i in h)
            local = {}
            for t in sorted(needed):
                local[t] = len(frame_ids)
                frame_ids.append(start + t)
                frame_episode.append(j)
            plans.append((e, start, chosen, hists, local))
        n_frames = len(frame_ids)
        for e, start, chosen, hists, local in plans:
            for s in chosen:
                s = int(s)
                hist = hists[s]
                action = int(d["actions"][start + s])
                prompt = self.processor.prompt_ids(self.instr_ids[e], len(hist))
                answer = self.answers[action]
                seqs.append(prompt + answer)
                labels.append([-100] * len(prompt) + answer)
                for h in hist:
                    base = local[int(h)] * per_frame_his
                    feat_index.extend(range(base, base + per_frame_his))
                base = n_frames * per_frame_his + local[s] * per_frame_cur
                feat_index.extend(range(base, base + per_frame_cur))
                weights.append(self.stop_weight if ACTIONS[action].kind == "stop" else 1.0)
                actions.append(action)
                current.append(local[s])
        L = max(len(s) for s in seqs)
        pad = proc.ids["pad_token_id"]
        input_ids = torch.full((len(seqs), L), pad, dtype=torch.long)
        lab = torch.full((len(seqs), L), -100, dtype=torch.long)
        attn = torch.zeros((len(seqs), L), dtype=torch.long)
        for i, (s, lb) in enumerate(zip(seqs, labels)):
            input_ids[i, : len(s)] = torch.tensor(s)
            lab[i, : len(lb)] = torch.tensor(lb)
            attn[i, : len(s)] = 1
        instr = [self.instr_ids[e] for e, *_ in plans]
        T = max(len(t) for t in instr)
        instr_ids = torch.full((len(instr), T), pad, dtype=torch.long)
        instr_mask = torch.zeros((len(instr), T), dtype=torch.long)
        for i, t in enumerate(instr):
            instr_ids[i, : len(t)] = torch.tensor(t)
            instr_mask[i, : len(t)] = 1
        out = {}
        if self.map_cells:
            from vlm_agent.planners.ego_map import unpack_maps

            out["maps"] = torch.from_numpy(unpack_maps(d["maps"][np.asarray(frame_ids)], self.map_cells))
        if self.target_masks:
            out["target_masks"] = torch.from_numpy(d["target_masks"][np.asarray(frame_ids)].astype(np.float32))
        return {
            **out,
            "pixel_values": proc.frames_to_pixel_values(d["frames"][np.asarray(frame_ids)]),
            "frame_episode": torch.tensor(frame_episode, dtype=torch.long),
            "instruction_ids": instr_ids,
            "instruction_mask": instr_mask,
            "input_ids": input_ids,
            "attention_mask": attn,
            "labels": lab,
            "feature_index": torch.tensor(feat_index, dtype=torch.long),
            "loss_weight": torch.tensor(weights, dtype=torch.float32),
            "actions": torch.tensor(actions, dtype=torch.long),
            "current_frame": torch.tensor(current, dtype=torch.long),
        }


def plot_training_curves(log_path: str, png_path: str, series: tuple = (("success_rate", "SR"), ("spl", "SPL")),
                         log_loss: bool = False, val_label: str = "closed-loop val") -> None:
    """Loss (EMA) and closed-loop val metrics against optimiser steps, from a trainer's
    `train_log.jsonl` (records with `loss_ema`, and records with a `val` dict), as a PNG. `series`:
    (key in `val`, legend label) per plotted metric (all in [0, 1]); default NaVid's SR and SPL.
    `val_label`: the right panel's axis label. Every family's trainer writes its curves with this."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss, val = [], []
    with open(log_path) as f:
        for line in f:
            rec = json.loads(line)
            if "val" in rec:
                val.append((rec["step"], *(rec["val"].get(k, float("nan")) for k, _ in series)))
            elif rec.get("loss_ema") is not None:
                loss.append((rec["step"], rec["loss_ema"]))
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    if loss:
        a.plot(*zip(*loss))
        if log_loss:
            a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("training loss (EMA)")
    if val:
        steps, *columns = zip(*val)
        for (_, label), values, marker in zip(series, columns, "os^dv"):
            b.plot(steps, values, marker + "-", label=label)
        b.legend()
    b.set_xlabel("step")
    b.set_ylabel(val_label)
    b.set_ylim(0, 1.02)
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def save_checkpoint(model, processor, directory: str) -> None:
    """Model + processor into one directory (what the planner and `--init-from` load)."""
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def save_train_state(path: str, model, optimizer, step: int, ema, best: dict, elapsed_s: float) -> None:
    """What a trainer needs to resume (`load_train_state`): weights, optimiser, step, loss EMA, best
    validation result, training seconds so far. Every family's trainer writes it at each evaluation."""
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "ema": ema, "best": best,
                "elapsed_s": elapsed_s}, path)


def load_train_state(path: str, model, optimizer, device) -> dict | None:
    """The state `save_train_state` wrote at `path`, loaded into `model` and `optimizer`; None when
    there is none. Returns {"step", "ema", "best", "elapsed_s"}."""
    if not os.path.isfile(path):
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return {k: state[k] for k in ("step", "ema", "best", "elapsed_s")}


def resume_train_state(path: str, model, optimizer, device, batcher, seed: int, bar, enabled: bool = True) -> dict | None:
    """`load_train_state` for a trainer's loop (every family's): when `enabled` and a state is at
    `path`, the batcher's rng is re-seeded from (seed, step) so a resumed run draws fresh batches,
    and the progress bar is advanced and told. Returns the state (None: start from step 0)."""
    state = load_train_state(path, model, optimizer, device) if enabled else None
    if state is not None:
        batcher.rng = np.random.default_rng([seed, state["step"]])
        bar.update(state["step"])
        bar.write(f"resumed from {path} at step {state['step']} ({state['elapsed_s'] / 60:.1f} min in)")
    return state


class TrainingRun(typing.NamedTuple):
    """Where a trainer writes (`start_training_run`) and where it starts: step 0 or a resumed state.
    t0: the monotonic time the run counts its budget from (earlier by the resumed run's seconds)."""

    work_dir: str
    log_path: str
    state_path: str
    step: int
    ema: object
    best: dict
    t0: float


def start_training_run(out_dir: str, model, optimizer, device, batcher, seed: int, bar, resume: bool, best: dict, ema=None) -> TrainingRun:
    """`out_dir` and its `.work` sibling made, the log and state paths, and the state to start from:
    `resume_train_state` when `resume` finds one, else step 0 with `best` / `ema` as given.
    What the PaLM-E / Octopus, Sa2VA and verifier trainers share."""
    os.makedirs(out_dir, exist_ok=True)
    work_dir = out_dir.rstrip("/") + ".work"
    os.makedirs(work_dir, exist_ok=True)
    state_path = os.path.join(work_dir, "train_state.pt")
    t0, step = time.monotonic(), 0
    state = resume_train_state(state_path, model, optimizer, device, batcher, seed, bar, resume)
    if state is not None:
        step, ema, best = state["step"], state["ema"], state["best"]
        t0 -= state["elapsed_s"]
    return TrainingRun(work_dir, os.path.join(out_dir, "train_log.jsonl"), state_path, step, ema, best, t0)


def _map_fields(cfg: NavidTrainConfig, data: dict) -> dict:
    """Config fields of a new model's map memory: the shards' map settings when they have maps and
    `cfg.ego_map` is on, else none."""
    if not cfg.ego_map or "maps" not in data:
        return {}
    from vlm_agent.planners.ego_map import CHANNELS

    return {"map_cells": int(data["ego_map_config"]["cells"]), "map_channels": len(CHANNELS), "map_grid_size": cfg.map_grid_size,
            "ego_map": dict(data["ego_map_config"])}


def train(cfg: NavidTrainConfig, progress: bool = True) -> dict:
    """Train on `cfg.data`, keep the checkpoint with the best closed-loop val SR (then SPL) in
    `cfg.out_dir`; returns the run summary (also written as `training_summary.json`)."""
    device = torch.device(check_device(cfg.device))  # first: a bad device fails before any work

    from tqdm import tqdm

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import load_model_and_processor, new_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if not cfg.data:
        raise ValueError("no training shards given (--data)")
    data = load_shards(expand_shards(cfg.data))
    if data["frames"].shape[1:] != (cfg.image_size, cfg.image_size, 3):
        raise ValueError(f"shards hold {data['frames'].shape[1:]} frames but image_size is {cfg.image_size}")
    if cfg.init_from:
        model, processor = load_model_and_processor(cfg.init_from)
        if model.config.model_type != "navid":
            raise ValueError(f"--init-from {cfg.init_from}: a '{model.config.model_type}' model, not a NaVid one")
    else:
        tokenizer = train_tokenizer(sorted(set(str(t) for t in data["instructions"])), special_tokens=NavidProcessor.special_tokens())
        model, processor = new_model("navid", tokenizer, image_size=cfg.image_size, patch_size=cfg.patch_size, vision_hidden=cfg.vision_hidden,
                             vision_layers=cfg.vision_layers, text_hidden=cfg.text_hidden, text_layers=cfg.text_layers, heads=cfg.heads,
                             film_layers=cfg.film_layers, max_history_frames=cfg.max_history_frames, aux_action_classes=len(ACTIONS) if cfg.aux_weight else 0,
                             vision_stem=cfg.vision_stem, cnn_channels=[int(c) for c in str(cfg.cnn_channels).split(",") if c.strip()],
                             recent_history_frames=cfg.recent_history_frames, current_grid_size=cfg.current_grid_size,
                             **_map_fields(cfg, data))
    fields = _map_fields(cfg, data)
    if fields and not getattr(model.config, "map_cells", 0):
        # A map-less checkpoint fine-tuned on shards with maps gains the map memory.
        model.add_map_memory(fields["map_cells"], fields["map_grid_size"], fields["ego_map"], fields["map_channels"])
        processor.current_tokens = model.config.current_tokens
        processor.check_config(model.config)
    if cfg.aux_weight and model.aux_action_head is None:
        model.add_aux_action_head(len(ACTIONS))
    if cfg.grounding_weight and model.aux_grounding_head is None:
        model.add_aux_grounding_head()
    model.to(device)
    model.train()
    batcher = EpisodeBatcher(data, processor, cfg.steps_per_episode, cfg.stop_weight, cfg.seed, map_cells=getattr(model.config, "map_cells", 0),
                             target_masks=bool(cfg.grounding_weight))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    os.makedirs(cfg.out_dir, exist_ok=True)
    work_dir = cfg.out_dir.rstrip("/") + ".work"
    log_path = os.path.join(cfg.out_dir, "train_log.jsonl")
    log_f = open(log_path, "a")
    budget_s = cfg.minutes * 60
    t0 = time.monotonic()
    total_steps = cfg.max_steps
    best = {"success_rate": -1.0}
    last_eval = time.monotonic()
    ema = None
    part_ema: dict[str, float] = {}  # the loss's parts (LM, aux action, grounding), for the log
    bar = tqdm(total=total_steps, desc="train navid", disable=not progress, unit="step")
    step = 0
    state_path = os.path.join(work_dir, "train_state.pt")
    state = resume_train_state(state_path, model, opt, device, batcher, cfg.seed, bar, cfg.resume)
    if state is not None:
        step, ema, best = state["step"], state["ema"], state["best"]
        t0 -= state["elapsed_s"]

    def evaluate_and_keep(step):
        nonlocal best
        model.eval()
        save_checkpoint(model, processor, work_dir)
        res = closed_loop_eval(work_dir, cfg.val_episodes, cfg.val_max_steps, cfg.image_size, device=cfg.device) if cfg.val_episodes else {"success_rate": 0.0, "spl": 0.0}
        model.train()
        rec = {"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "val": res, "loss_ema": ema,
               "loss_parts_ema": {k: round(v, 5) for k, v in part_ema.items()}}
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        if (res["success_rate"], res["spl"]) >= (best["success_rate"], best.get("spl", -1.0)):
            best = {**res, "step": step}
            save_checkpoint(model, processor, cfg.out_dir)
        save_train_state(state_path, model, opt, step, ema, best, time.monotonic() - t0)
        plot_training_curves(log_path, os.path.join(cfg.out_dir, "training_curves.png"))
        bar.write(f"step {step}: closed-loop val SR {res['success_rate']:.2f} SPL {res['spl']:.2f} (best {best['success_rate']:.2f} @ {best['step']})")

    while step < total_steps and time.monotonic() - t0 < budget_s:
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, (time.monotonic() - t0) / budget_s))) * 0.9 + 0.1
        for g in opt.param_groups:
            g["lr"] = lr
        batch = to_device(batcher.sample(cfg.batch_episodes), device)
        batch["aux_weight"] = cfg.aux_weight
        batch["grounding_weight"] = cfg.grounding_weight
        batch["grounding_hard_negatives"] = cfg.grounding_hard_negatives
        loss = model.forward_train(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        value = loss.detach().item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        for k, v in model.last_loss_parts.items():
            part_ema[k] = v if k not in part_ema else 0.98 * part_ema[k] + 0.02 * v
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.1e}")
        if step % 50 == 0:
            log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "loss_ema": ema, "lr": lr,
                                    **{f"{k}_loss_ema": round(v, 5) for k, v in part_ema.items()}}) + "\n")
            log_f.flush()
        if time.monotonic() - last_eval > cfg.eval_every_min * 60:
            evaluate_and_keep(step)
            last_eval = time.monotonic()
    evaluate_and_keep(step)
    bar.close()
    summary = {"steps": step, "train_minutes": round((time.monotonic() - t0) / 60, 1), "params": model.num_parameters(),
               "frames": int(len(data["frames"])), "episodes": int(len(data["episode_start"])), "best": best, "config": cfg.to_dict()}
    with open(os.path.join(cfg.out_dir, "training_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log_f.close()
    return summary
