"""Shared plumbing for vlm_agent's thin nodes: parameters from config dataclasses, diagnostics, QoS,
managed (lifecycle) nodes, main().

ROS parameters are declared from a `ConfigBase` dataclass (description, ranges, read-only from
its field metadata); values come from `--params-file config/X.yaml` (`/**: ros__parameters:`) or
`-p k:=v`; runtime changes are validated by building a new config and rejected with the
dataclass's error message, or with the node's own reason (`accept_config_change`: the safety
supervisor refuses loosening changes while gating), before the parameter takes the new value.
Every node publishes a `diagnostic_msgs/DiagnosticArray` on the standard `/diagnostics` topic (what
rqt_robot_monitor, Foxglove and diagnostic_aggregator read) with its rates, latencies, drop counts
and state.

Topic names are relative (`cmd_vel`, `camera/color/image_raw`, ...), so `-r __ns:=/robot1` moves a
whole node into a namespace and `-r odom:=/wheel/odom` remaps one topic; only `/diagnostics` (and
`/clock`) are absolute. QoS follows REP-2003: sensor publishers are reliable (`SENSOR_PUB_QOS`),
sensor subscribers best-effort (`SENSOR_QOS`), so any publisher and any subscriber match.

Managed nodes (`ManagedAgentNode`, rclpy's `LifecycleNode` API as present in Humble, Jazzy and
Kilted) load models and open devices in `configure`, work only while `active`, and are brought up
by `lifecycle_manager` (as nav2_lifecycle_manager does) through `<node>/change_state`.

`run_node` handles SIGINT/SIGTERM itself (rclpy's handlers are off): the spin loop ends between
callbacks, the node's `on_exit()` runs (managed nodes deactivate and shut down: the safety
supervisor publishes zero and waits for it to be acknowledged) while the context is still valid,
and only then is the context shut down. Model calls run on a `ModelWorker` daemon thread, which
cleanup joins for at most `WORKER_EXIT_WAIT_S`; if a hung call outlives that, the process ends with
`os._exit` after the teardown instead of finalising the interpreter (which would abort inside the
call's C++). A teardown still running `TEARDOWN_DUMP_S` after the signal prints every thread's
stack to stderr (faulthandler), so a hang in the middleware is diagnosable from a launch log; one
still inside rclpy's node destruction `TEARDOWN_EXIT_S` after it began ends the process (exit 0,
the reason on stderr), since the node has already stopped the robot by then; if that hang holds the
GIL (so no Python thread can run), a native POSIX timer (`exit_timer`) ends it two seconds later.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import faulthandler
import logging
import os
import queue
import signal
import sys
import threading
import time
import typing

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from vlm_agent.config import ConfigBase, field_types
from vlm_agent.nodes import exit_timer
from vlm_agent.ros_env import configure_ros_environment
from vlm_agent.telemetry import HealthReport

# The standard diagnostics topic: absolute on purpose (one aggregator per robot reads every node).
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# REP-2003: sensor *subscribers* are best-effort (they match reliable and best-effort publishers) ...
SENSOR_QOS = qos_profile_sensor_data
# ... and sensor/odometry *publishers* are reliable (system-default-like), so reliable subscribers
# elsewhere (Nav2, robot_localization, rviz defaults) can match them.
SENSOR_PUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
# State that late joiners need (plans, latched status, results): the last message is kept.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
# Commands and other inputs: reliable + volatile, i.e. what `ros2 topic pub` and `create_publisher(T, name, 10)`
# offer; a volatile subscription matches volatile and transient-local publishers alike.
COMMAND_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

_PARAM_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
    list[float]: ParameterType.PARAMETER_DOUBLE_ARRAY,
    list[int]: ParameterType.PARAMETER_INTEGER_ARRAY,
    list[str]: ParameterType.PARAMETER_STRING_ARRAY,
}
_BIG_INT = 2**62


def parameter_descriptor(field: dataclasses.Field, ftype) -> ParameterDescriptor:
    """ParameterDescriptor (type, description, range, read-only) from a `param(...)` field."""
    meta = field.metadata
    description = meta.get("description", "")
    if meta.get("choices"):
        description += f" (one of: {', '.join(map(str, meta['choices']))})"
    desc = ParameterDescriptor(
        name=field.name, type=_PARAM_TYPES[ftype], description=description, read_only=bool(meta.get("read_only"))
    )
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None or hi is not None) and ftype is float:
        desc.floating_point_range = [
            FloatingPointRange(
                from_value=float(lo if lo is not None else -sys.float_info.max),
                to_value=float(hi if hi is not None else sys.float_info.max),
                step=0.0,
            )
        ]
    elif (lo is not None or hi is not None) and ftype is int:
        desc.integer_range = [
            IntegerRange(
                from_value=int(lo if lo is not None else -_BIG_INT), to_value=int(hi if hi is not None else _BIG_INT), step=1
            )
        ]
    return desc


class _AgentNodeMixin:
    """Parameters from a config dataclass and a `DiagnosticArray` on `/diagnostics`; shared by
    `AgentNode` (plain) and `ManagedAgentNode` (lifecycle). Call `_setup_agent` after the rclpy
    node's own `__init__`."""

    def _setup_agent(self, config_cls: type[ConfigBase], status_period_s: float) -> None:
        self._config_cls = config_cls
        self.config = self._declare_config(config_cls)
        self.health = HealthReport()
        self._status_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, DIAGNOSTICS_QOS)
        self._status_timer = self.create_steady_timer(status_period_s, self.publish_status)
        self._started = time.monotonic()

    def create_steady_timer(self, period_s: float, callback):
        """A timer on the steady clock: it fires whatever `use_sim_time` says and whether or not
        anyone publishes `/clock` (watchdogs, diagnostics, the lifecycle manager)."""
        return self.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))

    @property
    def sim_time_active(self) -> bool:
        """True while this node's ROS clock follows `/clock` (`use_sim_time`)."""
        return bool(self.get_clock().ros_time_is_active)

    def control_now_s(self) -> float:
        """Now, in seconds, on the clock this node measures motion durations, data ages and command
        timeouts on: the ROS clock (sim time, from `/clock`) under `use_sim_time`, the steady clock
        (`time.monotonic()`) otherwise. In simulation that keeps a 0.5 s timeout 0.5 s of *simulated*
        time whether the simulator runs slower or faster than the wall clock; before the first `/clock`
        message it reads 0. Watchdogs that must fire when `/clock` itself stops use the steady clock
        (`create_steady_timer`, `time.monotonic()`)."""
        clock = self.get_clock()
        if clock.ros_time_is_active:
            return clock.now().nanoseconds * 1e-9
        return time.monotonic()

    # -- parameters -------------------------------------------------------------------------
    def _declare_config(self, config_cls):
        types = field_types(config_cls)
        defaults = config_cls()  # defaults must validate on their own
        values = {}
        for f in dataclasses.fields(config_cls):
            descriptor = parameter_descriptor(f, types[f.name])
            self.declare_parameter(f.name, getattr(defaults, f.name), descriptor)
            values[f.name] = self.get_parameter(f.name).value
        try:
            config = config_cls(**values)
        except ValueError as exc:
            # A bad value from the YAML or command line: fail at start-up with the reason, not later.
            self.get_logger().fatal(f"invalid parameters: {exc}")
            raise
        self.add_on_set_parameters_callback(self._on_set_parameters)
        return config

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params if p.name in self.config.to_dict()}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            new_config = dataclasses.replace(self.config, **changes)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        refused = self.accept_config_change(self.config, new_config)
        if refused:
            # Refused before anything changed: the ROS parameter keeps its old value, so
            # `ros2 param get` never shows a value the node is not using.
            self.get_logger().warning(f"parameter change refused: {refused}")
            return SetParametersResult(successful=False, reason=refused)
        old, self.config = self.config, new_config
        self.on_config_changed(old, new_config)
        return SetParametersResult(successful=True)

    def accept_config_change(self, old: ConfigBase, new: ConfigBase) -> str | None:
        """Hook for subclasses, called with a valid new config *before* the parameter change is
        accepted: return a reason to refuse it (`ros2 param set` then fails with that reason and the
        parameter keeps its value), or None to accept. A subclass whose core must apply the change
        atomically with its own check (the safety supervisor) may apply it here."""
        return None

    def on_config_changed(self, old: ConfigBase, new: ConfigBase) -> None:
        """Hook for subclasses, after a change was accepted; the default does nothing."""

    # -- diagnostics ------------------------------------------------------------------------
    def status_extra(self) -> dict[str, str]:
        """Subclasses add node-specific values (state, model name, ...)."""
        return {}

    def status_level(self) -> tuple[int, str]:
        """(DiagnosticStatus level, message) reported now; managed nodes qualify it by their state."""
        return self.health.level, self.health.message

    def publish_status(self) -> None:
        level, message = self.status_level()
        status = DiagnosticStatus(
            level=bytes([level]), name=self.get_fully_qualified_name(), message=message, hardware_id="vlm_agent"
        )
        values = self.health.key_values()
        values.update(self.status_extra())
        values["uptime_s"] = f"{time.monotonic() - self._started:.1f}"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        self._status_pub.publish(msg)

    # -- exit -------------------------------------------------------------------------------
    def on_exit(self) -> None:
        """Called by `run_node` / the graph runner after a stop request, while the context is still
        valid and before `destroy_node`; managed nodes deactivate and shut down here."""


