"""Training of the attribute verifier (`vlm-agent train --family verifier`).

Data: shards from `vlm-agent collect --suite verifier` (`training.verifier_data`): frames with every
object's mask. Each step draws instances, perturbs their masks as a segmenter would (a pixel grown or
shaved, half of the mask missing), crops them with a jittered box, and trains two cross-entropies:
colour (objects only) and shape (objects, and `other` for furniture and wall blobs). The shape trunk
reads a colour-blind copy of each crop (`InstanceBatcher.colour_blind`): held-out colour-shape pairs
never appear in training scenes, and a shape head that sees colour learns the pairs instead.

Selection: on held-out val shards (`val_data`, other scenes; held-out colour-shape pairs included),
by the verifier's own job: of every val object, the query naming it must pass and the query naming
a look-alike (its colour, another shape; its shape, another colour) must not. `verify_auc` is the
probability that a true query's match score beats a look-alike query's on the same crop. The
checkpoint with the best `verify_auc` is kept. Whether the verifier helps the robot is measured
closed loop (`vlm-agent eval --suite manip ... --perception-param verifier=...`), not here.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vlm_agent.config import ConfigBase, param
from vlm_agent.devices import check_device


@dataclass
class VerifierTrainConfig(ConfigBase):
    """Training run settings (the `vlm-agent train --family verifier` flags)."""

    data: list[str] = param([], "training verifier shards (.npz from `vlm-agent collect --suite verifier`, or folders of them)")
    val_data: list[str] = param([], "validation verifier shards (val split) for checkpoint selection")
    out_dir: str = param("checkpoints/attribute_verifier", "checkpoint directory to write")
    minutes: float = param(15.0, "wall-clock training budget in minutes (evaluations included)", min=0.1, max=10000.0)
    max_steps: int = param(100000, "optimiser steps at most", min=1)
    batch_size: int = param(128, "crops per step", min=1, max=8192)
    lr: float = param(2e-3, "peak AdamW learning rate", min=1e-6, max=1.0)
    weight_decay: float = param(1e-4, "AdamW weight decay", min=0.0, max=1.0)
    warmup_steps: int = param(100, "linear warm-up steps", min=0)
    crop_size: int = param(32, "crop side in pixels", min=8, max=256)
    context: float = param(1.6, "crop side as a multiple of the mask's longer box side", min=1.0, max=8.0)
    channels: str = param("32,64,96,128", "CNN stage widths, comma-separated")
    eval_every_min: float = param(3.0, "minutes between validations", min=0.1, max=1000.0)
    seed: int = param(0, "random seed", min=0)
    threads: int = param(2, "torch intra-op threads", min=1, max=256)
    device: str = param("cpu", "torch device")
    resume: bool = param(True, "continue from out_dir's work directory when a training state is there")


TrainConfig = VerifierTrainConfig


class InstanceBatcher:
    """Random training crops from loaded verifier shards (`verifier_data.load_verifier_shards`)."""

    def __init__(self, data: dict, config, seed: int, augment: bool = True):
        self.data, self.config, self.augment = data, config, augment
        self.rng = np.random.default_rng(seed)

    def crops(self, rows: np.ndarray) -> torch.Tensor:
        from vlm_agent.models.attribute_verifier.processing_attribute_verifier import crop_batch

        d = self.data
        views = d["inst_view"][rows]
        rgb = torch.from_numpy(d["frames"][views]).permute(0, 3, 1, 2).float().div(255.0)
        masks = torch.from_numpy(d["instances"][views] == d["inst_local"][rows][:, None, None])
        jitter = None
        if self.augment:
            masks = self._perturb(masks)
            n = len(rows)
            r = self.rng
            jitter = torch.from_numpy(np.stack([r.uniform(-0.12, 0.12, n), r.uniform(-0.12, 0.12, n),
                                                r.uniform(math.log(0.8), math.log(1.25), n)], 1).astype(np.float32))
            rgb = (rgb * torch.from_numpy(r.uniform(0.85, 1.15, (n, 1, 1, 1)).astype(np.float32))).clamp(0, 1)
        out = crop_batch(rgb, masks, self.config, jitter)
        if self.augment:
            flip = torch.from_numpy(self.rng.random(len(rows)) < 0.5)
            out[flip] = out[flip].flip(-1)
        return out

    def colour_blind(self, crops: torch.Tensor) -> torch.Tensor:
        """The crops with their RGB channels permuted (one of 6 orders per crop), each channel scaled by
        0.7-1.3, and a fifth of them grey: what the shape trunk trains on, so that no colour predicts a shape."""
        n = len(crops)
        r = self.rng
        perms = torch.from_numpy(np.stack([r.permutation(3) for _ in range(n)]))
        rgb = torch.gather(crops[:, :3], 1, perms[:, :, None, None].expand(-1, -1, *crops.shape[2:]))
        rgb = rgb * torch.from_numpy(r.uniform(0.7, 1.3, (n, 3, 1, 1)).astype(np.float32))
        grey = torch.from_numpy(r.random(n) < 0.2)
        rgb[grey] = rgb[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        return torch.cat([rgb.clamp(0, 1), crops[:, 3:]], dim=1)

    def _perturb(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks as a segmenter returns them: grown or shaved by a pixel, or with a side missing."""
        m = masks[:, None].float()
        r = self.rng
        n = len(masks)
        grow = torch.from_numpy(r.random(n) < 0.35)
        shave = torch.from_numpy((r.random(n) < 0.2)) & ~grow
        grown = F.max_pool2d(m, 3, 1, 1)
        shaved = 1 - F.max_pool2d(1 - m, 3, 1, 1)
        m = torch.where(grow[:, None, None, None], grown, m)
        ok = shaved.flatten(1).sum(1) >= 3
        m = torch.where((shave & ok)[:, None, None, None], shaved, m)
        out = m[:, 0] > 0.5
        cut = np.flatnonzero(r.random(n) < 0.15)
        for i in cut:  # keep one side of a random line through the mask's centroid
            ys, xs = torch.nonzero(out[i], as_tuple=True)
            if len(ys) < 8:
                continue
            a = r.uniform(0, 2 * math.pi)
            side = (xs.float() - xs.float().mean()) * math.cos(a) + (ys.float() - ys.float().mean()) * math.sin(a) > 0
            if side.sum() >= 3:
                out[i, ys[side], xs[side]] = False
        return out

    def sample(self, batch_size: int):
        rows = self.rng.integers(0, len(self.data["inst_view"]), batch_size)
        return self.crops(rows), torch.from_numpy(self.data["inst_colour"][rows].astype(np.int64)), torch.from_numpy(
            self.data["inst_shape"][rows].astype(np.int64))


