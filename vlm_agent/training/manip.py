"""Data and training of the PaLM-E- and Octopus-style manipulation planners (the built-in families).

Data (`collect_manip_shards`): manip-suite episodes run through the real planner loops
(`palme_loop.run_palme_episode`, `octopus_loop.run_octopus_episode`) with `SimSkills` and a
recording backend. Every model call of the loop is one record:

    prompt    the loop's prompt without its fixed format paragraph (`compact_prompt`: what the
              built-in backends feed the model), with the state slot / robot line and the executed
              steps or earlier rounds' environment feedback in it
    image     the camera view the loop observed for that call
    label     what the privileged, stateless oracle answers *for that state*: PaLM-E the next step
              line ("1. pick(red cube)"), Octopus a whole response whose program is the rest of the
              task from the current state (`oracle_remaining_calls`)
    executed  what the backend returned to the loop (the label, or with probability `perturb` a
              perturbed answer: a random other step, or a program with a call dropped or an object
              swapped), so the data holds failed steps and rounds with their feedback and the
              recovery that follows (the label of the next call)
    reward    Octopus: 1 when the round reached the target state, else 0 (the loop's `reward`)

A learner model can drive instead of the oracle (`learner_dir`: DAgger for PaLM-E; for Octopus the
learner's own rounds and rewards, the data of the RLEF step).

Training (`ManipTrainConfig`, `train`): the answer tokens after the prompt (one image + the state
vector for PaLM-E), cross-entropy averaged per sample (a short `done()` line weighs as much as a long
program) and weighted per sample. Octopus's RLEF step is a documented simplification of the paper's
PPO with a reward model: rounds of logged data whose own response reached the target state are
trained on with weight `rlef_weight` (reward-weighted regression over the logged rounds, failed rounds
weight 0), on top of the oracle's relabel of every round. Checkpoints are selected by closed-loop
success on validation episodes of the manip suite through the same backend `vlm-agent eval --suite
manip --policy {palme,octopus} --model DIR` uses.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np
import torch

from vlm_agent.config import ConfigBase, param
from vlm_agent.devices import DEVICE_NAMES, check_device, check_device_name, to_device
from vlm_agent.training.data import pad_right

STYLES = ("palme", "octopus")
SHARD_PATTERN = "manip_{:05d}.npz"


# -- data ------------------------------------------------------------------------------------------
def _perturbed_step(rng, instruction: str) -> str:
    """A random step line over the task's objects (never `done()`, which would end the episode)."""
    from vlm_agent.planners.manip_backends import object_phrases, step_lines

    steps, _ = step_lines(object_phrases(instruction))
    return f"1. {steps[int(rng.integers(len(steps)))]}"


def _perturbed_program(rng, calls: list) -> list:
    """The oracle's calls with one mistake: a call dropped, or an object argument swapped for the
    other object of the task (so the round fails and its feedback says why)."""
    from vlm_agent.skills.api import SkillCall

    body = [c for c in calls if c.name != "done"]
    objects = sorted({str(a) for c in body for a in c.args})
    if len(body) >= 2 and (len(objects) < 2 or rng.random() < 0.5):
        del body[int(rng.integers(len(body)))]
    elif len(objects) >= 2:
        k = int(rng.integers(len(body)))
        c = body[k]
        other = [o for o in objects if o not in map(str, c.args)] or objects
        body[k] = SkillCall(c.name, (other[int(rng.integers(len(other)))],))
    return body + [SkillCall("done")]


def oracle_octopus_response(env, calls: list | None = None) -> str:
    """The Octopus oracle's response for the current state, with `calls` (default: the oracle's
    remaining calls) as its program."""
    from vlm_agent.evaluation.manip_planners import OracleOctopusBackend, oracle_remaining_calls, program_code
    from vlm_agent.planners.octopus_format import parse_response, format_response

    text = OracleOctopusBackend(env)("", [])
    if calls is None:
        return text
    parsed = parse_response(text).response
    return format_response(dataclasses.replace(parsed, code=program_code(calls or oracle_remaining_calls(env))))


