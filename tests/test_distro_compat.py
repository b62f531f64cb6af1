"""The code runs on every supported ROS 2 distribution: Humble (Python 3.10, rclpy 3.x), Jazzy
(Python 3.12 on Ubuntu 24.04, rclpy 7.x, the venv default) and Kilted (rclpy 9.x).

Jazzy and Kilted are exercised for real (`make test` runs the ROS tests on both). Humble has no
wheels, so two static checks stand in for it: Python 3.10 syntax and standard library (vermin), and
a scan for rclpy APIs that arrived after Humble (or after Jazzy), each with the reason.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Everything that is Python and ships or runs: the package, launch files, benchmarks, tests.
SCANNED = ["vlm_agent", "launch", "benchmarks", "tests", "setup.py"]

# (pattern, why it breaks an older distribution). Patterns are matched per line, comments excluded.
POST_HUMBLE_APIS = [
    (r"with\s+rclpy\.init\s*\(", "rclpy.init() is a context manager only after Jazzy (TypeError on Humble and Jazzy)"),
    (r"with\s+rclpy\.init\b", "rclpy.init() is a context manager only after Jazzy"),
    (r"\brclpy\.event_handler\b|from\s+rclpy\s+import\s+event_handler",
     "rclpy.event_handler is Iron+; Humble has rclpy.qos_event (present, deprecated, in Jazzy too)"),
    (r"\bservice_introspection\b|configure_introspection", "service introspection is Iron+"),
    (r"\breception_sequence_number\b|\bpublication_sequence_number\b",
     "MessageInfo sequence numbers are Iron+ (Humble has source_timestamp/received_timestamp only)"),
    (r"\bautostart\s*=", "Node.create_timer(autostart=...) is Jazzy+"),
    (r"\bqos_profile_best_available\b|\bBEST_AVAILABLE\b", "the best-available QoS policies are Iron+"),
    (r"\brclpy\.type_support\b|from\s+rclpy\s+import\s+type_support", "rclpy.type_support is Iron+"),
    (r"\bget_type_description\b|type_description_interfaces", "type descriptions are Iron+"),
    (r"\bcount_clients\s*\(|\bcount_services\s*\(", "Node.count_clients/count_services are Iron+"),
    (r"\bExternalShutdownException\b.*from\s+rclpy\s+import|from\s+rclpy\s+import\s+.*ExternalShutdownException",
     "import ExternalShutdownException from rclpy.executors (the top-level re-export is newer)"),
    (r"rclpy\.experimental|events_executor|EventsExecutor", "the events executor is Kilted+ (experimental)"),
    (r"\bFuture\s*\[", "rclpy Future is generic only in Kilted"),
    (r"\blogger_level_service\b|enable_logger_service\s*=", "the logger level service is Iron+"),
]


def _python_files():
    for entry in SCANNED:
        path = ROOT / entry
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def _code_lines(path: Path):
    """(line number, code) with comments and string literals (docstrings) removed."""
    skipped = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skipped |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    lines: dict[int, str] = {}
    with tokenize.open(path) as f:
        for tok in tokenize.generate_tokens(f.readline):
            if tok.type in skipped or tok.start[0] != tok.end[0]:
                continue
            line = lines.get(tok.start[0], "")
            lines[tok.start[0]] = line.ljust(tok.start[1]) + tok.string  # original spacing kept
    yield from sorted(lines.items())


def test_no_rclpy_api_newer_than_humble():
    here = Path(__file__).resolve()
    found = []
    for path in _python_files():
        if path.resolve() == here:  # this file names the patterns
            continue
        for number, code in _code_lines(path):
            for pattern, why in POST_HUMBLE_APIS:
                if re.search(pattern, code):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {code.strip()}  <- {why}")
    assert not found, "APIs missing from an older supported ROS 2 distribution:\n" + "\n".join(found)


def test_scan_catches_the_jazzy_crash():
    """The scan itself can fail: the exact line that killed every node on Jazzy is caught."""
    line = "        with rclpy." + "init(args=args):"  # split so repository greps for the bad form stay clean
    assert any(re.search(p, line) for p, _ in POST_HUMBLE_APIS)
    assert not any(re.search(p, "    rclpy.init(args=args, context=context)") for p, _ in POST_HUMBLE_APIS)


VERMIN = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")


@pytest.mark.skipif(VERMIN is None, reason="vermin is not installed (requirements/test.txt has it)")
def test_python_310_syntax_and_stdlib():
    """Humble runs Python 3.10 (Ubuntu 22.04): no 3.11+ syntax or standard-library names."""
    targets = [str(ROOT / e) for e in SCANNED if (ROOT / e).exists()]
    result = subprocess.run(
        [VERMIN, "--no-tips", "--violations", "--eval-annotations", "--backport", "typing_extensions",
         "--no-parse-comments", "-t=3.10-", *targets],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.skipif(VERMIN is None, reason="vermin is not installed (requirements/test.txt has it)")
def test_vermin_check_can_fail(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("import tomllib\n\ntry:\n    pass\nexcept* ValueError:\n    pass\n")
    result = subprocess.run([VERMIN, "--no-tips", "--violations", "-t=3.10-", str(newer)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
