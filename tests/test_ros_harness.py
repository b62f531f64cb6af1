"""The test harness's Fast DDS shared-memory clean-up removes only what no live process holds."""
from __future__ import annotations

import fcntl
import os

from tests.ros_harness import remove_stale_fastdds_shm


def _touch(directory, *names):
    for name in names:
        (directory / name).write_bytes(b"")


def test_removes_unheld_ports_of_the_domain_and_dead_segments_only(tmp_path):
    # Domain 3 owns RTPS ports 8150..8399.
    _touch(tmp_path, "fastdds_port8161", "fastdds_port8161_el", "sem.fastdds_port8161_mutex")  # dead listener
    _touch(tmp_path, "fastdds_port8163")  # no reader lock at all
    _touch(tmp_path, "fastdds_port8165", "fastdds_port8165_el")  # live listener (locked below)
    _touch(tmp_path, "fastdds_port8167", "fastdds_port8167_sl")  # live shared reader (locked below)
    _touch(tmp_path, "fastdds_port7661", "fastdds_port7661_el")  # domain 1: not ours to clear
    _touch(tmp_path, "fastrtps_0123456789abcdef", "fastrtps_0123456789abcdef_el")  # dead segment
    _touch(tmp_path, "fastdds_fedcba9876543210", "fastdds_fedcba9876543210_el")  # live segment
    _touch(tmp_path, "unrelated_file")
    held = []
    for name, mode in (("fastdds_port8165_el", fcntl.LOCK_EX), ("fastdds_port8167_sl", fcntl.LOCK_SH),
                       ("fastdds_fedcba9876543210_el", fcntl.LOCK_EX)):
        fd = os.open(tmp_path / name, os.O_RDONLY)
        fcntl.flock(fd, mode)
        held.append(fd)
    try:
        removed = remove_stale_fastdds_shm(3, shm_dir=str(tmp_path))
    finally:
        for fd in held:
            os.close(fd)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([
        "fastdds_port8165", "fastdds_port8165_el", "fastdds_port8167", "fastdds_port8167_sl",
        "fastdds_port7661", "fastdds_port7661_el", "fastdds_fedcba9876543210", "fastdds_fedcba9876543210_el",
        "unrelated_file",
    ])
    assert removed == 3 + 1 + 2


def test_a_missing_directory_removes_nothing(tmp_path):
    assert remove_stale_fastdds_shm(0, shm_dir=str(tmp_path / "absent")) == 0


def test_each_module_runs_in_its_own_domain(_ros_domain_per_module):
    assert os.environ["ROS_DOMAIN_ID"] == str(_ros_domain_per_module)
    assert 1 <= _ros_domain_per_module <= 101
