"""RemoteBackend's total deadline: every attempt and backoff of one generate() call ends within
`deadline_s`, and the planner sets it below `model_timeout_s`. The fake server honours the read
timeout the client sends with each request, as a real socket read would."""
from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from vlm_agent.planners.backends import BackendError, BackendTimeoutError, RemoteBackend
from vlm_agent.planners.navid import NavidPlannerConfig, make_backend

FRAME = np.zeros((24, 32, 3), np.uint8)
SLACK_S = 0.25  # scheduling jitter on a loaded machine


def _ok(text):
    return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})


class SlowServer:
    """Answers after `delay_s`; when the client's read timeout is shorter, waits that long and times out."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.read_timeouts: list[float] = []

    def __call__(self, request):
        read = request.extensions["timeout"]["read"]
        self.read_timeouts.append(read)
        if self.delay_s > read:
            time.sleep(read)
            raise httpx.ReadTimeout("no answer", request=request)
        time.sleep(self.delay_s)
        return _ok("stop")


def _backend(handler, **kw):
    backend = RemoteBackend("http://model.test/v1", "m", transport=httpx.MockTransport(handler), **kw)
    backend.reset("go to the red ball")
    return backend


def test_slow_server_times_out_within_the_deadline():
    server = SlowServer(delay_s=30.0)
    # Without a deadline this is 6 attempts of 0.35 s (2.1 s); the deadline allows 1.0 s in all.
    backend = _backend(server, timeout_s=0.35, retries=5, backoff_s=0.0, deadline_s=1.0)
    t0 = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="deadline of 1 s"):
        backend.generate(FRAME)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0 + SLACK_S
    # Two full attempts, then a third cut to what was left (about 0.3 s), then no fourth.
    assert len(server.read_timeouts) == 3, server.read_timeouts
    assert server.read_timeouts[:2] == [0.35, 0.35]
    assert 0.05 <= server.read_timeouts[2] < 0.35
    assert sum(server.read_timeouts) <= 1.0


def test_without_a_deadline_every_retry_runs():
    server = SlowServer(delay_s=30.0)
    backend = _backend(server, timeout_s=0.1, retries=3, backoff_s=0.0)
    with pytest.raises(BackendTimeoutError, match="attempt 4/4"):
        backend.generate(FRAME)
    assert server.read_timeouts == [0.1] * 4


def test_no_backoff_or_retry_that_cannot_fit():
    calls = []

    def busy(request):
        calls.append(time.monotonic())
        return httpx.Response(503, text="busy")

    # Backoffs 0.4 s then 0.8 s: the second would end past the 0.6 s deadline, so it is not slept.
    backend = _backend(busy, timeout_s=1.0, retries=3, backoff_s=0.4, deadline_s=0.6)
    t0 = time.monotonic()
    with pytest.raises(BackendTimeoutError, match="HTTP 503") as info:
        backend.generate(FRAME)
    assert time.monotonic() - t0 < 0.6
    assert len(calls) == 2
    assert "no time for attempt 3" in str(info.value)


def test_a_server_that_answers_in_time_is_unaffected():
    server = SlowServer(delay_s=0.05)
    backend = _backend(server, timeout_s=0.5, retries=2, backoff_s=0.0, deadline_s=1.0)
    assert backend.generate(FRAME) == "stop"
    assert server.read_timeouts == [0.5]


@pytest.mark.parametrize("kw", [{"deadline_s": 0.0}, {"deadline_s": -1.0}, {"timeout_s": 0.0}])
def test_bad_limits_are_refused(kw):
    with pytest.raises(ValueError):
        RemoteBackend("http://model.test/v1", "m", **kw)


def test_planner_deadline_is_below_model_timeout():
    backend = make_backend(NavidPlannerConfig(backend="remote", model_timeout_s=2.0, timeout_s=5.0))
    try:
        assert isinstance(backend, RemoteBackend)
        assert 1.5 <= backend.deadline_s < 2.0
    finally:
        backend.close()


def test_planner_remote_call_fails_before_model_timeout():
    """Through NavidPlanner: per-attempt timeout 5 s and 2 retries would take 15 s; model_timeout_s 2 s."""
    from vlm_agent.planners.navid import NavidPlanner

    server = SlowServer(delay_s=30.0)
    cfg = NavidPlannerConfig(backend="remote", model_timeout_s=2.0, timeout_s=5.0, retries=2)
    backend = make_backend(cfg)
    backend._client = httpx.Client(transport=httpx.MockTransport(server))  # the fake server instead of the network
    planner = NavidPlanner(cfg, backend=backend)
    planner.reset("go to the red ball")
    t0 = time.monotonic()
    with pytest.raises(BackendError):
        planner.plan(FRAME)
    assert time.monotonic() - t0 < 2.0
    assert len(server.read_timeouts) == 1 and server.read_timeouts[0] <= 1.8