class RecordingBackend:
    """A loop backend that answers with the oracle (or a perturbed oracle, or a learner) and records
    every call as a training record (see the module docstring)."""

    def __init__(self, style: str, env, rng, perturb: float = 0.0, learner=None):
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}")
        self.style, self.env, self.rng, self.perturb, self.learner = style, env, rng, float(perturb), learner
        self.records: list[dict] = []
        self.images: list[np.ndarray] = []

    def __call__(self, prompt: str, images) -> str:
        from vlm_agent.evaluation.manip_planners import OraclePalmeBackend, oracle_remaining_calls
        from vlm_agent.planners.manip_backends import compact_prompt, task_of

        if self.style == "palme":
            label = OraclePalmeBackend(self.env)(prompt, images).split("\n")[0]
        else:
            label = oracle_octopus_response(self.env)
        if self.learner is not None:
            executed = self.learner(prompt, images)
        elif self.rng.random() < self.perturb:
            executed = (_perturbed_step(self.rng, task_of(prompt) or "") if self.style == "palme"
                        else oracle_octopus_response(self.env, _perturbed_program(self.rng, oracle_remaining_calls(self.env))))
        else:
            executed = label
        self.records.append({"prompt": compact_prompt(self.style, prompt), "label": label, "executed": executed,
                             "image": len(self.images), "reward": None})
        self.images.append(np.asarray(images[0], np.uint8))
        return executed


def collect_manip_shards(out_dir: str, style: str, split: str = "train", episodes: int = 1000, episodes_per_shard: int = 250,
                         seed: int = 0, image_size: int = 64, perturb: float = 0.3, learner_dir: str = "", device: str = "cpu",
                         progress: bool = True) -> list[str]:
    """Write `manip_00000.npz`, ... of `episodes_per_shard` episodes each (existing shards are skipped:
    resumable). A shard holds `images` (N, S, S, 3) uint8 and `records` (one JSON object per model
    call: episode_id, task, held_out, instruction, prompt, label, executed, image index, reward,
    episode_success). Episode `i` of shard `k` is manip episode `k * episodes_per_shard + i` of
    `split` with `seed`; perturbations draw from a generator seeded by (seed, k): deterministic."""
    from tqdm import tqdm

    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from vlm_agent.evaluation.manip_planners import run_manip_episode
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.skills.sim_skills import SimSkills

    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    if not 0.0 <= perturb <= 1.0:
        raise ValueError(f"perturb must be in [0, 1], got {perturb}")
    learner = None
    if learner_dir:
        from vlm_agent.planners.manip_backends import make_manip_backend

        learner = make_manip_backend(style, "builtin", model_dir=learner_dir, device=check_device(device))
    os.makedirs(out_dir, exist_ok=True)
    env = NavEnv(SimConfig(width=image_size, height=image_size, render_depth=False))
    n_shards = (episodes + episodes_per_shard - 1) // episodes_per_shard
    paths = []
    bar = tqdm(total=episodes, desc=f"collect manip/{style}", unit="ep", disable=not progress)
    try:
        for k in range(n_shards):
            path = os.path.join(out_dir, SHARD_PATTERN.format(k))
            paths.append(path)
            count = min(episodes_per_shard, episodes - k * episodes_per_shard)
            if os.path.exists(path):
                bar.update(count)
                continue
            rng = np.random.default_rng([seed, k, 14])
            records, images = [], []
            for i in range(count):
                ep = make_episode("manip", split, seed, k * episodes_per_shard + i)
                env.reset(ep)
                skills = SimSkills(env)
                backend = RecordingBackend(style, env, rng, perturb=perturb, learner=learner)
                extra = run_manip_episode(style, backend, env, skills, ep, lambda: [env.render()[0]])
                success = float(env.manip_metrics()["success"])
                rewards = [None] * len(backend.records)
                if style == "octopus":  # one backend call per round, in order
                    rewards = _round_rewards(extra, len(backend.records))
                for rec, reward in zip(backend.records, rewards):
                    rec.update(episode_id=ep.episode_id, task=ep.task, held_out=bool(ep.held_out), instruction=ep.instruction,
                               image=rec["image"] + len(images), reward=reward, episode_success=success)
                    records.append(rec)
                images += backend.images
                bar.update(1)
            tmp = path[:-4] + ".tmp.npz"
            np.savez_compressed(tmp, images=np.stack(images), records=np.array([json.dumps(r) for r in records]))
            os.replace(tmp, path)
    finally:
        bar.close()
        env.close()
    return paths