# How long cleanup / process exit waits for a model call that is still running. A call that takes
# longer (a hung model) is left behind, but a normal one (tens of ms, seconds under CPU starvation)
# finishes first: a daemon thread still inside torch's C++ when the interpreter finalises aborts the
# process ("terminate called without an active exception", seen under load on Kilted).
WORKER_EXIT_WAIT_S = 2.0


class ModelWorker:
    """One **daemon** thread that runs submitted calls in order, with a bounded queue.

    `submit(fn, *args)` returns a `concurrent.futures.Future` (raises `queue.Full` when `max_queued`
    calls already wait, RuntimeError after `shutdown`); `shutdown(cancel_futures=True)` cancels the
    queued calls and lets the thread end after the running one (`wait`/`timeout`: join it, bounded). Unlike a
    `ThreadPoolExecutor`, whose threads the interpreter joins at exit, a call that never returns (a
    hung model) cannot keep the process from exiting.
    """

    def __init__(self, name: str, max_queued: int = 8):
        self._queue: queue.Queue = queue.Queue(maxsize=max_queued)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn, *args) -> concurrent.futures.Future:
        if self._closed:
            raise RuntimeError("worker shut down")
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put_nowait((future, fn, args))
        return future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 (delivered to the caller through the future)
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = False, cancel_futures: bool = True, timeout: float | None = None) -> None:
        """Stop taking calls; with `wait`, join the thread for at most `timeout` seconds (None: forever)."""
        self._closed = True
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        if wait:
            self._thread.join(timeout)


