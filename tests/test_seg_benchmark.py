"""benchmarks/seg_latency.py runs end to end (--quick, the default configuration only) and writes its
table; the full run is recorded on a quiet machine (benchmarks/seg_results.md)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_seg_latency_quick_run_writes_a_table(tmp_path):
    spec = importlib.util.spec_from_file_location("seg_latency", ROOT / "benchmarks" / "seg_latency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "seg.md"
    assert bench.main(["--quick", "--configs", "default", "--width", "96", "--height", "72", "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "quick smoke run" in text and "## Machine" in text and "| default | nano @ 64 px |" in text
    row = next(line for line in text.splitlines() if line.startswith("| default"))
    assert row.count("(n=") == 5  # first, tracked, keyframe, VLM part, encoder: every kind was measured
    assert bench.parse_args([]).markdown.endswith("seg_results.md") and bench.parse_args(["--quick"]).markdown is None
