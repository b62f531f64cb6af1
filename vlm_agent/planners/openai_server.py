"""An OpenAI-compatible chat-completions server over the built-in NaVid models (`vlm-agent serve`).

    GET  /v1/models            the served model ids (directory names)
    POST /v1/chat/completions  {"model", "messages": [{"role": "user", "content": [text, image_url...]}]}
    GET  /health               readiness probe (never needs the API key)

Requests carry the planner's chat prompt (`navid_prompt.chat_prompt`) and images as data URLs: all
images but the last are history (oldest first), the last is the current view. The server is stateless
per request: it encodes the images it receives (the client bounds how many). Remote URLs are refused
(the robot stack runs offline). One lock per model serialises inference. No ROS here.

Request fields, as OpenAI defines them, and what the built-in model does with them:

* messages: the last `user` message is the request (its text holds the instruction). `system`,
  `developer`, `assistant` and `tool` messages are accepted and not used: NaVid has a fixed prompt
  layout (instruction, history images, current image) with no slot for them, so they cannot change
  the answer. Any other role is a 400.
* max_tokens / max_completion_tokens (the latter wins when both are set): the generation limit,
  capped at the model's own limit (`BuiltinNavidBackend.max_new_tokens`); a cut answer has
  finish_reason "length".
* temperature: accepted in [0, 2] (400 outside, as OpenAI); decoding is always greedy and
  grammar-constrained, so any value behaves as 0. `n` must be 1; `stream` is refused.
* stop: honoured after generation: the answer is cut before the first stop string (at most 4), with
  finish_reason "stop"; usage still counts every generated token.
* usage: prompt_tokens is the language model's input sequence, image placeholder tokens included
  (`<s> instruction [HIS] <img> x 4k [OBS] <img> x 64 [NAV]`); completion_tokens the generated
  tokens, the end-of-sequence token included when the answer ended on its own.

Limits: bodies over `max_body_bytes` (default 32 MiB) are refused with 413 before any JSON is parsed
(by Content-Length, and by counting the bytes read for chunked bodies). With `api_key` set, every
route but /health needs `Authorization: Bearer <key>` (401 otherwise; constant-time comparison).
"""
# No `from __future__ import annotations`: FastAPI must resolve `Request` in a local scope.

import base64
import dataclasses
import hmac
import io
import json
import os
import threading
import time
import uuid

import numpy as np

from .navid_prompt import extract_instruction, validate_instruction

MAX_IMAGES = 64
MAX_IMAGE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
MAX_STOP_SEQUENCES = 4  # as OpenAI
# Roles accepted in `messages`; only the last user message is read (see the module docstring).
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class RequestError(ValueError):
    """A client error with a message safe to return; `status` is the HTTP status (400 unless set)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def decode_data_url(url: str) -> np.ndarray:
    """'data:image/...;base64,...' -> (H, W, 3) uint8; RequestError for anything else."""
    from PIL import Image

    if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
        raise RequestError("image_url must be a base64 data URL (data:image/png;base64,...); remote URLs are not fetched")
    payload = url.split(";base64,", 1)[1]
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise RequestError("image too large")
    try:
        raw = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            if im.width * im.height > 4096 * 4096:
                raise RequestError("image dimensions too large")
            return np.asarray(im.convert("RGB"))
    except RequestError:
        raise
    except Exception as exc:
        raise RequestError(f"undecodable image: {type(exc).__name__}") from exc


def parse_messages(messages) -> tuple[str, list[np.ndarray]]:
    """OpenAI messages -> (prompt text of the last user message, its images in order)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in MESSAGE_ROLES:
            raise RequestError(f"messages[{i}] must be an object with a role in {list(MESSAGE_ROLES)}")
    user = [m for m in messages if m["role"] == "user"]
    if not user:
        raise RequestError("no user message")
    content = user[-1].get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise RequestError("content must be a string or a list of parts")
    texts, images = [], []
    for part in content:
        if not isinstance(part, dict):
            raise RequestError("content parts must be objects")
        if part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif part.get("type") == "image_url":
            iu = part.get("image_url")
            images.append(decode_data_url(iu.get("url") if isinstance(iu, dict) else iu))
        else:
            raise RequestError(f"unsupported content part type {part.get('type')!r}")
    if not images:
        raise RequestError("at least one image (the current view) is required")
    if len(images) > MAX_IMAGES:
        raise RequestError(f"too many images ({len(images)} > {MAX_IMAGES})")
    return "\n".join(texts), images