INSTRUCTION_TOPIC = "vlm_agent/instruction"


class InstructionInputMixin:
    """The instruction topic as the deciders read it (navid_planner, task_planner).

    A volatile subscription always (the node creates it, calling `_on_instruction(msg, "volatile")`),
    plus a transient-local one exactly while a transient-local publisher exists (the simulator latches
    the episode's instruction at reset, possibly before this node subscribed). It is not kept
    permanently: a default-QoS publisher (`ros2 topic pub`) would see it as incompatible and warn "No
    messages will be sent to it", although the volatile subscription receives them. A latched sample
    arrives on both; `_instruction_seen_twice` makes the node use it once.
    """

    _latched_sub = None
    _latched_since = float("-inf")
    _last_instruction: tuple[str, str, float] | None = None

    def _update_latched_subscription(self) -> None:
        """Create or drop the transient-local subscription to follow the publishers (run on a timer)."""
        from std_msgs.msg import String

        infos = self.get_publishers_info_by_topic(self.resolve_topic_name(INSTRUCTION_TOPIC))
        latched = any(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
        if latched and self._latched_sub is None:
            self._latched_since = time.monotonic()
            self._latched_sub = self.create_subscription(String, INSTRUCTION_TOPIC, lambda m: self._on_instruction(m, "latched"), LATCHED_QOS)
        elif not latched and self._latched_sub is not None:
            self._drop_latched_subscription()

    def _drop_latched_subscription(self) -> None:
        if self._latched_sub is not None:
            self.destroy_subscription(self._latched_sub)
            self._latched_sub = None

    def _instruction_seen_twice(self, data: str, via: str) -> bool:
        """True when `data` is the sample already used from the other subscription: a live sample
        of a latched publisher arrives on both at once, and a newly created latched subscription
        replays the publisher's last sample, which the volatile one may have received a while ago.
        Otherwise records it and returns False."""
        now = time.monotonic()
        last = self._last_instruction
        if last is not None and last[0] == data and last[1] != via:
            replay = via == "latched" and now - self._latched_since < 3.0
            if now - last[2] < 1.0 or replay:
                return True
        self._last_instruction = (data, via, now)
        return False


class AgentNode(_AgentNodeMixin, Node):
    """A plain node whose parameters are a config dataclass and which reports on `/diagnostics`.

    Subclasses pass `config_cls`, then build pubs/subs from `self.config`. Override
    `on_config_changed(old, new)` to react to runtime parameter changes.
    """

    def __init__(self, node_name: str, config_cls: type[ConfigBase], status_period_s: float = 1.0, **kwargs):
        Node.__init__(self, node_name, **kwargs)
        self._setup_agent(config_cls, status_period_s)


class ManagedAgentNode(_AgentNodeMixin, LifecycleNode):
    """A managed (lifecycle) node with the same parameter and diagnostics machinery as `AgentNode`.

    Parameters are declared at construction (so `ros2 param` and the YAML work in every state).
    Subclasses implement the hooks `configure_node()` (load the model, open the device, create
    publishers/subscriptions), `activate_node()`, `deactivate_node()`, `cleanup_node()` (undo
    configure); a hook that raises fails the transition with its reason logged and on
    `/diagnostics` (the node stays in its previous state). `lifecycle_state` is the current primary
    state label (unconfigured, inactive, active, finalized).
    """

    def __init__(self, node_name: str, config_cls: type[ConfigBase], status_period_s: float = 1.0, **kwargs):
        self.lifecycle_state = "unconfigured"
        self._transition_error = ""
        LifecycleNode.__init__(self, node_name, **kwargs)
        self._setup_agent(config_cls, status_period_s)

    @property
    def is_active(self) -> bool:
        return self.lifecycle_state == "active"

    # -- hooks for subclasses ---------------------------------------------------------------
    def configure_node(self) -> None:
        """Load models / open devices / create publishers and subscriptions."""

    def activate_node(self) -> None:
        """Start working."""

    def deactivate_node(self) -> None:
        """Stop working (publish what makes the robot safe)."""

    def cleanup_node(self) -> None:
        """Release what `configure_node` acquired."""

    # -- rclpy transition callbacks ---------------------------------------------------------
    def _run_hook(self, transition: str, hooks, new_state: str) -> TransitionCallbackReturn:
        try:
            for hook in hooks:
                hook()
        except Exception as exc:  # noqa: BLE001 (any failure of a hook fails the transition, with the reason)
            self._transition_error = f"{transition} failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._transition_error)
            self.health.set("lifecycle_error", self._transition_error[:300])
            return TransitionCallbackReturn.FAILURE
        self._transition_error = ""
        self.lifecycle_state = new_state
        self.get_logger().info(f"{transition}: now {new_state}")
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        return self._run_hook("configure", [self.configure_node], "inactive")

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = self._run_hook("activate", [self.activate_node], "active")
        if result == TransitionCallbackReturn.SUCCESS:
            LifecycleNode.on_activate(self, state)  # lifecycle publishers, if any
        return result

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        LifecycleNode.on_deactivate(self, state)
        return self._run_hook("deactivate", [self.deactivate_node], "inactive")

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        return self._run_hook("cleanup", [self.cleanup_node], "unconfigured")

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        hooks = []
        if self.lifecycle_state == "active":
            hooks.append(self.deactivate_node)
        if self.lifecycle_state in ("active", "inactive"):
            hooks.append(self.cleanup_node)
        result = self._run_hook("shutdown", hooks, "finalized")
        if result != TransitionCallbackReturn.SUCCESS:
            self.lifecycle_state = "finalized"  # shutdown always ends in finalized
            result = TransitionCallbackReturn.SUCCESS
        return result

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error(f"lifecycle error from {state.label}: cleaning up, back to unconfigured")
        try:
            if self.lifecycle_state == "active":
                self.deactivate_node()
            if self.lifecycle_state in ("active", "inactive"):
                self.cleanup_node()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"cleanup after error failed: {type(exc).__name__}: {exc}")
        self.lifecycle_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    # -- diagnostics and exit ---------------------------------------------------------------
    def status_level(self) -> tuple[int, str]:
        level, message = self.health.level, self.health.message
        if self.lifecycle_state == "active":
            return level, message
        text = f"{self.lifecycle_state}" + (f" ({self._transition_error})" if self._transition_error else "")
        return max(level, self.health.WARN), text if level <= self.health.OK else f"{text}: {message}"

    def publish_status(self) -> None:
        self.health.set("lifecycle_state", self.lifecycle_state)
        super().publish_status()

    def on_exit(self) -> None:
        """Deactivate (if active) and shut down, through rclpy's state machine."""
        if self.lifecycle_state == "active":
            self.trigger_deactivate()
        if self.lifecycle_state != "finalized":
            self.trigger_shutdown()


