"""Backends of the manipulation loops: callables `backend(prompt, images) -> str` over models.

The loops (`palme_loop.run_palme_episode`, `octopus_loop.run_octopus_episode`) write one prompt per
model call: text in which `<img>` stands for each image (RGB (H, W, 3) uint8, in order) and, for
PaLM-E, `<state>...</state>` holds the robot state as words (`palme_loop.state_text`). The loop
parses whatever comes back strictly; a backend only turns a prompt into text.

    make_manip_backend("palme", "builtin", model_dir="DIR")                    # the project's PaLM-E family
    make_manip_backend("octopus", "builtin", model_dir="DIR")                  # the project's Octopus family
    make_manip_backend("palme", "transformers", model_dir="Qwen2.5-VL-3B-Instruct")  # any image-text-to-text dir
    make_manip_backend("octopus", "remote", base_url="http://host:8000/v1", remote_model="qwen2.5-vl")

Prompts suited to each kind:
* built-in models get the **compact** prompt: the loop's prompt without its fixed format paragraph
  (`palme_grammar.grammar_text()` / `octopus_format.format_instructions()`), which a model trained on
  the format does not need (`compact_prompt`). The PaLM-E family reads the state from the robot
  state dict (the slot's words parsed back, `parse_state_text`) as a vector; see
  `vlm_agent.models.palme.processing_palme` for the encoding.
* general VLMs (transformers, remote) get the **full** prompt: a role line, the skill documentation
  (`skills.api.skills_prompt()`, generated from the skill registry) and the step grammar for PaLM-E
  (the Octopus loop's prompt already carries the skills, predicates and response format), the
  state as words, and the images interleaved where the `<img>` placeholders stand (`general_prompt`).

PaLM-E decoding (`BuiltinPalmeBackend`): grammar-constrained by default. The trie holds every step
line `"<k>. <skill>(<object>)"` over the registered skills (their arities from the registry) and the
object phrases the task names (colour + shape or furniture words read with the resolver's
vocabulary: "red cube", "blue plate", "table"), plus any phrases `objects_fn()` supplies; `done()`
only as a plan's last step. Why: an untrained or small model then always produces a parseable,
executable step (PaLM-E's answers are short and drawn from a closed set once the objects are
known), and each call costs a few LM steps because forced tokens skip the LM. What it cannot do is
name an object the task does not name; when the task names none (or `decoding="greedy"`), the
backend decodes greedily and the loop's strict parser judges the text (a parse error is feedback).
Octopus always decodes greedily: its answer is a program, open-ended text that the parser, the
sandbox and the environment judge after the fact (the code runs only through `skills/sandbox.py`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from vlm_agent.planners.backends import BackendError, RemoteBackend, TransformersBackend, _check_frame, encode_image_data_url
from vlm_agent.planners.octopus_format import format_instructions
from vlm_agent.planners.palme_grammar import grammar_text
from vlm_agent.skills.api import SKILL_SPECS, skills_prompt
from vlm_agent.skills.resolver import COLOURS, SHAPE_SYNONYMS, normalise_phrase

STYLES = ("palme", "octopus")
KINDS = ("builtin", "transformers", "remote")
IMAGE_TOKEN, STATE_OPEN, STATE_CLOSE = "<img>", "<state>", "</state>"
MAX_OBJECTS = 8  # object phrases in the step trie (bounds its size: 4 + 4 * 8 step lines)
ROLE_TEXT = ("You are the task planner of a mobile robot with a 4-joint arm and a parallel gripper. "
             "The images are the robot's current camera view.")
_STATE_SLOT = re.compile(re.escape(STATE_OPEN) + r"(.*?)" + re.escape(STATE_CLOSE), re.S)
_NUM = r"[-+]?\d+(?:\.\d+)?"
_STATE_TEXT = re.compile(
    rf"(?:base at x=(?P<x>{_NUM}) m, y=(?P<y>{_NUM}) m, yaw=(?P<yaw>{_NUM}) rad|base pose unknown)"
    r"; gripper (?P<gripper>[^;]+); holding (?P<held>[^;]+)"
)
_TASK_LINE = re.compile(r"^Task: (.*)$", re.M)
_OBJECT_ARG = re.compile(r"[a-z0-9_][a-z0-9 _-]{0,59}")  # what palme_grammar accepts as an argument, lower case


# -- reading the loops' prompts ----------------------------------------------------------------------
def state_slot(prompt: str) -> str | None:
    """The words inside the prompt's `<state>...</state>` slot, or None when it has none."""
    m = _STATE_SLOT.search(prompt)
    return m.group(1) if m else None


