"""`vlm-agent serve` through the official `openai` client: usage counts, max_tokens, stop, system
messages, temperature, the API key, the body-size limit. The FastAPI app runs in a uvicorn server on
an ephemeral loopback port in a thread (one model load for the module)."""
from __future__ import annotations

import json
import os
import threading
import time
import types

import httpx
import numpy as np
import openai
import pytest

from vlm_agent.planners.backends import encode_image_data_url
from vlm_agent.planners.navid_grammar import parse_primitives
from vlm_agent.planners.navid_prompt import chat_prompt

KEY = "test-key-0123456789"
MAX_BODY = 256 * 1024
INSTRUCTION = "go to the red ball"


def frame(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class ThreadedServer:
    """uvicorn on 127.0.0.1, port chosen by the OS, in a daemon thread."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.05)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def served(tiny_navid_dir):
    from vlm_agent.planners.openai_server import create_app

    app = create_app([tiny_navid_dir], api_key=KEY, max_body_bytes=MAX_BODY)
    with ThreadedServer(app) as server:
        yield types.SimpleNamespace(
            url=f"http://127.0.0.1:{server.port}", name=os.path.basename(os.path.normpath(tiny_navid_dir)), model_dir=tiny_navid_dir)


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=served.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def user_message(n_history=1, instruction=INSTRUCTION):
    images = [frame(i) for i in range(n_history)] + [frame(99)]
    content = [{"type": "text", "text": chat_prompt(instruction, n_history)}]
    content += [{"type": "image_url", "image_url": {"url": encode_image_data_url(im)}} for im in images]
    return {"role": "user", "content": content}


def create(client, served, messages=None, **kw):
    return client.chat.completions.create(model=served.name, messages=messages or [user_message()], **kw)


def test_openai_client_gets_a_parsable_answer_with_usage(client, served):
    r = create(client, served, temperature=0)
    answer = r.choices[0].message.content
    assert parse_primitives(answer).ok, answer
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    # Decoding is greedy: the same request gives the same answer and counts.
    again = create(client, served, temperature=0)
    assert again.choices[0].message.content == answer and again.usage == r.usage


def test_prompt_tokens_count_image_placeholders(client, served):
    """Per the model's layout: <s> instruction [HIS] <img> x (h*h per history frame) [OBS] <img> x (c*c) [NAV]."""
    with open(os.path.join(served.model_dir, "config.json")) as f:
        cfg = json.load(f)
    from transformers import PreTrainedTokenizerFast

    n_text = len(PreTrainedTokenizerFast.from_pretrained(served.model_dir)(INSTRUCTION, add_special_tokens=False).input_ids)
    counts = [create(client, served, [user_message(k)]).usage.prompt_tokens for k in (0, 1, 2)]
    assert counts[0] == 4 + n_text + cfg["current_grid_size"] ** 2
    assert counts[1] - counts[0] == counts[2] - counts[1] == cfg["history_grid_size"] ** 2


def test_max_tokens_truncates_with_finish_reason_length(client, served):
    full = create(client, served)
    text, n = full.choices[0].message.content, full.usage.completion_tokens
    assert n >= 2  # at least one answer token and the end-of-sequence token
    one = create(client, served, max_tokens=1)
    assert one.choices[0].finish_reason == "length"  # cut before the end-of-sequence token, even for "stop"
    assert one.usage.completion_tokens == 1
    assert text.startswith(one.choices[0].message.content)
    # Every limit below the answer's length cuts it there; the answer's own length (EOS included) does not.
    for k in range(2, n):
        cut = create(client, served, max_completion_tokens=k)
        assert (cut.choices[0].finish_reason, cut.usage.completion_tokens) == ("length", k)
        assert text.startswith(cut.choices[0].message.content)
    whole = create(client, served, max_completion_tokens=n, max_tokens=1)  # max_completion_tokens wins
    assert (whole.choices[0].finish_reason, whole.choices[0].message.content) == ("stop", text)


class WordDecoder:
    """A stand-in backend: one token per word, a fixed answer, decoding that stops at EOS or at
    `max_new_tokens` as the built-in decoders do (so limits inside a long answer can be checked)."""

    ANSWER = "move forward 25 cm , turn left 30 degrees"
    EOS = "</s>"

    def __init__(self):
        self.max_new_tokens, self.max_history_frames = 48, 4
        self.processor = types.SimpleNamespace(
            tokenizer=lambda text, add_special_tokens=False: types.SimpleNamespace(input_ids=text.split()),
            encode_instruction=lambda text: text.split(),
            prompt_ids=lambda ids, n_history: ["<s>", *ids, "[HIS]"] + ["<img>"] * 4 * n_history + ["[OBS]"] + ["<img>"] * 64 + ["[NAV]"],
        )

    def reset(self, instruction):
        self.history = 0

    def observe(self, rgb):
        self.history += 1

    def generate(self, rgb):
        produced = (self.ANSWER.split() + [self.EOS])[: self.max_new_tokens]
        return " ".join(t for t in produced if t != self.EOS)


def test_limits_inside_a_long_answer():
    from vlm_agent.planners.openai_server import GenerationOptions, ServedNavid

    served = ServedNavid.__new__(ServedNavid)
    served.backend, served.lock = WordDecoder(), threading.Lock()
    served.max_new_tokens = served.backend.max_new_tokens
    words = WordDecoder.ANSWER.split()
    images = [frame(0)] * 7  # 6 history frames, 4 kept
    full = served.complete(chat_prompt(INSTRUCTION, 6), images)
    assert (full.text, full.finish_reason, full.completion_tokens) == (WordDecoder.ANSWER, "stop", len(words) + 1)
    assert full.prompt_tokens == 1 + len(INSTRUCTION.split()) + 1 + 4 * 4 + 1 + 64 + 1
    for k in range(1, len(words) + 1):
        cut = served.complete(chat_prompt(INSTRUCTION, 6), images, GenerationOptions(max_tokens=k))
        assert (cut.text, cut.finish_reason, cut.completion_tokens) == (" ".join(words[:k]), "length", k)
    assert served.complete(chat_prompt(INSTRUCTION, 6), images, GenerationOptions(max_tokens=len(words) + 1)) == full
    assert served.backend.max_new_tokens == 48  # restored after each request
    stopped = served.complete(chat_prompt(INSTRUCTION, 6), images, GenerationOptions(max_tokens=5, stop=(" ,", "30")))
    assert (stopped.text, stopped.finish_reason, stopped.completion_tokens) == ("move forward 25 cm", "stop", 5)


def test_stop_strings_are_honoured(client, served):
    text = create(client, served).choices[0].message.content
    stop = text[3:5]
    r = create(client, served, stop=[stop, "no such text"])
    assert r.choices[0].message.content == text[: text.find(stop)] and r.choices[0].finish_reason == "stop"


def test_system_message_is_accepted_and_does_not_change_the_answer(client, served):
    plain = create(client, served).choices[0].message.content
    system = {"role": "system", "content": "You are a careful robot. Answer with motion primitives."}
    assert create(client, served, [system, user_message()]).choices[0].message.content == plain
    parts = {"role": "system", "content": [{"type": "text", "text": "Be brief."}]}
    assert create(client, served, [parts, user_message(), {"role": "assistant", "content": "stop"}, user_message()]).choices[0].message.content == plain


def test_wrong_or_missing_key_is_refused(served):
    bad = openai.OpenAI(base_url=served.url + "/v1", api_key="wrong-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=served.name, messages=[user_message()])
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    for headers in ({}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}, {"Authorization": f"Bearer {KEY[:-1]}"},
                    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer"}):
        r = httpx.get(served.url + "/v1/models", headers=headers)
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"], headers
    assert httpx.get(served.url + "/v1/models", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    assert httpx.get(served.url + "/health").status_code == 200  # probes need no key


def _post(served, body: bytes | object, headers=None):
    return httpx.post(served.url + "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {KEY}", **(headers or {})}, timeout=60)


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("temperature", 2.5), ("temperature", "hot"), ("temperature", True),
    ("max_tokens", 0), ("max_tokens", -3), ("max_tokens", "5"), ("max_tokens", 2.5), ("max_completion_tokens", 0),
    ("n", 2), ("stop", ["a", "b", "c", "d", "e"]), ("stop", [""]), ("stop", 5), ("model", ["x"]), ("stream", True),
])
def test_bad_parameters_are_400(served, field, value):
    body = {"model": served.name, "messages": [user_message()], field: value}
    r = _post(served, json.dumps(body).encode())
    assert r.status_code == 400, r.text
    assert r.json()["error"]["message"]