def bring_up(node: ManagedAgentNode) -> bool:
    """Configure and activate a managed node in-process (tests, single-node use); True when active."""
    if node.lifecycle_state == "unconfigured":
        node.trigger_configure()
    if node.lifecycle_state == "inactive":
        node.trigger_activate()
    return node.is_active


@contextlib.contextmanager
def rclpy_session(args=None, context=None, signal_handler_options=None):
    """`rclpy.init` ... `rclpy.try_shutdown` as a context manager on every supported distribution.

    Using `rclpy.init()` itself as a context manager only works after Jazzy (on Humble and Jazzy `init` returns None and the
    `with` raises TypeError), so this is the one spelling the package uses.
    """
    rclpy.init(args=args, context=context, signal_handler_options=signal_handler_options)
    try:
        yield context
    finally:
        try:
            rclpy.try_shutdown(context=context)
        except RuntimeError:
            # With rclpy's own signal handlers (the default context's default), its handler thread
            # can shut the context down between try_shutdown's check and its shutdown call
            # ("rcl_shutdown already called"): the context is down either way.
            if (context or rclpy.get_default_context()).ok():
                raise


@contextlib.contextmanager
def stop_on_signals(callback: typing.Callable[[], None]):
    """SIGINT and SIGTERM (what `ros2 launch` and Ctrl-C send) call `callback` instead of raising or
    killing; the previous handlers come back on exit. Main thread only."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: callback())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


TEARDOWN_DUMP_S = 8.0
# A teardown still inside rclpy this long after it began ends the process (exit 0: on_exit has
# already sent the zero command). Seen in tests under load: destroy_node waiting forever in
# `destroy_when_not_in_use` with no other Python thread alive (cause in rclpy not found).
TEARDOWN_EXIT_S = 12.0
# In CI on Kilted that wait held the GIL, so the Python watchdog never ran: a native exit timer
# (`exit_timer`, no GIL needed) ends the process TEARDOWN_NATIVE_GRACE_S later, also with exit 0.
TEARDOWN_NATIVE_GRACE_S = 2.0


class TeardownWatchdog:
    """Ends the process (exit 0) when a teardown is still inside rclpy TEARDOWN_EXIT_S after this was
    made: a Python timer that says why, and a native exit timer TEARDOWN_NATIVE_GRACE_S later for a
    hang that holds the GIL. Make it once the zero command has gone out; `cancel()` when done."""

    def __init__(self):
        self._timer = threading.Timer(TEARDOWN_EXIT_S, _teardown_hung)
        self._timer.daemon = True
        self._timer.start()
        self._native = exit_timer.arm(TEARDOWN_EXIT_S + TEARDOWN_NATIVE_GRACE_S, 0)

    def cancel(self) -> None:
        if self._native is not None:
            self._native.cancel()
            self._native = None
        self._timer.cancel()
        self._timer.join(1.0)


def run_node(node_factory: typing.Callable[[], Node], args=None) -> int:
    """Standard node `main`: init without rclpy's signal handlers, spin on a SingleThreadedExecutor
    until SIGINT/SIGTERM or an external shutdown, then `on_exit()` (zero goes out) and
    `destroy_node()` while the context is valid, then shut the context down. Returns the process
    exit code (1 when the node refused its parameters)."""
    configure_ros_environment()
    stop = threading.Event()

    def request_stop():
        if not stop.is_set():
            # A teardown that hangs (seen under CPU starvation) prints every thread's stack.
            faulthandler.dump_traceback_later(TEARDOWN_DUMP_S, exit=False)
        stop.set()

    try:
        # Our handlers stay installed through the whole teardown: a second signal (ros2 launch
        # escalates SIGINT -> SIGTERM) only repeats the stop request instead of killing the exit.
        with stop_on_signals(request_stop), rclpy_session(args=args, signal_handler_options=SignalHandlerOptions.NO):
            node = node_factory()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                while not stop.is_set() and rclpy.ok():
                    executor.spin_once(timeout_sec=0.1)
            finally:
                try:
                    if rclpy.ok():
                        node.on_exit()
                finally:
                    watchdog = TeardownWatchdog()
                    executor.remove_node(node)
                    node.destroy_node()
                    executor.shutdown()
                    watchdog.cancel()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _exit_now_if_threads_left(0)
    return 0


def _teardown_hung() -> None:
    """The teardown's watchdog (see TEARDOWN_EXIT_S): say so, flush, end the process."""
    print(f"teardown still inside rclpy after {TEARDOWN_EXIT_S:g} s (node destroy waiting on a handle in use); "
          "the zero command went out before it; exiting", file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _exit_now_if_threads_left(code: int) -> None:
    """End the process at once when a daemon thread outlived the teardown (a model call that hung past
    `WORKER_EXIT_WAIT_S`): the node is destroyed and the context shut down, and letting the interpreter
    finalise would stop that thread inside C++ (torch), which aborts the process."""
    left = [t.name for t in threading.enumerate() if t.daemon and t.is_alive()]
    if not left:
        return
    print(f"exiting with thread(s) {', '.join(left)} still running (a call that did not return)", file=sys.stderr)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