def parse_state_text(text: str) -> dict:
    """`palme_loop.state_text` back to a state dict: {"base_pose": [x m, y m, yaw rad] | None,
    "gripper": "open" | "closed" | "unknown" | a number, "held": label | None}. The text has 1 cm /
    0.01 rad resolution. ValueError when the text is not in that form."""
    if not isinstance(text, str):
        raise ValueError(f"state text must be a string, got {type(text).__name__}")
    m = _STATE_TEXT.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"the state slot does not hold the loop's state text: {text[:120]!r}")
    pose = None if m.group("x") is None else [float(m.group("x")), float(m.group("y")), float(m.group("yaw"))]
    gripper: str | float = m.group("gripper").strip()
    try:
        gripper = float(gripper)
    except ValueError:
        pass
    held = m.group("held").strip()
    return {"base_pose": pose, "gripper": gripper, "held": None if held.lower() in ("nothing", "none", "") else held}


def task_of(prompt: str) -> str | None:
    """The instruction on the prompt's `Task: ...` line (the loops write one), or None."""
    m = _TASK_LINE.search(prompt) if isinstance(prompt, str) else None
    return m.group(1).strip() if m else None


def compact_prompt(style: str, prompt: str) -> str:
    """The loop's prompt without its fixed format paragraph (for the built-in models, which are
    trained on the format): PaLM-E's step grammar, Octopus's response format with the skill list."""
    _check_style(style)
    fixed = grammar_text() if style == "palme" else format_instructions()
    return prompt.replace("\n" + fixed, "").replace(fixed, "")


def general_prompt(style: str, prompt: str) -> str:
    """The loop's prompt for a general VLM: a role line first, the state slot as words
    ("Robot state: ..."), and for PaLM-E the skill documentation before the step grammar. `<img>`
    placeholders stay (the chat adapters put the images there)."""
    _check_style(style)
    text = _STATE_SLOT.sub(lambda m: "Robot state: " + m.group(1), prompt)
    if style == "palme":
        skills = "Skills:\n" + skills_prompt() + "\n"
        fixed = grammar_text()
        text = text.replace(fixed, skills + fixed) if fixed in text else text + "\n" + skills + fixed
    return ROLE_TEXT + "\n" + text


def interleave(text: str, images: Sequence[np.ndarray]) -> list[tuple[str, object]]:
    """[("text", str) | ("image", rgb)] with each image where its `<img>` placeholder stands.
    ValueError when the counts differ."""
    parts = text.split(IMAGE_TOKEN)
    if len(parts) - 1 != len(images):
        raise ValueError(f"the prompt has {len(parts) - 1} {IMAGE_TOKEN} placeholder(s) but {len(images)} image(s) were given")
    out: list[tuple[str, object]] = []
    for k, part in enumerate(parts):
        if k:
            out.append(("image", images[k - 1]))
        if part.strip():
            out.append(("text", part.strip()))
    return out


# -- the PaLM-E step candidates --------------------------------------------------------------------
def object_phrases(text: str | None, limit: int = MAX_OBJECTS) -> list[str]:
    """Object phrases an instruction names, in order: "colour shape" pairs ("red cube", "blue block")
    and bare shape or furniture words ("table", "cube"), read with the resolver's vocabulary."""
    if not text:
        return []
    words = normalise_phrase(text).split()
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w in COLOURS and i + 1 < len(words) and words[i + 1] in SHAPE_SYNONYMS:
            out.append(f"{w} {words[i + 1]}")
            i += 2
            continue
        if w in SHAPE_SYNONYMS:
            out.append(w)
        i += 1
    return list(dict.fromkeys(out))[:limit]


def _clean_phrase(phrase: str) -> str:
    """'The Red Cube!' -> 'red cube'; '' when the result is not a valid step argument."""
    words = normalise_phrase(phrase).split()
    while words and words[0] in ("the", "a", "an"):
        words = words[1:]
    text = " ".join(words)
    return text if _OBJECT_ARG.fullmatch(text) else ""