def _round_rewards(extra: dict, n_calls: int) -> list[float]:
    """Per-round reward from `run_manip_episode`'s Octopus fields: the feedback of a round that reached
    the target state ends with "Task complete." (`octopus_loop.program_feedback`)."""
    feedback = list(extra.get("feedback", []))
    rewards = [float(f.rstrip().endswith("Task complete.")) for f in feedback]
    return (rewards + [0.0] * n_calls)[:n_calls]


def load_manip_shards(paths: list[str]) -> tuple[np.ndarray, list[dict]]:
    """(images (N, S, S, 3) uint8, records with `image` re-based into `images`) from shard files."""
    from vlm_agent.training.data import expand_shards

    images, records = [], []
    offset = 0
    for p in expand_shards(paths):
        if not os.path.basename(p).startswith("manip_"):
            continue
        with np.load(p) as z:
            imgs = z["images"]
            for line in z["records"]:
                rec = json.loads(str(line))
                rec["image"] += offset
                records.append(rec)
        images.append(imgs)
        offset += len(imgs)
    if not images:
        raise ValueError(f"no manip shards in {paths}")
    return np.concatenate(images), records


# -- instruction augmentation ----------------------------------------------------------------------
# Training has two phrasings per task; val/test add phrasings never seen in training (the episodes'
# HELD_OUT_TEMPLATES). A model that keys on the verb ("put", "stack") swaps object and destination
# on a new phrasing. What every phrasing shares is the order: the object to move is named first.
# So training instructions are perturbed around the object phrases: the other words are replaced
# by, dropped for or padded with generic filler words. The filler list deliberately leaves out the
# words of the held-out phrasings ("set", "down", "pile", "onto", "carry", "over"): this teaches
# "ignore the wording, keep the order" without training on the test phrasings.
FILLER_WORDS = ("please", "now", "the", "robot", "move", "get", "grab", "carefully", "quickly", "then", "it", "and", "with", "gently",
                "go", "make", "sure", "is", "transfer", "drop", "leave", "position", "relocate", "shift", "deliver", "lift", "so",
                "that", "ends", "up", "at", "toward", "next", "in", "a", "bit", "just", "you", "would", "kindly", "bring",
                "put", "place", "on", "to", "top", "of", "stack", "take")
_TASK_PREFIX = "\nTask: "


def augment_instruction(rng, text: str, replace: float = 0.5, drop: float = 0.15, max_insert: int = 2) -> str:
    """`text` with its non-object words replaced (prob. `replace`), dropped (`drop`) and up to
    `max_insert` filler words inserted; the object phrases ("red cube", "table") and their order stay."""
    from vlm_agent.planners.manip_backends import object_phrases

    words = text.split()
    phrases = [p.split() for p in object_phrases(text)]
    units: list[tuple[str, bool]] = []  # (text, is an object phrase): phrases stay whole
    i = 0
    while i < len(words):
        ph = next((ph for ph in phrases if [w.lower().strip(".,!?") for w in words[i:i + len(ph)]] == ph), None)
        if ph:
            units.append((" ".join(words[i:i + len(ph)]), True))
            i += len(ph)
        else:
            units.append((words[i], False))
            i += 1
    out = []
    for w, is_object in units:
        if is_object:
            out.append(w)
            continue
        r = rng.random()
        if r < drop:
            continue
        out.append(FILLER_WORDS[int(rng.integers(len(FILLER_WORDS)))] if r < drop + replace else w)
    for _ in range(int(rng.integers(max_insert + 1))):
        out.insert(int(rng.integers(len(out) + 1)), FILLER_WORDS[int(rng.integers(len(FILLER_WORDS)))])
    return " ".join(out) if out else text


