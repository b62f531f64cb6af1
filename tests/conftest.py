"""Test-run environment: isolated ROS 2 (own domain, localhost discovery, temp log dir),
headless MuJoCo, and fixtures for real rclpy over loopback."""
from __future__ import annotations

import os
import random
import tempfile

import pytest

# Set before anything creates a DDS participant or a GL context.
_RUN_DIR = tempfile.mkdtemp(prefix="vlm_agent_test_")
_SESSION_DOMAIN = os.environ.get("VLM_AGENT_TEST_DOMAIN_ID") or str(random.Random(os.getpid()).randint(1, 100))
os.environ["ROS_DOMAIN_ID"] = _SESSION_DOMAIN  # per module from here on: `_ros_domain_per_module`
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOG_DIR"] = os.path.join(_RUN_DIR, "ros_log")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from vlm_agent.ros_env import configure_ros_environment  # noqa: E402

configure_ros_environment()

# ROS domains the test modules cycle through (0 is every robot's default; above 101 the RTPS ports
# reach Linux's ephemeral range).
_FIRST_DOMAIN, _LAST_DOMAIN = 1, 101
_MODULE_COUNT = {"n": 0}


@pytest.fixture(scope="module", autouse=True)
def _ros_domain_per_module():
    """Each test module gets a ROS domain of its own, cleared of what earlier processes left in
    shared memory (`ros_harness.remove_stale_fastdds_shm`).

    Why: a process a test kills leaves Fast DDS ports behind, and a later participant that reopens
    one can crash. Module scope because module-scoped rigs and the processes their tests start must
    share one domain; autouse fixtures run before the module's other fixtures.
    """
    from tests.ros_harness import remove_stale_fastdds_shm

    span = _LAST_DOMAIN - _FIRST_DOMAIN + 1
    start = int(os.environ.get("VLM_AGENT_TEST_DOMAIN_ID") or _SESSION_DOMAIN)
    if os.environ.get("VLM_AGENT_TEST_DOMAIN_ID"):
        domain = start  # a fixed domain was asked for: keep it
    else:
        domain = _FIRST_DOMAIN + (start - _FIRST_DOMAIN + _MODULE_COUNT["n"]) % span
        _MODULE_COUNT["n"] += 1
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    remove_stale_fastdds_shm(domain)
    yield domain


@pytest.fixture
def ros_context():
    """An initialised rclpy Context of its own, shut down after the test."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)


@pytest.fixture
def ros_executor(ros_context):
    """A SingleThreadedExecutor on `ros_context`; nodes added to it are destroyed after the test."""
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor(context=ros_context)
    yield executor
    for node in list(executor.get_nodes()):
        executor.remove_node(node)
        node.destroy_node()
    executor.shutdown()


@pytest.fixture
def ros_node(ros_context, ros_executor):
    """A plain helper node for test publishers/subscribers, already added to `ros_executor`."""
    from rclpy.node import Node

    node = Node(f"test_helper_{os.getpid()}", context=ros_context)
    ros_executor.add_node(node)
    return node


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path


# pyrealsense2's software device and the ROS 2 wheels in one test process corrupt the heap in a
# C++ static destructor at interpreter exit (glibc free() in __run_exit_handlers, after every test
# has passed; seen only in the pytest process, not in the realsense_camera node's own process).
# The root cause is in native teardown we do not own, so when pyrealsense2 was loaded we leave with
# os._exit after pytest has written its report, keeping pytest's exit status.
_EXIT_STATUS = {"status": None}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["status"] = int(exitstatus)


def pytest_unconfigure(config):
    import sys

    if _EXIT_STATUS["status"] is not None and "pyrealsense2" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["status"])
