"""Transformers and remote backends: tiny random VLMs through AutoModelForImageTextToText, the
OpenAI-compatible client (retries, timeouts, malformed replies) and `vlm-agent serve` in a subprocess."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from vlm_agent.planners.backends import BackendError, BackendTimeoutError, RemoteBackend, TransformersBackend, encode_image_data_url
from vlm_agent.planners.navid import NavidPlanner, NavidPlannerConfig
from vlm_agent.planners.navid_prompt import chat_prompt, extract_instruction
from vlm_agent.actions import NavPrimitive

from . import tiny_vlms


def frame(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(tiny_vlms.BUILDERS))
def test_transformers_backend_runs_tiny_vlms_and_garbage_becomes_stop(name, tmp_path):
    directory = tiny_vlms.BUILDERS[name](str(tmp_path / name))
    backend = TransformersBackend(directory, history_images=2, max_new_tokens=8)
    planner = NavidPlanner(NavidPlannerConfig(backend="transformers", model_dir=directory), backend=backend)
    planner.reset("go to the red ball")
    for i in range(3):
        planner.observe(frame(i))
    assert len(backend.history.selected()) == 2
    result = planner.plan(frame(9))
    assert isinstance(result.raw_text, str)
    # A random model's text is not the grammar: the strict parser must turn it into a stop.
    assert result.primitives == [NavPrimitive.stop()] and result.error


def test_transformers_backend_through_config(tmp_path):
    directory = tiny_vlms.save_tiny_llava(str(tmp_path / "llava"))
    planner = NavidPlanner(NavidPlannerConfig(backend="transformers", model_dir=directory, history_images=1))
    planner.reset("go to the red ball")
    assert planner.plan(frame(0)).primitives


def test_prompt_round_trip():
    p = chat_prompt("go to the red ball", 3)
    assert extract_instruction(p) == "go to the red ball" and "first 3 images" in p
    assert extract_instruction("just text") == "just text"


def _remote(handler, **kw):
    return RemoteBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler), backoff_s=0.0, **kw)


def _ok(text):
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})


def test_remote_request_format_and_reply():
    seen = {}

    def handler(request):
        seen["url"] = str(request.url)
        seen["body"] = json.loads(request.content)
        return _ok("move forward 25 cm, stop")

    backend = _remote(handler, history_images=2)
    backend.reset("go to the red ball")
    for i in range(5):
        backend.observe(frame(i))
    assert backend.generate(frame(9)) == "move forward 25 cm, stop"
    assert seen["url"] == "http://model.test/v1/chat/completions"
    content = seen["body"]["messages"][0]["content"]
    assert content[0]["type"] == "text" and "Instruction: go to the red ball" in content[0]["text"]
    urls = [c["image_url"]["url"] for c in content[1:]]
    assert len(urls) == 3 and all(u.startswith("data:image/png;base64,") for u in urls)
    assert seen["body"]["temperature"] == 0.0


def test_remote_retries_5xx_then_succeeds():
    calls = []

    def handler(request):
        calls.append(1)
        return httpx.Response(503, text="busy") if len(calls) < 3 else _ok("stop")

    backend = _remote(handler, retries=2)
    backend.reset("go")
    assert backend.generate(frame(0)) == "stop" and len(calls) == 3


def test_remote_timeouts_raise_after_retries():
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ReadTimeout("slow", request=request)

    backend = _remote(handler, retries=1, timeout_s=0.5)
    backend.reset("go")
    with pytest.raises(BackendTimeoutError, match="no answer within 0.5 s"):
        backend.generate(frame(0))
    assert len(calls) == 2


@pytest.mark.parametrize("response", [
    httpx.Response(400, text="bad request"),
    httpx.Response(200, text="not json"),
    httpx.Response(200, json={"choices": []}),
    httpx.Response(200, json={"choices": [{"message": {"content": 42}}]}),
])
def test_remote_client_errors_and_malformed_replies_raise(response):
    backend = _remote(lambda request: response, retries=3)
    backend.reset("go")
    with pytest.raises(BackendError):
        backend.generate(frame(0))


def test_remote_connection_refused_is_a_backend_error():
    port = _free_port()
    backend = RemoteBackend(f"http://127.0.0.1:{port}", "m", retries=1, timeout_s=1.0, backoff_s=0.0)
    backend.reset("go")
    with pytest.raises(BackendError, match="attempt 2/2"):
        backend.generate(frame(0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model_dir, port, *extra):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "vlm_agent.cli", "serve", "--model", model_dir, "--port", str(port), "--threads", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not become ready in 90 s")


@pytest.fixture
def server(tiny_navid_dir):
    port = _free_port()
    proc = _start_server(tiny_navid_dir, port)
    yield port, os.path.basename(os.path.normpath(tiny_navid_dir))
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_client_against_served_builtin_model(server, tiny_navid_dir):
    port, name = server
    models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
    assert [m["id"] for m in models["data"]] == [name]
    planner = NavidPlanner(NavidPlannerConfig(backend="remote", remote_url=f"http://127.0.0.1:{port}/v1", remote_model=name, history_images=2, timeout_s=30))
    planner.reset("go to the red ball")
    for i in range(3):
        planner.observe(frame(i))
    remote = planner.plan(frame(7))
    assert remote.error is None and 1 <= len(remote.primitives) <= 3
    # Same model in-process with the same 2 history frames gives the same answer: the server is
    # the built-in backend behind HTTP (images travel as lossless PNG).
    local = NavidPlanner(NavidPlannerConfig(model_dir=tiny_navid_dir))
    local.reset("go to the red ball")
    for i in (0, 2):  # what select_history(3, 2) keeps
        local.observe(frame(i))
    assert local.plan(frame(7)).raw_text == remote.raw_text
    bad = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": name, "messages": [{"role": "user", "content": [{"type": "text", "text": "Instruction: go"}, {"type": "image_url", "image_url": {"url": "http://example.com/x.png"}}]}]})
    assert bad.status_code == 400 and "data URL" in bad.json()["error"]["message"]
    missing = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "nope", "messages": []})
    assert missing.status_code == 404


def test_client_times_out_against_a_slow_server(tiny_navid_dir):
    port = _free_port()
    proc = _start_server(tiny_navid_dir, port, "--delay-s", "3")
    try:
        name = os.path.basename(os.path.normpath(tiny_navid_dir))
        backend = RemoteBackend(f"http://127.0.0.1:{port}/v1", name, timeout_s=0.3, retries=1, backoff_s=0.0)
        backend.reset("go to the red ball")
        t0 = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            backend.generate(frame(0))
        assert time.monotonic() - t0 < 2.5  # two 0.3 s attempts, not the server's 3 s
    finally:
        proc.terminate()
        proc.wait(10)


def test_data_url_round_trip():
    from vlm_agent.planners.openai_server import RequestError, decode_data_url

    im = frame(3)
    assert np.array_equal(decode_data_url(encode_image_data_url(im)), im)
    for bad in ("data:image/png;base64,!!!", "file:///etc/passwd", "data:text/plain;base64,aGk="):
        with pytest.raises(RequestError):
            decode_data_url(bad)