def test_temperature_bounds_are_accepted(client, served):
    for t in (0, 2):
        assert create(client, served, temperature=t).choices[0].message.content


def test_unknown_role_is_400(served):
    body = {"model": served.name, "messages": [{"role": "robot", "content": "hi"}, user_message()]}
    r = _post(served, json.dumps(body).encode())
    assert r.status_code == 400 and "role" in r.json()["error"]["message"]


def test_body_size_is_limited_before_parsing(served):
    # Declared too large: refused from Content-Length.
    r = _post(served, b"{" + b" " * MAX_BODY + b"}")
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]

    # Chunked (no Content-Length): refused once the bytes read pass the limit.
    def chunks():
        for _ in range(2 * MAX_BODY // 4096):
            yield b" " * 4096

    r = _post(served, chunks())
    assert r.status_code == 413
    # Just under the limit is read and parsed (here: not JSON -> 400, not 413).
    r = _post(served, b"x" * (MAX_BODY - 1))
    assert r.status_code == 400 and "not JSON" in r.json()["error"]["message"]
    # An unauthenticated client is refused before its body is read.
    r = httpx.post(served.url + "/v1/chat/completions", content=b"x" * (2 * MAX_BODY))
    assert r.status_code == 401


def test_is_loopback():
    from vlm_agent.planners.openai_server import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "robot.local"))


