"""The native exit timer (`vlm_agent.nodes.exit_timer`): it ends the process with the status asked
for even while the main thread holds the GIL inside a C call, and a cancelled timer does nothing."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX timers with SIGEV_THREAD: Linux/glibc")


def _run(code: str, timeout: float = 30.0) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def test_the_timer_ends_a_process_stuck_in_c_with_the_gil_held():
    proc, took = _run("""
        import ctypes
        from vlm_agent.nodes import exit_timer
        assert exit_timer.arm(0.5, 7) is not None
        print("armed", flush=True)
        ctypes.PyDLL(None).sleep(60)  # holds the GIL: no Python thread could end this process
        print("not reached", flush=True)
    """)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == "armed\n"
    assert took < 30


def test_status_zero_and_a_cancelled_timer():
    proc, _ = _run("""
        import ctypes, time
        from vlm_agent.nodes import exit_timer
        cancelled = exit_timer.arm(0.2, 5)
        cancelled.cancel()
        cancelled.cancel()  # idempotent
        time.sleep(0.6)
        print("survived the cancelled timer", flush=True)
        exit_timer.arm(0.2, 0)
        ctypes.PyDLL(None).sleep(60)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "survived the cancelled timer\n"


def test_a_non_positive_delay_is_refused():
    from vlm_agent.nodes import exit_timer

    with pytest.raises(ValueError, match="seconds must be > 0"):
        exit_timer.arm(0.0)
