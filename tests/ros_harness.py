"""Helpers for tests that use real rclpy over loopback (tests may import rclpy; the package core may not).

* `spin_until(executor, predicate, timeout)`: spin until a condition holds.
* `wait_for_subscribers(pub, n)` / `wait_for_publishers(sub, n)`: discovery in LOCALHOST mode takes
  ~2 s, so always wait for the match before publishing.
* `NodeProcess`: start a node (console_script module, or any command) in a second process with the
  test's ROS environment, and stop it with SIGINT (or SIGTERM), checking it exits cleanly.
* `lifecycle_state(executor, node, name)` / `change_state(...)`: the standard lifecycle services.
* `remove_stale_fastdds_shm(domain_id)`: delete the shared-memory files Fast DDS left behind for a
  domain (ports no live process holds) and every data segment whose owner has died.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import time

DEFAULT_TIMEOUT_S = 15.0

SHM_DIR = "/dev/shm"
# Fast DDS names: "fastdds_" since 2.14 (Jazzy, Kilted), "fastrtps_" before (Humble) and for some segments.
_PORT_RE = re.compile(r"^(fastdds|fastrtps)_port(\d+)$")
_SEGMENT_LOCK_RE = re.compile(r"^(fastdds|fastrtps)_[0-9a-f]{16}_el$")
# RTPS well-known ports (DDSI-RTPS 9.6.1.1): domain d owns [PB + DG * d, PB + DG * (d + 1)).
_RTPS_PORT_BASE, _RTPS_DOMAIN_GAIN = 7400, 250


def _lock_held(path: str) -> bool:
    """Whether a live process holds Fast DDS's flock on `path` (its liveness mark for a port or a
    segment; the test `fastdds shm clean` makes). A missing file is not held."""
    try:
        fd = os.open(path, os.O_RDONLY)  # no O_CREAT: creating a lock file would look like a zombie's
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False  # we got it, so nobody holds it; closing releases it
    except OSError:
        return True
    finally:
        os.close(fd)


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
        return 1
    except FileNotFoundError:
        return 0


def remove_stale_fastdds_shm(domain_id: int, shm_dir: str = SHM_DIR) -> int:
    """Delete Fast DDS shared-memory files that no live process uses; returns how many went.

    Why: a participant killed (SIGKILL, a crash, a timed-out test) leaves its listening ports in
    `shm_dir`, and the next participant given the same port number reopens them. Fast DDS resets a
    port only when it recognises it as a zombie; a port left half-written is opened as is and can
    crash the new process (eProsima/Fast-DDS#6501; a test helper died with SIGSEGV before its first
    message in CI). Ports of Fast DDS versions sharing a domain (the Jazzy then the Kilted suite)
    are not compatible either.

    Removed: every port of `domain_id` whose exclusive (`_el`) and shared (`_sl`) reader locks are
    not held, with its named mutex; every data segment (any domain) whose `_el` lock is not held.
    Call it only while no process of this domain is starting: a port being created in the same
    instant could lose its file.
    """
    try:
        names = os.listdir(shm_dir)
    except FileNotFoundError:
        return 0
    low = _RTPS_PORT_BASE + _RTPS_DOMAIN_GAIN * int(domain_id)
    removed = 0
    for name in names:
        port = _PORT_RE.match(name)
        if port and low <= int(port.group(2)) < low + _RTPS_DOMAIN_GAIN:
            base = os.path.join(shm_dir, name)
            if not (_lock_held(base + "_el") or _lock_held(base + "_sl")):
                for path in (base, base + "_el", base + "_sl", os.path.join(shm_dir, f"sem.{name}_mutex")):
                    removed += _unlink(path)
        elif _SEGMENT_LOCK_RE.match(name):
            lock = os.path.join(shm_dir, name)
            if not _lock_held(lock):
                removed += _unlink(lock[: -len("_el")]) + _unlink(lock)
    return removed


@contextlib.contextmanager
def ros_session(args: list[str] | None = None):
    """(context, executor): a fresh rclpy context with a SingleThreadedExecutor; on exit every node
    added to the executor is destroyed and the context shut down. For module-scoped test rigs."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        yield context, executor
    finally:
        for node in list(executor.get_nodes()):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        if context.ok():
            rclpy.shutdown(context=context)