def test_serve_command_key_and_warning(monkeypatch, capsys):
    """`vlm-agent serve` reads --api-key, else $VLM_AGENT_API_KEY, and warns on a non-loopback bind without a key."""
    import argparse

    import uvicorn

    from vlm_agent.commands import serve
    from vlm_agent.planners import openai_server

    seen = {}
    monkeypatch.setattr(openai_server, "create_app", lambda dirs, **kw: seen.update(kw) or object())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(host=kw["host"]))
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)

    def run(argv, env_key=None):
        seen.clear()
        if env_key is None:
            monkeypatch.delenv(serve.API_KEY_ENV, raising=False)
        else:
            monkeypatch.setenv(serve.API_KEY_ENV, env_key)
        assert serve.run(parser.parse_args(["--model", "m", *argv])) == 0
        return seen["api_key"], capsys.readouterr().err

    key, err = run(["--host", "0.0.0.0"])
    assert key == "" and "WARNING" in err and "without an API key" in err
    key, err = run(["--host", "0.0.0.0", "--api-key", "k1"])
    assert key == "k1" and "WARNING" not in err
    key, err = run(["--host", "0.0.0.0"], env_key="k2")
    assert key == "k2" and "WARNING" not in err
    key, err = run([])  # loopback: no warning
    assert key == "" and "WARNING" not in err
    run(["--max-body-mib", "1"])
    assert seen["max_body_bytes"] == 1024 * 1024


def test_a_map_memory_model_is_refused_with_the_reason(tmp_path):
    from tests.helpers.tiny_navid import save_untrained_navid
    from vlm_agent.planners.openai_server import ServedNavid

    path = save_untrained_navid(tmp_path / "map", seed=0, vision_stem="film_cnn", cnn_channels=[8, 16], map_cells=8, map_grid_size=2,
                                ego_map={"cells": 8})
    with pytest.raises(ValueError, match="map memory"):
        ServedNavid(path)