def step_lines(objects: Sequence[str]) -> tuple[list[str], list[str]]:
    """(every step text a plan may hold, the subset that may only end a plan) over the registered
    skills: "pick(red cube)" for each object-taking skill and object, "look_around()" for the
    argument-free ones; `done()` ends a plan. Skills with other arguments than objects are left out."""
    steps, last_only = [], []
    for spec in SKILL_SPECS:
        if not spec.params:
            (last_only if spec.name == "done" else steps).append(f"{spec.name}()")
        elif len(spec.params) == 1 and spec.params[0].is_object:
            steps += [f"{spec.name}({o})" for o in objects]
    return steps, last_only


# -- the built-in models ------------------------------------------------------------------------------
class _BuiltinBackend:
    family = ""

    def __init__(self, model_dir: str, device: str = "cpu", max_new_tokens: int | None = None):
        import torch

        from vlm_agent.models.registry import load_model_and_processor

        self._torch = torch
        self.model, self.processor = load_model_and_processor(model_dir, device=device)
        if self.model.config.model_type != self.family:
            raise ValueError(f"{model_dir}: a '{self.model.config.model_type}' model, not a {self.family} one")
        self.device = device
        self.max_new_tokens = int(max_new_tokens or self.model.config.max_new_tokens)
        self.name = f"builtin:{model_dir}"

    def _greedy(self, inputs) -> list[int]:
        cfg = self.model.config
        n = inputs["input_ids"].shape[1]
        with self._torch.no_grad():
            seq = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False, eos_token_id=cfg.eos_token_id, pad_token_id=cfg.pad_token_id)
        return seq[0, n:].tolist()


class BuiltinPalmeBackend(_BuiltinBackend):
    """The project's PaLM-E family (`vlm_agent.models.palme`) as a loop backend.

    decoding: "constrained" (default: the step trie over the task's objects; greedy when the task
        names none) or "greedy" (free text for the loop's strict parser). See the module docstring.
    plan_steps: steps decoded per call (default: the model config's `plan_steps`, 1).
    objects_fn: optional callable -> object phrases to add to the task's (e.g. what perception sees).
    """

    family = "palme"

    def __init__(self, model_dir: str, device: str = "cpu", decoding: str = "constrained", plan_steps: int | None = None,
                 max_new_tokens: int | None = None, objects_fn: Callable[[], Sequence[str]] | None = None):
        if decoding not in ("constrained", "greedy"):
            raise ValueError(f"decoding must be 'constrained' or 'greedy', got {decoding!r}")
        super().__init__(model_dir, device, max_new_tokens)
        self.decoding = decoding
        self.plan_steps = int(plan_steps or self.model.config.plan_steps)
        if not 1 <= self.plan_steps <= 16:
            raise ValueError(f"plan_steps must be in [1, 16], got {self.plan_steps}")
        self.objects_fn = objects_fn
        self._tries: dict[tuple, list[dict]] = {}
        self.last_decoding = ""  # "constrained" | "greedy": what the last call used

    def inputs(self, prompt: str, images: Sequence[np.ndarray]):
        """The processor's inputs for a loop prompt (compact prompt, state dict from the slot)."""
        if not isinstance(prompt, str):
            raise ValueError(f"expected the prompt as text, got {type(prompt).__name__}")
        frames = [_check_frame(im) for im in images]
        slot = state_slot(prompt)
        state = parse_state_text(slot) if slot is not None else None
        return self.processor(text=compact_prompt("palme", prompt), images=frames, state=state).to(self.device)

    def candidate_objects(self, prompt: str) -> list[str]:
        """The task's object phrases, then `objects_fn()`'s (lower-cased, articles dropped, only those
        the step grammar accepts as an argument), at most `MAX_OBJECTS`."""
        extra = list(self.objects_fn()) if self.objects_fn is not None else []
        phrases = object_phrases(task_of(prompt)) + [_clean_phrase(o) for o in extra if isinstance(o, str)]
        return [p for p in dict.fromkeys(phrases) if p][:MAX_OBJECTS]

    def step_tries(self, objects: Sequence[str]) -> list[dict]:
        """One token trie per plan step: step k's lines "k. <step>" end the plan (EOS) or, for
        k < plan_steps and a step other than done(), continue with a newline."""
        key = tuple(objects)
        if key not in self._tries:
            steps, last_only = step_lines(objects)
            tries = []
            for k in range(1, self.plan_steps + 1):
                answers = [f"{k}. {s}" for s in steps + last_only]
                more = [f"{k}. {s}\n" for s in steps] if k < self.plan_steps else []
                tries.append(self.processor.answer_trie(answers, more))
            if len(self._tries) > 64:
                self._tries.clear()
            self._tries[key] = tries
        return self._tries[key]

    def __call__(self, prompt: str, images: Sequence[np.ndarray]) -> str:
        inputs = self.inputs(prompt, images)
        objects = self.candidate_objects(prompt) if self.decoding == "constrained" else []
        if objects:
            self.last_decoding = "constrained"
            tokens = self.model.generate_steps(inputs["input_ids"], self.step_tries(objects), pixel_values=inputs.get("pixel_values"),
                                               state_vectors=inputs.get("state_vectors"), max_new_tokens=self.max_new_tokens)
        else:
            self.last_decoding = "greedy"
            tokens = self._greedy(inputs)
        return self.processor.decode(tokens)


