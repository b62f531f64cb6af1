"""Model backends behind one interface for the NaVid planner.

Every backend turns (instruction, history frames, current frame) into raw text; the planner parses
it with the same strict grammar whatever produced it.

    backend.reset(instruction)   new episode (instruction already validated)
    backend.observe(rgb)         add a history frame (H, W, 3) uint8
    backend.generate(rgb) -> str raw text for the current frame

Backends: `BuiltinNavidBackend` (the project's NaVid model: history frames encoded once and cached as
4 tokens each), `TransformersBackend` (any `AutoModelForImageTextToText` + its processor), and
`RemoteBackend` (an OpenAI-compatible `/v1/chat/completions` server: vLLM, SGLang, TGI, Ollama or
`vlm-agent serve`). Failures raise `BackendError` / `BackendTimeoutError`; they never return text
that could be mistaken for a command.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import time

import numpy as np

from .navid_prompt import chat_prompt

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """The backend failed (crashed, unreachable, malformed reply)."""


class BackendTimeoutError(BackendError, TimeoutError):
    """The backend did not answer in time (after retries)."""


def _fingerprint(rgb: np.ndarray) -> bytes:
    return hashlib.blake2b(rgb.tobytes(), digest_size=16).digest() + str(rgb.shape).encode()


def _check_frame(rgb) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"expected an RGB frame (H, W, 3) uint8, got {getattr(rgb, 'shape', None)} {getattr(rgb, 'dtype', type(rgb).__name__)}")
    return rgb


class BuiltinNavidBackend:
    """The built-in NaVid model with a per-episode token cache.

    history_mode "cached" (default): each observed frame is encoded once, its 4 history tokens kept;
    at most `max_history_frames` cached frames (uniformly subsampled) are fed to the LM, so per-step
    cost is nearly flat. "reencode": keeps the frames and re-encodes every one of them at every step
    with no cap (what a naive video VLM does; used only as the benchmark baseline).
    """

    def __init__(self, model_dir: str, max_history_frames: int = 0, decoding: str = "constrained", history_mode: str = "cached", max_new_tokens: int = 48, device: str = "cpu"):
        import torch

        from vlm_agent.models.registry import load_model_and_processor

        if decoding not in ("constrained", "greedy"):
            raise ValueError(f"decoding must be 'constrained' or 'greedy', got {decoding!r}")
        if history_mode not in ("cached", "reencode"):
            raise ValueError(f"history_mode must be 'cached' or 'reencode', got {history_mode!r}")
        self._torch = torch
        self.model, self.processor = load_model_and_processor(model_dir, device=device)
        if self.model.config.model_type != "navid":
            raise ValueError(f"{model_dir}: a '{self.model.config.model_type}' model, not a NaVid one")
        self.device = device
        self.decoding, self.history_mode, self.max_new_tokens = decoding, history_mode, max_new_tokens
        self.max_history_frames = max_history_frames or self.model.config.max_history_frames
        self.name = f"builtin:{model_dir}"
        self._instruction_ids: list[int] | None = None

    def reset(self, instruction: str) -> None:
        torch = self._torch
        self._instruction_ids = self.processor.encode_instruction(instruction)
        with torch.no_grad():
            ids = torch.tensor([self._instruction_ids], device=self.device)
            self._condition = self.model.instruction_condition(ids)
        self._history: list = []  # cached: (4, D) tokens per frame; reencode: pixel tensors
        self._last: tuple[bytes, object, object] | None = None

    def _require_reset(self):
        if self._instruction_ids is None:
            raise RuntimeError("call reset(instruction) before observe/generate")

    def _encode(self, rgb: np.ndarray):
        """One frame -> (current tokens (64, D), history tokens (4, D)); the last frame is memoised so
        `plan(rgb)` followed by `observe(rgb)` encodes it once."""
        key = _fingerprint(rgb)
        if self._last is not None and self._last[0] == key:
            return self._last[1], self._last[2]
        with self._torch.no_grad():
            pixels = self.processor.pixel_values(rgb).to(self.device)
            cur, his = self.model.encode_frames(pixels, self._condition)
        self._last = (key, cur[0], his[0])
        return cur[0], his[0]

    def observe(self, rgb: np.ndarray) -> None:
        self._require_reset()
        _check_frame(rgb)
        if self.history_mode == "cached":
            self._history.append(self._encode(rgb)[1])
        else:
            self._history.append(self.processor.pixel_values(rgb))

    @property
    def history_length(self) -> int:
        return len(getattr(self, "_history", []))

    def _history_tokens(self):
        torch = self._torch
        if not self._history:
            return None, 0
        if self.history_mode == "cached":
            from vlm_agent.models.navid.processing_navid import select_history

            idx = select_history(len(self._history), self.max_history_frames, getattr(self.model.config, "recent_history_frames", 0))
            return torch.cat([self._history[i] for i in idx]), len(idx)
        pixels = torch.cat(self._history).to(self.device)
        _, his = self.model.encode_frames(pixels, self._condition)
        return his.reshape(-1, his.shape[-1]), len(self._history)

    @property
    def ego_map_config(self) -> dict | None:
        """The map settings the model was trained with (`planners.ego_map.EgoMapConfig` fields), or
        None for a model without a map memory (then `generate` takes no `ego_map`)."""
        c = self.model.config
        if not getattr(c, "map_cells", 0):
            return None
        return dict(c.ego_map or {}, cells=c.map_cells)

    def generate(self, rgb: np.ndarray, ego_map: np.ndarray | None = None) -> str:
        """Next primitives' text from frame `rgb` (H, W, 3) uint8 and the history; `ego_map`
        (C, N, N) {0, 1}: the egocentric map memory, required by (only) models that have one."""
        self._require_reset()
        _check_frame(rgb)
        torch = self._torch
        has_map = self.ego_map_config is not None
        if has_map and ego_map is None:
            raise ValueError("this NaVid model reads a map memory: generate() needs ego_map (depth and odometry)")
        if not has_map and ego_map is not None:
            raise ValueError("this NaVid model has no map memory; ego_map must be None")
        with torch.no_grad():
            cur, _ = self._encode(rgb)
            if has_map:
                maps = torch.as_tensor(np.asarray(ego_map), device=self.device)[None]
                cur = torch.cat([cur, self.model.map_features(maps)[0]])
            his, k = self._history_tokens()
            feats = cur if his is None else torch.cat([his, cur])
            ids = torch.tensor([self.processor.prompt_ids(self._instruction_ids, k)], device=self.device)
            if self.decoding == "constrained":
                bias = self.processor.first_token_bias(getattr(self.model.config, "stop_logit_bias", 0.0))
                out = self.model.generate_constrained(ids, self.processor.grammar_trie(), image_features=feats, first_token_bias=bias, max_new_tokens=self.max_new_tokens)
            else:
                eos = self.model.config.eos_token_id
                seq = self.model.generate(input_ids=ids, image_features=feats, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens,
                                          do_sample=False, eos_token_id=eos, pad_token_id=self.model.config.pad_token_id)
                out = seq[0, ids.shape[1]:].tolist()
        return self.processor.tokenizer.decode(out, skip_special_tokens=True)


class _ImageHistory:
    """History frames for chat backends, downscaled for transport and uniformly subsampled."""

    def __init__(self, max_images: int, max_side: int = 256):
        self.max_images, self.max_side = max_images, max_side
        self.frames: list[np.ndarray] = []

    def add(self, rgb: np.ndarray) -> None:
        from PIL import Image

        h, w = rgb.shape[:2]
        scale = self.max_side / max(h, w)
        if scale < 1:
            rgb = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
        self.frames.append(rgb)

    def selected(self) -> list[np.ndarray]:
        if not self.frames or self.max_images == 0:
            return []
        from vlm_agent.models.navid.processing_navid import select_history

        return [self.frames[i] for i in select_history(len(self.frames), self.max_images)]


class _ChatBackend:
    """What the chat backends (transformers, remote) share: an instruction, a history of frames
    (downscaled, subsampled), and the images of one call (history + the current frame)."""

    history: _ImageHistory
    _instruction: str | None = None

    def reset(self, instruction: str) -> None:
        self._instruction = instruction
        self.history.frames.clear()

    def observe(self, rgb: np.ndarray) -> None:
        self.history.add(_check_frame(rgb))

    def _call_images(self, rgb: np.ndarray) -> list[np.ndarray]:
        if self._instruction is None:
            raise RuntimeError("call reset(instruction) before generate")
        return self.history.selected() + [_check_frame(rgb)]


class TransformersBackend(_ChatBackend):
    """Any transformers image-text-to-text model directory (Qwen2.5-VL, SmolVLM, LLaVA, ...).

    Loads with `AutoModelForImageTextToText` and `AutoProcessor` (processors whose video processor
    needs torchvision are rebuilt without it), formats `chat_prompt` through the processor's chat
    template, decodes greedily. Its text goes through the same strict parser.
    """

    def __init__(self, model_dir: str, history_images: int = 4, max_new_tokens: int = 32, device: str = "cpu"):
        import torch
        from transformers import AutoModelForImageTextToText

        self._torch = torch
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir).to(device).eval()
        self.processor = load_image_text_processor(model_dir)
        self.history = _ImageHistory(history_images)
        self.max_new_tokens, self.device = max_new_tokens, device
        self.name = f"transformers:{model_dir}"
        self._instruction = None

    def generate(self, rgb: np.ndarray) -> str:
        from PIL import Image

        images = [Image.fromarray(f) for f in self._call_images(rgb)]
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": chat_prompt(self._instruction, len(images) - 1)}]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=text, images=images, return_tensors="pt").to(self.device)
        with self._torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new[None], skip_special_tokens=True)[0]


def load_image_text_processor(model_dir: str):
    """`AutoProcessor.from_pretrained`, except for processors whose video processor needs torchvision
    (Qwen2-VL / Qwen2.5-VL, SmolVLM): those load through a subclass without the video processor."""
    import json
    import os

    with open(os.path.join(model_dir, "config.json")) as f:
        model_type = json.load(f).get("model_type")
    if model_type in _VIDEO_PROCESSOR_MODELS:
        return _no_video_processor_class(_VIDEO_PROCESSOR_MODELS[model_type]).from_pretrained(model_dir)
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)


_VIDEO_PROCESSOR_MODELS = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor", "smolvlm": "SmolVLMProcessor"}


def _no_video_processor_class(base_name: str):
    """A subclass of transformers' `base_name` whose __init__ has no `video_processor` parameter.

    transformers 5 derives a processor's sub-processors from its __init__ signature, so dropping the
    parameter drops the torchvision-backed video processor; images and text work unchanged."""
    import transformers
    from transformers.processing_utils import ProcessorMixin

    base = getattr(transformers, base_name)
    if base_name == "SmolVLMProcessor":
        # SmolVLM's own __init__ also insists on `num2words`, used only to describe videos.
        def __init__(self, image_processor=None, tokenizer=None, image_seq_len: int = 169, chat_template=None, **kwargs):
            self.fake_image_token = getattr(tokenizer, "fake_image_token", "<fake_token_around_image>")
            self.image_token = getattr(tokenizer, "image_token", "<image>")
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.end_of_utterance_token = getattr(tokenizer, "end_of_utterance_token", "<end_of_utterance>")
            self.global_image_token = getattr(tokenizer, "global_image_token", "<global-img>")
            self.image_seq_len = image_seq_len
            self.video_token = getattr(tokenizer, "video_token", "<video>")
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template, **kwargs)

        # SmolVLM's apply_chat_template reads video defaults from the video processor; images and
        # text need only the generic implementation.
        attrs = {"__init__": __init__, "apply_chat_template": ProcessorMixin.apply_chat_template}
    else:
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # The base passes video_processor=None positionally; the mixin zips args with our
            # two attributes, so it is dropped rather than type-checked against torchvision classes.
            base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        attrs = {"__init__": __init__}
    return type(f"{base_name}NoVideo", (base,), attrs)


def encode_image_data_url(rgb: np.ndarray, fmt: str = "png") -> str:
    """(H, W, 3) uint8 -> 'data:image/png;base64,...' (PNG is lossless; JPEG is smaller)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG" if fmt.lower() in ("jpg", "jpeg") else "PNG", **({"quality": 90} if fmt.lower() in ("jpg", "jpeg") else {}))
    mime = "jpeg" if fmt.lower() in ("jpg", "jpeg") else "png"
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class RemoteBackend(_ChatBackend):
    """OpenAI-compatible chat-completions client with base64 images, a timeout and retries.

    Retries connection errors, timeouts, HTTP 429 and 5xx with exponential backoff; other 4xx and
    malformed replies raise `BackendError` at once.

    timeout_s: bound on each attempt's waits (httpx connect, write and read, each), seconds.
    deadline_s: bound on one whole `generate()` call, every attempt and backoff included (None: no
        bound beyond `timeout_s` per attempt). Each attempt gets min(timeout_s, time left); no
        attempt starts with less than `MIN_ATTEMPT_S` left, and no backoff runs past that point.
        The planner sets it a little below `model_timeout_s`, so the worker is free again by the
        time the node gives up on the call.
    """

    MIN_ATTEMPT_S = 0.05

    def __init__(self, base_url: str, model: str, timeout_s: float = 10.0, retries: int = 2, api_key: str = "", history_images: int = 4, max_tokens: int = 32, image_format: str = "png", backoff_s: float = 0.2, transport=None, deadline_s: float | None = None):
        import httpx

        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"remote base_url must start with http:// or https://, got {base_url!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        if deadline_s is not None and not deadline_s >= self.MIN_ATTEMPT_S:
            raise ValueError(f"deadline_s must be None or >= {self.MIN_ATTEMPT_S} s, got {deadline_s!r}")
        self._httpx = httpx
        self.url = base_url.rstrip("/") + ("/chat/completions" if base_url.rstrip("/").endswith("/v1") else "/v1/chat/completions")
        self.model, self.timeout_s, self.retries, self.backoff_s = model, timeout_s, retries, backoff_s
        self.deadline_s = deadline_s
        self.max_tokens, self.image_format = max_tokens, image_format
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), headers=headers, transport=transport)
        self.history = _ImageHistory(history_images)
        self.name = f"remote:{self.url}#{model}"
        self._instruction = None

    def request_body(self, rgb: np.ndarray) -> dict:
        images = self._call_images(rgb)
        content = [{"type": "text", "text": chat_prompt(self._instruction, len(images) - 1)}]
        content += [{"type": "image_url", "image_url": {"url": encode_image_data_url(im, self.image_format)}} for im in images]
        return {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": self.max_tokens, "temperature": 0.0, "stream": False}

    def generate(self, rgb: np.ndarray) -> str:
        # The clock starts before the images are encoded: the caller's limit covers the whole call.
        end = time.monotonic() + (self.deadline_s if self.deadline_s is not None else float("inf"))
        return self.complete(self.request_body(rgb), end=end)

    def complete(self, body: dict, end: float | None = None) -> str:
        """POST one chat-completions `body` with this client's retries, backoff and deadline; the
        reply's text. `end` (time.monotonic()) bounds the whole call; None: `deadline_s` from now.
        (`generate` uses it for NaVid's prompt; the manipulation backends send their own bodies.)"""
        httpx = self._httpx
        if end is None:
            end = time.monotonic() + (self.deadline_s if self.deadline_s is not None else float("inf"))
        last: Exception | None = None
        attempts = self.retries + 1
        for attempt in range(attempts):
            delay = self.backoff_s * 2 ** (attempt - 1) if attempt else 0.0
            if end - time.monotonic() - delay < self.MIN_ATTEMPT_S:
                last = _out_of_time(last, self.name, self.deadline_s, attempt)
                break
            if delay:
                time.sleep(delay)
            per_attempt = min(self.timeout_s, end - time.monotonic())
            try:
                resp = self._client.post(self.url, json=body, timeout=httpx.Timeout(per_attempt))
            except httpx.TimeoutException as exc:
                last = BackendTimeoutError(f"{self.name}: no answer within {per_attempt:.3g} s (attempt {attempt + 1}/{attempts})")
                last.__cause__ = exc
                continue
            except httpx.TransportError as exc:
                last = BackendError(f"{self.name}: {type(exc).__name__}: {exc} (attempt {attempt + 1}/{attempts})")
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = BackendError(f"{self.name}: HTTP {resp.status_code}: {resp.text[:200]} (attempt {attempt + 1}/{attempts})")
                continue
            if resp.status_code != 200:
                raise BackendError(f"{self.name}: HTTP {resp.status_code}: {resp.text[:200]}")
            return _completion_text(resp, self.name)
        log.warning("remote backend gave up: %s", last)
        raise last

    def close(self) -> None:
        self._client.close()


def _out_of_time(last: Exception | None, name: str, deadline_s: float, attempts_made: int) -> BackendError:
    """The error `RemoteBackend.generate` raises when its deadline leaves no room for another attempt:
    a timeout error (it is one), whose message keeps the last attempt's failure."""
    why = f"; last failure: {last}" if last is not None else ""
    err = BackendTimeoutError(f"{name}: deadline of {deadline_s:g} s leaves no time for attempt {attempts_made + 1}{why}")
    err.__cause__ = last
    return err


def _completion_text(resp, name: str) -> str:
    try:
        content = resp.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"{name}: malformed chat-completions reply: {resp.text[:200]!r}") from exc
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise BackendError(f"{name}: reply content is {type(content).__name__}, not text")
    return content