def augment_prompt(rng, prompt: str) -> str:
    """The prompt with its `Task: ...` line augmented (`augment_instruction`); the rest unchanged."""
    head, sep, tail = prompt.partition(_TASK_PREFIX)
    if not sep:
        return prompt
    line, nl, rest = tail.partition("\n")
    return head + sep + augment_instruction(rng, line) + nl + rest


def nonce_colours(rng, prompt: str, answer: str) -> tuple[str, str]:
    """(prompt, answer) with each colour word of the instruction's object phrases replaced, everywhere
    in both, by a made-up word (3-7 random letters). Why: the held-out colour-shape pairs never occur
    in training, and a model that learnt the pairs it saw ("orange ball") instead of copying the
    words it is given writes a seen pair in its program; a nonce colour can only be copied. Made-up
    words cannot coincide with a held-out pair, so nothing of the test split is trained on."""
    import re

    from vlm_agent.planners.manip_backends import object_phrases, task_of
    from vlm_agent.skills.resolver import COLOURS

    colours = list(dict.fromkeys(p.split()[0] for p in object_phrases(task_of(prompt)) if " " in p and p.split()[0] in COLOURS))
    letters = "abcdefghijklmnopqrstuvwxyz"
    for colour in colours:
        word = "".join(letters[int(k)] for k in rng.integers(26, size=int(rng.integers(3, 8))))
        pattern = re.compile(rf"\b{re.escape(colour)}\b")
        prompt, answer = pattern.sub(word, prompt), pattern.sub(word, answer)
    return prompt, answer


# -- training --------------------------------------------------------------------------------------
@dataclasses.dataclass
class ManipTrainConfig(ConfigBase):
    """Training run settings of a PaLM-E or Octopus planner (the `vlm-agent train --family palme|octopus` flags)."""

    family: str = param("palme", "planner family to train", choices=STYLES)
    data: list[str] = param([], "training shards or folders of them (from `vlm-agent collect --suite manip`)")
    out_dir: str = param("", "checkpoint directory to write (default checkpoints/<family>_tiny)")
    init_from: str = param("", "start from this checkpoint directory instead of random weights")
    minutes: float = param(15.0, "wall-clock training budget in minutes", min=0.1, max=10000.0)
    max_steps: int = param(100000, "optimiser steps at most", min=1)
    batch_size: int = param(16, "records per batch", min=1, max=1024)
    lr: float = param(2e-3, "peak AdamW learning rate", min=1e-6, max=1.0)
    weight_decay: float = param(0.01, "AdamW weight decay", min=0.0, max=1.0)
    warmup_steps: int = param(100, "linear warm-up steps", min=0)
    rlef_weight: float = param(0.0, "Octopus RLEF step: weight of logged rounds' own responses that reached the target state (0 = oracle labels only)", min=0.0, max=100.0)
    image_size: int = param(64, "input size in pixels", min=8, max=1024)
    patch_size: int = param(16, "vision patch size (64 / 16 = a 4x4 grid: 16 image tokens)", min=1, max=64)
    vision_hidden: int = param(64, "vision tower width", min=8, max=2048)
    vision_layers: int = param(2, "vision tower layers", min=1, max=48)
    text_hidden: int = param(128, "LM width", min=8, max=4096)
    text_layers: int = param(3, "LM layers", min=1, max=64)
    heads: int = param(4, "attention heads (vision and LM)", min=1, max=64)
    vocab_size: int = param(768, "byte-level BPE vocabulary trained on the data's prompts and answers", min=300, max=65536)
    max_prompt_tokens: int = param(1024, "longest prompt (tokens after expansion) the model takes; longer records are left out", min=16)
    val_episodes: int = param(50, "closed-loop validation episodes per evaluation (0 = none)", min=0)
    augment: float = param(0.5, "probability that a training prompt's instruction is reworded around its object phrases (augment_instruction)", min=0.0, max=1.0)
    nonce: float = param(0.0, "probability that a training example's colour words become made-up words in prompt and answer (nonce_colours)", min=0.0, max=1.0)
    eval_every_min: float = param(4.0, "minutes between closed-loop evaluations", min=0.1)
    resume: int = param(1, "1 = continue from <out_dir>.work/train_state.pt when it exists", min=0, max=1)
    threads: int = param(2, "torch CPU threads", min=1, max=256)
    seed: int = param(0, "random seed")
    device: str = param("cpu", f"torch device ({', '.join(DEVICE_NAMES)}); checked before any work")

    def __post_init__(self):
        super().__post_init__()
        if not self.out_dir:
            self.out_dir = f"checkpoints/{self.family}_tiny"
        try:
            check_device_name(self.device)
        except ValueError as exc:
            raise ValueError(f"ManipTrainConfig.device: {exc}") from None