FEEDBACK_MARK = "\nFeedback on an earlier attempt ("  # how octopus_loop.octopus_prompt starts each quoted round


class BuiltinOctopusBackend(_BuiltinBackend):
    """The project's Octopus family (`vlm_agent.models.octopus`) as a loop backend: the compact
    prompt, greedy decoding up to `max_new_tokens` (default: the model config's). When the quoted
    feedback of earlier rounds (a 50-call program's is long) makes the prompt longer than the model
    takes, the oldest rounds' feedback is left out until it fits, then the earliest call lines of the
    latest round's (its first line, the last calls, the first failure and the target-state verdict
    stay)."""

    family = "octopus"

    def _tokens(self, text: str) -> int:
        return len(self.processor.expand(self.processor.split_prompt(text)))

    def fit(self, text: str) -> str:
        """`text` cut to `max_prompt_tokens` as described above; unchanged when it fits. (Still too long
        after that: the processor's error says so.)"""
        limit = self.processor.max_prompt_tokens
        blocks = text.split(FEEDBACK_MARK)
        while len(blocks) > 2 and self._tokens(FEEDBACK_MARK.join(blocks)) > limit:
            del blocks[1]
        if len(blocks) < 2 or self._tokens(FEEDBACK_MARK.join(blocks)) <= limit:
            return FEEDBACK_MARK.join(blocks)
        lines = blocks[-1].split("\n")
        calls = [i for i, line in enumerate(lines) if line.startswith("- ")]
        for n in range(1, len(calls) + 1):
            keep = [line for i, line in enumerate(lines) if i not in calls[:n]]
            keep.insert(calls[0], f"- ... ({n} earlier call line(s) left out)")
            candidate = FEEDBACK_MARK.join(blocks[:-1] + ["\n".join(keep)])
            if self._tokens(candidate) <= limit:
                return candidate
        return candidate if calls else FEEDBACK_MARK.join(blocks)

    def __call__(self, prompt: str, images: Sequence[np.ndarray]) -> str:
        if not isinstance(prompt, str):
            raise ValueError(f"expected the prompt as text, got {type(prompt).__name__}")
        frames = [_check_frame(im) for im in images]
        inputs = self.processor(text=self.fit(compact_prompt("octopus", prompt)), images=frames).to(self.device)
        return self.processor.decode(self._greedy(inputs))


# -- general VLMs ------------------------------------------------------------------------------------
def _downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))


class TransformersManipBackend:
    """Any transformers image-text-to-text directory (Qwen2.5-VL, SmolVLM, LLaVA, ...) as a loop
    backend: the full prompt (`general_prompt`) as one user turn through the processor's chat
    template, images where the placeholders stand, greedy decoding. Loading is
    `TransformersBackend`'s (processors whose video processor needs torchvision load without it)."""

    def __init__(self, model_dir: str, style: str, device: str = "cpu", max_new_tokens: int | None = None, max_image_side: int = 448):
        _check_style(style)
        self.style = style
        self.max_new_tokens = int(max_new_tokens or (64 if style == "palme" else 512))
        self._loaded = TransformersBackend(model_dir, history_images=0, max_new_tokens=self.max_new_tokens, device=device)
        self.model, self.processor, self.device = self._loaded.model, self._loaded.processor, device
        self.max_image_side = max_image_side
        self.name = f"transformers:{model_dir}"

    def __call__(self, prompt: str, images: Sequence[np.ndarray]) -> str:
        import torch
        from PIL import Image

        if not isinstance(prompt, str):
            raise ValueError(f"expected the prompt as text, got {type(prompt).__name__}")
        frames = [_downscale(_check_frame(im), self.max_image_side) for im in images]
        parts = interleave(general_prompt(self.style, prompt), frames)
        content = [{"type": "image"} if kind == "image" else {"type": "text", "text": value} for kind, value in parts]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        pil = [Image.fromarray(v) for kind, v in parts if kind == "image"]
        inputs = self.processor(text=text, images=pil or None, return_tensors="pt").to(self.device)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new[None], skip_special_tokens=True)[0]