@torch.no_grad()
def evaluate_verifier(model, data: dict, batch_size: int = 512) -> dict:
    """Accuracy of each head and the verification AUC on `data` (unaugmented crops; see the module
    docstring). Broken down by mask size (< 20, 20-60, >= 60 px) and held-out colour-shape pairs."""
    cfg = model.config
    batcher = InstanceBatcher(data, cfg, 0, augment=False)
    n = len(data["inst_view"])
    pc, ps = [], []
    model.eval()
    for lo in range(0, n, batch_size):
        rows = np.arange(lo, min(n, lo + batch_size))
        c, s = model(batcher.crops(rows))
        pc.append(c.softmax(-1))
        ps.append(s.softmax(-1))
    pc, ps = torch.cat(pc).numpy(), torch.cat(ps).numpy()
    colour, shape, pixels, held = data["inst_colour"].astype(int), data["inst_shape"].astype(int), data["inst_pixels"], data["inst_held_out"]
    obj = colour >= 0
    res = {"instances": int(n), "objects": int(obj.sum()),
           "colour_acc": float((pc.argmax(1) == colour)[obj].mean()), "shape_acc": float((ps.argmax(1) == shape).mean()),
           "object_shape_acc": float((ps.argmax(1) == shape)[obj].mean())}
    other = len(cfg.shapes) - 1 if cfg.shapes[-1] == "other" else None
    if other is not None:
        res["other_recall"] = float((ps.argmax(1) == other)[~obj].mean()) if (~obj).any() else float("nan")
    for name, sel in (("small", pixels < 20), ("medium", (pixels >= 20) & (pixels < 60)), ("large", pixels >= 60)):
        sel = sel & obj
        res[f"object_shape_acc_{name}"] = float((ps.argmax(1) == shape)[sel].mean()) if sel.any() else float("nan")
    for name, sel in (("held_out", held & obj), ("seen", ~held & obj)):
        res[f"shape_acc_{name}"] = float((ps.argmax(1) == shape)[sel].mean()) if sel.any() else float("nan")
        res[f"colour_acc_{name}"] = float((pc.argmax(1) == colour)[sel].mean()) if sel.any() else float("nan")
    # verification: the true query's match against look-alike queries' on the same crop
    idx = np.flatnonzero(obj)
    true = pc[idx, colour[idx]] * ps[idx, shape[idx]]
    n_shapes = len(cfg.shapes) - (1 if other is not None else 0)
    wins = ties = total = 0
    wrong_scores = []
    for k in range(n_shapes):  # same colour, other shape
        sel = shape[idx] != k
        f = pc[idx[sel], colour[idx[sel]]] * ps[idx[sel], k]
        wins += int((true[sel] > f).sum()); ties += int((true[sel] == f).sum()); total += int(sel.sum()); wrong_scores.append(f)
    for k in range(len(cfg.colours)):  # same shape, other colour
        sel = colour[idx] != k
        f = pc[idx[sel], k] * ps[idx[sel], shape[idx[sel]]]
        wins += int((true[sel] > f).sum()); ties += int((true[sel] == f).sum()); total += int(sel.sum()); wrong_scores.append(f)
    wrong = np.concatenate(wrong_scores)
    res["verify_auc"] = (wins + 0.5 * ties) / max(1, total)
    for t in (0.05, 0.1, 0.2, 0.3, 0.5):
        res[f"accept_true@{t:g}"] = float((true >= t).mean())
        res[f"accept_lookalike@{t:g}"] = float((wrong >= t).mean())
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