TrainConfig = ManipTrainConfig


def training_examples(records: list[dict], rlef_weight: float = 0.0) -> list[tuple[int, str, str, float]]:
    """(record index, prompt, answer, weight): the oracle's label of every record (weight 1), plus with
    `rlef_weight` > 0 the executed response of each round that reached the target state when it
    differs from the label (weight `rlef_weight`)."""
    out = []
    for i, r in enumerate(records):
        out.append((i, r["prompt"], r["label"], 1.0))
        if rlef_weight > 0 and r.get("reward") and r["executed"] != r["label"]:
            out.append((i, r["prompt"], r["executed"], float(rlef_weight)))
    return out


class ManipBatcher:
    """Right-padded batches of prompt + answer token ids, labels on the answer only, one image per
    record, PaLM-E state vectors from the prompt's state slot (as `BuiltinPalmeBackend.inputs`)."""

    def __init__(self, family: str, processor, images: np.ndarray, records: list[dict], examples: list[tuple], seed: int = 0,
                 augment: float = 0.0, nonce: float = 0.0):
        from vlm_agent.planners.manip_backends import parse_state_text, state_slot

        self.family, self.processor, self.images, self.augment, self.nonce = family, processor, images, float(augment), float(nonce)
        self.rng = np.random.default_rng(seed)
        self.items = []  # (ids, n_prompt, image index, state vector | None, weight, prompt, answer)
        skipped = 0
        for i, prompt, answer, weight in examples:
            pieces = processor.split_prompt(prompt)
            ids = processor.expand(pieces)
            if len(ids) > processor.max_prompt_tokens:
                skipped += 1
                continue
            state = None
            if family == "palme":
                state = processor.encode_state(parse_state_text(state_slot(prompt)))
            self.items.append((ids + processor.answer_ids(answer), len(ids), records[i]["image"], state, weight, prompt, answer))
        self.skipped = skipped
        if not self.items:
            raise ValueError("no training examples fit the model's prompt length")

    def sample(self, n: int) -> dict:
        return self.build(self.rng.integers(len(self.items), size=n).tolist())

    def _augmented(self, item: tuple) -> tuple:
        """`item` with its instruction reworded (prob. `augment`) and its colours made up (prob. `nonce`)."""
        prompt, answer = item[5], item[6]
        if self.rng.random() < self.augment:
            prompt = augment_prompt(self.rng, prompt)
        if self.rng.random() < self.nonce:
            prompt, answer = nonce_colours(self.rng, prompt, answer)
        if (prompt, answer) == (item[5], item[6]):
            return item
        ids = self.processor.expand(self.processor.split_prompt(prompt))
        if len(ids) > self.processor.max_prompt_tokens:
            return item
        return (ids + self.processor.answer_ids(answer), len(ids), *item[2:])

    def build(self, indices: list[int], augment: bool = True) -> dict:
        items = [self.items[i] for i in indices]
        if augment and (self.augment > 0 or self.nonce > 0):
            items = [self._augmented(x) for x in items]
        labels = [[-100] * n_prompt + ids[n_prompt:] for ids, n_prompt, *_ in items]  # the answer only
        batch = {**pad_right([x[0] for x in items], labels, self.processor.ids["pad_token_id"]),
                 "pixel_values": self.processor.pixel_values([self.images[x[2]] for x in items]),
                 "weights": torch.tensor([x[4] for x in items], dtype=torch.float32)}
        if self.family == "palme":
            batch["state_vectors"] = torch.from_numpy(np.stack([x[3] for x in items]))
        return batch