class RemoteManipBackend:
    """An OpenAI-compatible `/v1/chat/completions` server (vLLM, SGLang, TGI, Ollama) as a loop
    backend: the full prompt as one user message whose content interleaves text parts and base64
    `image_url` parts where the placeholders stand; temperature 0. Transport, retries, backoff and
    the per-call deadline are `RemoteBackend`'s (`timeout_s` per attempt, `deadline_s` for the
    whole call); failures raise `BackendError` / `BackendTimeoutError`, which the loops record as
    feedback."""

    def __init__(self, base_url: str, model: str, style: str, timeout_s: float = 60.0, retries: int = 2, api_key: str = "",
                 max_tokens: int | None = None, image_format: str = "png", max_image_side: int = 448, deadline_s: float | None = None,
                 backoff_s: float = 0.2, transport=None):
        _check_style(style)
        self.style = style
        self.max_image_side = max_image_side
        self.client = RemoteBackend(base_url, model, timeout_s=timeout_s, retries=retries, api_key=api_key, history_images=0,
                                    max_tokens=int(max_tokens or (64 if style == "palme" else 512)), image_format=image_format,
                                    backoff_s=backoff_s, transport=transport, deadline_s=deadline_s)
        self.name = self.client.name

    def request_body(self, prompt: str, images: Sequence[np.ndarray]) -> dict:
        if not isinstance(prompt, str):
            raise ValueError(f"expected the prompt as text, got {type(prompt).__name__}")
        frames = [_downscale(_check_frame(im), self.max_image_side) for im in images]
        content = []
        for kind, value in interleave(general_prompt(self.style, prompt), frames):
            if kind == "image":
                content.append({"type": "image_url", "image_url": {"url": encode_image_data_url(value, self.client.image_format)}})
            else:
                content.append({"type": "text", "text": value})
        c = self.client
        return {"model": c.model, "messages": [{"role": "user", "content": content}], "max_tokens": c.max_tokens, "temperature": 0.0, "stream": False}

    def __call__(self, prompt: str, images: Sequence[np.ndarray]) -> str:
        return self.client.complete(self.request_body(prompt, images))

    def close(self) -> None:
        self.client.close()


def make_manip_backend(style: str, kind: str = "builtin", model_dir: str | None = None, base_url: str | None = None, *,
                       remote_model: str = "", device: str = "cpu", **kwargs):
    """A loop backend: `style` "palme" | "octopus", `kind` "builtin" (the project's model in
    `model_dir`), "transformers" (an image-text-to-text directory in `model_dir`) or "remote" (an
    OpenAI-compatible server at `base_url`, model name `remote_model`). `kwargs` go to the backend's
    constructor (e.g. decoding="greedy", max_new_tokens=..., timeout_s=...)."""
    _check_style(style)
    if kind not in KINDS:
        raise ValueError(f"unknown backend kind {kind!r} (choose from {', '.join(KINDS)})")
    if kind in ("builtin", "transformers") and not model_dir:
        raise ValueError(f"the {kind} backend needs a model directory")
    if kind == "builtin":
        cls = BuiltinPalmeBackend if style == "palme" else BuiltinOctopusBackend
        return cls(model_dir, device=device, **kwargs)
    if kind == "transformers":
        return TransformersManipBackend(model_dir, style, device=device, **kwargs)
    if not base_url:
        raise ValueError("the remote backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
    return RemoteManipBackend(base_url, remote_model or "default", style, **kwargs)


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown planner style {style!r} (choose from {', '.join(STYLES)})")


__all__ = [
    "BackendError", "BuiltinOctopusBackend", "BuiltinPalmeBackend", "KINDS", "RemoteManipBackend", "STYLES", "TransformersManipBackend",
    "compact_prompt", "general_prompt", "interleave", "make_manip_backend", "object_phrases", "parse_state_text", "state_slot",
    "step_lines", "task_of",
]
