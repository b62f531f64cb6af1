"""An OpenAI-compatible chat-completions server over the built-in NaVid models (`vlm-agent serve`).

    GET  /v1/models            the served model ids (directory names)
    POST /v1/chat/completions  {"model", "messages": [{"role": "user", "content": [text, image_url...]}]}
    GET  /health               readiness probe

Requests carry the planner's chat prompt (`navid_prompt.chat_prompt`) and images as data URLs: all
images but the last are history (oldest first), the last is the current view. The server is stateless
per request: it encodes the images it receives (the client bounds how many). Remote URLs are refused
(the robot stack runs offline). One lock per model serialises inference. No ROS here.
"""
# No `from __future__ import annotations`: FastAPI must resolve `Request` in a local scope.

import base64
import io
import os
import threading
import time
import uuid

import numpy as np

from .navid_prompt import extract_instruction, validate_instruction

MAX_IMAGES = 64
MAX_IMAGE_BYTES = 8 * 1024 * 1024


class RequestError(ValueError):
    """A client error (HTTP 400) with a message safe to return."""


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
    user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
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


class ServedNavid:
    """One built-in NaVid model behind a lock."""

    def __init__(self, model_dir: str, name: str | None = None):
        from .backends import BuiltinNavidBackend

        self.backend = BuiltinNavidBackend(model_dir)
        self.name = name or os.path.basename(os.path.normpath(model_dir))
        self.lock = threading.Lock()

    def complete(self, prompt: str, images: list[np.ndarray]) -> str:
        try:
            instruction = validate_instruction(extract_instruction(prompt))
        except ValueError as exc:
            raise RequestError(str(exc)) from exc
        with self.lock:
            self.backend.reset(instruction)
            for im in images[:-1]:
                self.backend.observe(im)
            return self.backend.generate(images[-1])


def create_app(model_dirs: list[str], delay_s: float = 0.0):
    """FastAPI app serving `model_dirs` (each must be a built-in NaVid directory).

    delay_s: artificial latency per completion (for testing client timeouts)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from vlm_agent.models.registry import model_type_of

    models: dict[str, ServedNavid] = {}
    for d in model_dirs:
        if model_type_of(d) != "navid":
            raise ValueError(f"{d}: only built-in NaVid models can be served (model_type '{model_type_of(d)}')")
        served = ServedNavid(d)
        if served.name in models:
            raise ValueError(f"two served models are named '{served.name}'")
        models[served.name] = served
    app = FastAPI(title="vlm_agent OpenAI-compatible server")

    def error(status: int, message: str, kind: str = "invalid_request_error"):
        return JSONResponse(status_code=status, content={"error": {"message": message, "type": kind}})

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
            body = await request.json()
        except Exception:
            return error(400, "body is not JSON")
        if not isinstance(body, dict):
            return error(400, "body must be a JSON object")
        if body.get("stream"):
            return error(400, "streaming is not supported")
        name = body.get("model") or (next(iter(models)) if len(models) == 1 else None)
        if name not in models:
            return error(404, f"model {name!r} is not served (available: {sorted(models)})", "model_not_found")
        try:
            prompt, images = parse_messages(body.get("messages"))
            t0 = time.perf_counter()
            if delay_s:
                await anyio.sleep(delay_s)
            text = await anyio.to_thread.run_sync(models[name].complete, prompt, images)
        except RequestError as exc:
            return error(400, str(exc))
        except Exception as exc:  # a model crash is the server's fault, and the client retries 5xx
            return error(500, f"{type(exc).__name__}: {exc}", "server_error")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "vlm_agent": {"latency_s": time.perf_counter() - t0, "images": len(images)},
        }

    return app