def sample_loss(model, batch: dict) -> torch.Tensor:
    """Weighted mean over samples of each sample's mean answer-token cross-entropy."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], pixel_values=batch["pixel_values"],
                state_vectors=batch.get("state_vectors"))
    logits = out.logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none")
    ce = ce.view(target.shape)
    mask = (target != -100).float()
    per_sample = (ce * mask).sum(1) / mask.sum(1).clamp(min=1)
    w = batch["weights"]
    return (per_sample * w).sum() / w.sum().clamp(min=1e-6)


def closed_loop_manip_eval(family: str, model_dir: str, n_episodes: int, split: str = "val", seed: int = 0, device: str = "cpu") -> dict:
    """Success rate of the checkpoint in `model_dir` through its loop on `n_episodes` manip episodes
    (ground-truth perception), split into seen and held-out colour-shape pairs."""
    from vlm_agent.evaluation.manip_planners import evaluate_manip_planner
    from vlm_agent.planners.manip_backends import make_manip_backend

    backend = make_manip_backend(family, "builtin", model_dir=model_dir, device=device)
    res = evaluate_manip_planner(family, n_episodes, split=split, seed=seed, backend_factory=lambda env: backend, image_size=64)
    per = res["per_episode"]
    out = {"success_rate": res["success_rate"], "episodes": len(per)}
    for name, flag in (("seen", False), ("held_out", True)):
        sel = [e["success"] for e in per if bool(e["held_out"]) == flag]
        out[f"success_{name}"] = float(np.mean(sel)) if sel else None
    return out


def train(cfg: ManipTrainConfig, progress: bool = True) -> dict:
    """Train `cfg.family` on `cfg.data`; keep the checkpoint with the best closed-loop val success in
    `cfg.out_dir`; returns the run summary (also `training_summary.json`)."""
    device = torch.device(check_device(cfg.device))
    from tqdm import tqdm

    from vlm_agent.models.embodied_vlm.processing_embodied_vlm import train_tokenizer
    from vlm_agent.models.registry import get_processor_class, load_model_and_processor, new_model
    from vlm_agent.training.navid import start_training_run, plot_training_curves, save_checkpoint, save_train_state

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if not cfg.data:
        raise ValueError("no training shards given (--data)")
    images, records = load_manip_shards(cfg.data)
    examples = training_examples(records, cfg.rlef_weight if cfg.family == "octopus" else 0.0)
    if cfg.init_from:
        model, processor = load_model_and_processor(cfg.init_from)
        if model.config.model_type != cfg.family:
            raise ValueError(f"--init-from {cfg.init_from}: a '{model.config.model_type}' model, not a {cfg.family} one")
    else:
        corpus = sorted({r["prompt"] for r in records[:20000]} | {r["label"] for r in records[:20000]})
        tokenizer = train_tokenizer(corpus, vocab_size=cfg.vocab_size, special_tokens=get_processor_class(cfg.family).special_tokens())
        extra = {"max_prompt_tokens": cfg.max_prompt_tokens, "max_images": 1}
        if cfg.family == "octopus":
            extra["max_new_tokens"] = 384
        model, processor = new_model(cfg.family, tokenizer, image_size=cfg.image_size, patch_size=cfg.patch_size, vision_hidden=cfg.vision_hidden,
                                     vision_layers=cfg.vision_layers, text_hidden=cfg.text_hidden, text_layers=cfg.text_layers, heads=cfg.heads, **extra)
    model.to(device)
    model.train()
    batcher = ManipBatcher(cfg.family, processor, images, records, examples, seed=cfg.seed, augment=cfg.augment, nonce=cfg.nonce)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget_s = cfg.minutes * 60
    bar = tqdm(total=cfg.max_steps, desc=f"train {cfg.family}", disable=not progress, unit="step")
    run = start_training_run(cfg.out_dir, model, opt, device, batcher, cfg.seed, bar, cfg.resume, best={"success_rate": -1.0, "step": 0})
    work_dir, log_path, state_path, step, ema, best, t0 = run
    log_f = open(log_path, "a")

    def evaluate_and_keep():
        nonlocal best
        model.eval()
        save_checkpoint(model, processor, work_dir)
        res = closed_loop_manip_eval(cfg.family, work_dir, cfg.val_episodes, device=cfg.device) if cfg.val_episodes else {"success_rate": 0.0}
        model.train()
        log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "val": res, "loss_ema": ema}) + "\n")
        log_f.flush()
        if res["success_rate"] >= best["success_rate"]:
            best = {**res, "step": step}
            save_checkpoint(model, processor, cfg.out_dir)
        save_train_state(state_path, model, opt, step, ema, best, time.monotonic() - t0)
        plot_training_curves(log_path, os.path.join(cfg.out_dir, "training_curves.png"), series=(("success_rate", "success"),), log_loss=True)
        bar.write(f"step {step}: closed-loop val success {res['success_rate']:.2f} (best {best['success_rate']:.2f} @ {best['step']})")
        return res

    last_eval = time.monotonic()
    while step < cfg.max_steps and time.monotonic() - t0 < budget_s:
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        lr *= 0.5 * (1 + math.cos(math.pi * min(1.0, (time.monotonic() - t0) / budget_s))) * 0.9 + 0.1
        for g in opt.param_groups:
            g["lr"] = lr
        loss = sample_loss(model, to_device(batcher.sample(cfg.batch_size), device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        value = loss.detach().item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.4f}", lr=f"{lr:.1e}")
        if step % 50 == 0:
            log_f.write(json.dumps({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), "loss_ema": ema, "lr": lr}) + "\n")
            log_f.flush()
        if time.monotonic() - last_eval > cfg.eval_every_min * 60:
            res = evaluate_and_keep()
            last_eval = time.monotonic()
            if res["success_rate"] >= 1.0:
                break
    evaluate_and_keep()
    bar.close()
    log_f.close()
    summary = {"family": cfg.family, "steps": step, "train_minutes": round((time.monotonic() - t0) / 60, 1), "params": model.num_parameters(),
               "records": len(records), "examples": len(batcher.items), "skipped_too_long": batcher.skipped,
               "episodes": len({r["episode_id"] for r in records}), "best": best, "config": cfg.to_dict()}
    with open(os.path.join(cfg.out_dir, "training_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


__all__ = ["ManipTrainConfig", "RecordingBackend", "TrainConfig", "augment_instruction", "augment_prompt", "collect_manip_shards", "nonce_colours", "closed_loop_manip_eval", "load_manip_shards",
           "oracle_octopus_response", "sample_loss", "train", "training_examples"]