def spin_until(executor, predicate, timeout: float = DEFAULT_TIMEOUT_S, step: float = 0.02) -> bool:
    """Spin `executor` until `predicate()` is true; returns False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=step)
    return bool(predicate())


def wait_for_subscribers(publisher, count: int = 1, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if publisher.get_subscription_count() >= count:
            return True
        time.sleep(0.02)
    return False


def wait_for_publishers(subscription, count: int = 1, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subscription.get_publisher_count() >= count:
            return True
        time.sleep(0.02)
    return False


class NodeProcess:
    """A node running in its own process: `python -m vlm_agent.nodes.<name> --ros-args ...`.

    Use as a context manager; on exit it sends SIGINT, waits, and records the exit code and output.
    """

    def __init__(self, module: str, ros_args: list[str] | None = None, env: dict | None = None, args: list[str] | None = None,
                 command: list[str] | None = None):
        self.module = module
        cmd = (list(command) if command else [sys.executable, "-m", module]) + list(args or [])
        if ros_args:
            cmd += ["--ros-args"] + list(ros_args)
        self.cmd = cmd
        self.env = dict(os.environ if env is None else env)
        # A native crash (SIGSEGV in DDS, an abort in torch) prints every thread's Python stack
        # into `output` instead of leaving an empty log and a negative return code.
        self.env.setdefault("PYTHONFAULTHANDLER", "1")
        self.proc: subprocess.Popen | None = None
        self.output = ""
        self.returncode: int | None = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGINT) -> int:
        if self.proc is None:
            return 0
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.output, _ = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output, _ = self.proc.communicate()
                self.output += "\n[killed after SIGINT timeout]"
        else:
            self.output, _ = self.proc.communicate()
        self.returncode = self.proc.returncode
        return self.returncode

    def wait(self, timeout: float = 20.0) -> int:
        """Wait for the process to exit on its own (after a signal the test sent); kill it after `timeout`."""
        if self.returncode is None and self.proc is not None:
            try:
                self.output, _ = self.proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output, _ = self.proc.communicate()
                self.output += f"\n[killed: no exit within {timeout:g} s]"
            self.returncode = self.proc.returncode
        return self.returncode

    def __exit__(self, *exc):
        self.stop()
        return False


def call_service(executor, client, request, timeout: float = DEFAULT_TIMEOUT_S):
    """Call a service and spin until the answer (None on timeout or when the service never appears)."""
    deadline = time.monotonic() + timeout
    if not spin_until(executor, client.service_is_ready, timeout=timeout):
        return None
    future = client.call_async(request)
    spin_until(executor, future.done, timeout=max(0.1, deadline - time.monotonic()))
    return future.result() if future.done() else None


def lifecycle_state(executor, node, name: str, timeout: float = DEFAULT_TIMEOUT_S) -> str | None:
    """The primary state label (unconfigured, inactive, active, finalized) of lifecycle node `name`
    (a fully qualified name, e.g. /robot1/navid_planner), through its `get_state` service."""
    from lifecycle_msgs.srv import GetState

    client = node.create_client(GetState, f"{name}/get_state")
    try:
        answer = call_service(executor, client, GetState.Request(), timeout)
        return None if answer is None else answer.current_state.label
    finally:
        node.destroy_client(client)


def change_state(executor, node, name: str, transition: str, timeout: float = 60.0) -> bool:
    """Request a lifecycle transition ("configure", "activate", "deactivate", "cleanup", "shutdown")."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
           "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
           "shutdown": Transition.TRANSITION_ACTIVE_SHUTDOWN}
    client = node.create_client(ChangeState, f"{name}/change_state")
    try:
        request = ChangeState.Request()
        request.transition.id = ids[transition]
        answer = call_service(executor, client, request, timeout)
        if answer is not None:
            return bool(answer.success)
    finally:
        node.destroy_client(client)
    # No answer. The DDS layer can drop a service reply ("failed to send response (timeout)" when the
    # reply reader of a new client is not matched yet) after the transition has happened, so ask the
    # node which state it is in: the transition counts only if it really reached the target state.
    return lifecycle_state(executor, node, name) == LIFECYCLE_TARGETS[transition]


# the primary state each transition ends in (lifecycle_msgs/State labels)
LIFECYCLE_TARGETS = {"configure": "inactive", "activate": "active", "deactivate": "inactive", "cleanup": "unconfigured",
                     "shutdown": "finalized"}

