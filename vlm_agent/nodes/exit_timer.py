"""A process exit timer that needs neither the GIL nor a Python thread.

Why: a node's teardown can hang inside the middleware's C++ while *holding the GIL* (seen in CI on
Kilted: `Node.destroy_node` -> `destroy_when_not_in_use` -> Fast DDS, never returning). A Python
`threading.Timer` cannot run then, and `faulthandler.dump_traceback_later(exit=True)` can only exit
with status 1. This arms a POSIX timer (`timer_create` with `SIGEV_THREAD`) whose notify function is
libc's `_exit` itself and whose `sigval` is the exit status: when it expires, glibc starts a native
thread that calls `_exit(status)`. No Python code runs, so a held GIL does not matter.

Linux/glibc only (what ROS 2 nodes run on); elsewhere `arm` returns None and the caller keeps its
Python fallback. `_exit` flushes nothing: print what matters before arming.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

SIGEV_THREAD = 2  # <bits/sigevent-consts.h>
CLOCK_MONOTONIC = 1


class _SigEvent(ctypes.Structure):
    """`struct sigevent` (64 bytes on Linux): the value, signal, notify kind, then the thread notify
    function and its attributes inside a union padded to the full size."""

    _fields_ = [
        ("sigev_value", ctypes.c_void_p),  # union sigval: the int status sits in the register
        ("sigev_signo", ctypes.c_int),
        ("sigev_notify", ctypes.c_int),
        ("sigev_notify_function", ctypes.c_void_p),
        ("sigev_notify_attributes", ctypes.c_void_p),
        ("_pad", ctypes.c_byte * (64 - 32)),
    ]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        try:
            libc.timer_create  # glibc >= 2.34 has the timer functions in libc itself
        except AttributeError:
            libc = ctypes.CDLL(ctypes.util.find_library("rt") or "librt.so.1", use_errno=True)
        return libc
    except OSError:
        return None


class ExitTimer:
    """An armed exit timer: `cancel()` disarms it (idempotent)."""

    def __init__(self, libc, timer_id: ctypes.c_void_p):
        self._libc = libc
        self._timer_id = timer_id

    def cancel(self) -> None:
        if self._timer_id is not None:
            self._libc.timer_delete(self._timer_id)
            self._timer_id = None


def arm(seconds: float, status: int = 0) -> ExitTimer | None:
    """End the process with `_exit(status)` after `seconds` (monotonic) unless cancelled first.

    Returns None where no POSIX timer is available (not Linux, or the call failed)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    libc = _libc()
    if libc is None:
        return None
    exit_fn = ctypes.cast(libc._exit, ctypes.c_void_p).value
    event = _SigEvent(sigev_value=status, sigev_notify=SIGEV_THREAD, sigev_notify_function=exit_fn)
    timer_id = ctypes.c_void_p()
    libc.timer_create.argtypes = [ctypes.c_int, ctypes.POINTER(_SigEvent), ctypes.POINTER(ctypes.c_void_p)]
    libc.timer_delete.argtypes = [ctypes.c_void_p]
    libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_ITimerSpec), ctypes.c_void_p]
    if libc.timer_create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer_id)) != 0:
        return None
    whole = int(seconds)
    spec = _ITimerSpec(it_value=_TimeSpec(whole, int((seconds - whole) * 1e9)))
    if libc.timer_settime(timer_id, 0, ctypes.byref(spec), None) != 0:
        libc.timer_delete(timer_id)
        return None
    return ExitTimer(libc, timer_id)