def _int_field(body: dict, name: str):
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(f"{name} must be an integer >= 1, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class GenerationOptions:
    """The request fields that shape generation (see the module docstring for their semantics)."""

    max_tokens: int | None = None
    stop: tuple[str, ...] = ()

    @classmethod
    def from_body(cls, body: dict) -> "GenerationOptions":
        if body.get("stream"):
            raise RequestError("streaming is not supported")
        n = body.get("n")
        if n is not None and (isinstance(n, bool) or n != 1):
            raise RequestError(f"n must be 1, got {n!r}")
        temperature = body.get("temperature")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2):
            raise RequestError(f"temperature must be a number in [0, 2], got {temperature!r}")
        max_completion_tokens, max_tokens = _int_field(body, "max_completion_tokens"), _int_field(body, "max_tokens")
        stop = body.get("stop")
        if stop is None:
            stop = ()
        elif isinstance(stop, str):
            stop = (stop,)
        elif isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES and all(isinstance(x, str) for x in stop):
            stop = tuple(stop)
        else:
            raise RequestError(f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} strings")
        if any(not x for x in stop):
            raise RequestError("stop strings must not be empty")
        return cls(max_completion_tokens or max_tokens, stop)


@dataclasses.dataclass(frozen=True)
class Completion:
    """One answer: text after stop strings, why generation ended, and token counts (see `ServedNavid.count_tokens`)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


def apply_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """(text cut before the earliest stop string, whether one was found)."""
    cuts = [i for i in (text.find(x) for x in stop) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class ServedNavid:
    """One built-in NaVid model behind a lock."""

    def __init__(self, model_dir: str, name: str | None = None):
        from .backends import BuiltinNavidBackend

        self.backend = BuiltinNavidBackend(model_dir)
        if self.backend.ego_map_config is not None:
            # The chat API carries images only; this model also needs each frame's depth and pose.
            raise ValueError(f"{model_dir}: the model reads a map memory built from depth and odometry, which chat requests do not carry; "
                             "serve a model without one (e.g. checkpoints/navid_film) or run it in the navid_planner node")
        self.name = name or os.path.basename(os.path.normpath(model_dir))
        self.lock = threading.Lock()
        self.max_new_tokens = self.backend.max_new_tokens  # the model's own limit caps max_tokens

    def complete(self, prompt: str, images: list[np.ndarray], options: GenerationOptions = GenerationOptions()) -> Completion:
        try:
            instruction = validate_instruction(extract_instruction(prompt))
        except ValueError as exc:
            raise RequestError(str(exc)) from exc
        limit = min(options.max_tokens or self.max_new_tokens, self.max_new_tokens)
        with self.lock:
            self.backend.reset(instruction)
            for im in images[:-1]:
                self.backend.observe(im)
            self.backend.max_new_tokens = limit
            try:
                text = self.backend.generate(images[-1])
            finally:
                self.backend.max_new_tokens = self.max_new_tokens
            prompt_tokens, completion_tokens, cut = self.count_tokens(instruction, len(images) - 1, text, limit)
        text, stopped = apply_stop(text, options.stop)
        return Completion(text, "length" if cut and not stopped else "stop", prompt_tokens, completion_tokens)

    def count_tokens(self, instruction: str, n_history: int, answer: str, limit: int) -> tuple[int, int, bool]:
        """(prompt_tokens, completion_tokens, whether generation hit `limit`) for the call just made.

        With `backend.max_new_tokens` (set per request in `complete`), the one place the server
        reads the backend's internals (its processor and history cap): adapt here when they move.
        Prompt: the processor's own prompt layout, image placeholder tokens included, with the
        history frames the backend keeps (min(n_history, max_history_frames)). Completion: the
        answer tokenised by the model's tokenizer; the decoders stop only after emitting the
        end-of-sequence token (counted) or at `limit` tokens, so an answer of `limit` tokens or more
        was cut. The constrained decoder emits whole-answer tokenisations, so re-tokenising its
        answers gives back the generated tokens.
        """
        processor = self.backend.processor
        n_kept = min(n_history, self.backend.max_history_frames)
        prompt = len(processor.prompt_ids(processor.encode_instruction(instruction), n_kept))
        answer_tokens = len(processor.tokenizer(answer, add_special_tokens=False).input_ids)
        if answer_tokens >= limit:
            return prompt, limit, True
        return prompt, answer_tokens + 1, False


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


async def read_body(request, limit: int) -> bytes:
    """The request body, refused (413) past `limit` bytes before it is parsed: by Content-Length when
    the client sends one, and by counting the bytes read (chunked bodies, lying headers)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(f"invalid Content-Length {declared!r}") from None
        if size > limit:
            raise RequestError(f"request body of {size} bytes exceeds the limit of {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body exceeds the limit of {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _bearer_matches(header: str | None, expected: bytes) -> bool:
    scheme, _, token = (header or "").partition(" ")
    # Starlette decodes headers as latin-1: encoding back gives the bytes the client sent.
    return hmac.compare_digest(token.strip().encode("latin-1", "replace"), expected) and scheme.lower() == "bearer"


def create_app(model_dirs: list[str], delay_s: float = 0.0, api_key: str = "", max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
    """FastAPI app serving `model_dirs` (each must be a built-in NaVid directory).

    delay_s: artificial latency per completion (for testing client timeouts).
    api_key: when non-empty, every route but /health needs `Authorization: Bearer <api_key>`.
    max_body_bytes: larger request bodies get 413 before they are parsed."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from vlm_agent.models.registry import model_type_of

    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    models: dict[str, ServedNavid] = {}
    for d in model_dirs:
        if model_type_of(d) != "navid":
            raise ValueError(f"{d}: only built-in NaVid models can be served (model_type '{model_type_of(d)}')")
        served = ServedNavid(d)
        if served.name in models:
            raise ValueError(f"two served models are named '{served.name}'")
        models[served.name] = served
    app = FastAPI(title="vlm_agent OpenAI-compatible server")

    def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind, "code": code}})

    if api_key:
        expected = api_key.encode("utf-8")

        @app.middleware("http")
        async def require_api_key(request: Request, call_next):
            if request.url.path != "/health" and not _bearer_matches(request.headers.get("authorization"), expected):
                return error(401, "invalid or missing API key (send Authorization: Bearer <key>)", code="invalid_api_key")
            return await call_next(request)

    @app.get("/health")
    def health():
        return {"status": "ok", "models": sorted(models)}

    @app.get("/v1/models")
    def list_models():
        return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "vlm_agent"} for n in sorted(models)]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        import anyio

        try:
            raw = await read_body(request, max_body_bytes)
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):
                raise RequestError("body is not JSON") from None
            if not isinstance(body, dict):
                raise RequestError("body must be a JSON object")
            options = GenerationOptions.from_body(body)
            name = body.get("model") or (next(iter(models)) if len(models) == 1 else None)
            if name is not None and not isinstance(name, str):
                raise RequestError("model must be a string")
        except RequestError as exc:
            return error(exc.status, str(exc))
        if name not in models:
            return error(404, f"model {name!r} is not served (available: {sorted(models)})", "model_not_found")
        try:
            prompt, images = parse_messages(body.get("messages"))
            t0 = time.perf_counter()
            if delay_s:
                await anyio.sleep(delay_s)
            completion = await anyio.to_thread.run_sync(models[name].complete, prompt, images, options)
        except RequestError as exc:
            return error(exc.status, str(exc))
        except Exception as exc:  # a model crash is the server's fault, and the client retries 5xx
            return error(500, f"{type(exc).__name__}: {exc}", "server_error")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text}, "finish_reason": completion.finish_reason}],
            "usage": completion.usage(),
            "vlm_agent": {"latency_s": time.perf_counter() - t0, "images": len(images)},
        }

    return app