def train(cfg: VerifierTrainConfig, progress: bool = True) -> dict:
    """Train on `cfg.data`, keep the checkpoint with the best val `verify_auc` in `cfg.out_dir`;
    returns the run summary (also written as `training_summary.json`)."""
    device = torch.device(check_device(cfg.device))
    from tqdm import tqdm

    from vlm_agent.models.attribute_verifier import AttributeVerifierConfig, AttributeVerifierModel, AttributeVerifierProcessor
    from vlm_agent.training.navid import start_training_run, plot_training_curves, save_train_state
    from vlm_agent.training.verifier_data import load_verifier_shards

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if not cfg.data:
        raise ValueError("no training shards given (data)")
    if not cfg.val_data:
        raise ValueError("no validation shards given (val_data): the checkpoint is selected on them")
    data = load_verifier_shards(cfg.data)
    val = load_verifier_shards(cfg.val_data)
    if (data["colours"], data["shapes"]) != (val["colours"], val["shapes"]):
        raise ValueError("training and validation shards name different colours or shapes")
    mcfg = AttributeVerifierConfig(colours=data["colours"], shapes=data["shapes"], crop_size=cfg.crop_size, context=cfg.context,
                                   channels=[int(c) for c in cfg.channels.split(",")])
    model = AttributeVerifierModel(mcfg).to(device)
    processor = AttributeVerifierProcessor(mcfg)
    batcher = InstanceBatcher(data, mcfg, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget_s = cfg.minutes * 60
    bar = tqdm(total=cfg.max_steps, desc="train verifier", disable=not progress, unit="step")
    run = start_training_run(cfg.out_dir, model, opt, device, batcher, cfg.seed, bar, cfg.resume, best={"verify_auc": -1.0}, ema={})
    log_path, state_path, step, ema, best, t0 = run.log_path, run.state_path, run.step, run.ema, run.best, run.t0
    log_f = open(log_path, "a")

    def evaluate_and_keep(step: int) -> None:
        nonlocal best
        res = evaluate_verifier(model, val)
        model.train()
        log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "val": res, "loss_ema": ema.get("loss")}) + "\n")
        log_f.flush()
        if res["verify_auc"] >= best["verify_auc"]:
            best = {**res, "step": step}
            model.save_pretrained(cfg.out_dir)
            processor.save_pretrained(cfg.out_dir)
        save_train_state(state_path, model, opt, step, ema, best, time.monotonic() - t0)
        plot_training_curves(log_path, os.path.join(cfg.out_dir, "training_curves.png"),
                             series=(("verify_auc", "verify AUC"), ("object_shape_acc", "shape acc"), ("colour_acc", "colour acc")), log_loss=True,
                             val_label="offline val (ground-truth masks)")
        bar.write(f"step {step}: val verify AUC {res['verify_auc']:.4f} shape {res['object_shape_acc']:.3f} colour {res['colour_acc']:.3f} "
                  f"(best {best['verify_auc']:.4f} @ {best['step']})")

    model.train()
    last_eval = time.monotonic()
    try:
        while step < cfg.max_steps and time.monotonic() - t0 < budget_s:
            lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
            lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, (time.monotonic() - t0) / budget_s))) * 0.95 + 0.05
            for g in opt.param_groups:
                g["lr"] = lr
            crops, colour, shape = batcher.sample(cfg.batch_size)
            shape_crops = batcher.colour_blind(crops)
            crops, shape_crops, colour, shape = crops.to(device), shape_crops.to(device), colour.to(device), shape.to(device)
            lc, ls = model(crops, shape_crops)
            # a batch of furniture blobs only has no colour label (cross_entropy would give NaN)
            loss_c = F.cross_entropy(lc, colour, ignore_index=-1) if (colour >= 0).any() else lc.sum() * 0.0
            loss_s = F.cross_entropy(ls, shape)
            loss = loss_c + loss_s
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            for k, v in (("loss", loss.item()), ("colour_loss", loss_c.item()), ("shape_loss", loss_s.item())):
                ema[k] = v if k not in ema else 0.98 * ema[k] + 0.02 * v
            bar.update(1)
            bar.set_postfix(loss=f"{ema['loss']:.3f}", lr=f"{lr:.1e}")
            if step % 50 == 0:
                log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "loss_ema": ema["loss"], "lr": lr,
                                        "colour_loss_ema": round(ema["colour_loss"], 5), "shape_loss_ema": round(ema["shape_loss"], 5)}) + "\n")
                log_f.flush()
            if time.monotonic() - last_eval > cfg.eval_every_min * 60:
                evaluate_and_keep(step)
                last_eval = time.monotonic()
        evaluate_and_keep(step)
    finally:
        bar.close()
        log_f.close()
    summary = {"steps": step, "train_minutes": round((time.monotonic() - t0) / 60, 1), "params": model.num_parameters(),
               "instances": int(len(data["inst_view"])), "views": int(len(data["frames"])), "val_instances": int(len(val["inst_view"])),
               "best": best, "config": cfg.to_dict()}
    with open(os.path.join(cfg.out_dir, "training_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


__all__ = ["VerifierTrainConfig", "TrainConfig", "InstanceBatcher", "evaluate_verifier", "train"]
