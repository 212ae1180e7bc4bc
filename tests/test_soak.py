"""The soak harness (tools/soak.py, `make soak`) judges what it should: its rules against
series whose numbers are worked out here, and a short real soak of the live stream that passes,
beside the same soak with a leak put in on purpose (the process under test keeps every frame),
which must fail with the one line that names the leak."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BAIR_REAL, export_tiny_bundle

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def harness(name: str):
    """A module of tools/soaklib, imported as tools/soak.py imports it."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(f"soaklib.{name}")


def samples(rss, threads, fds, ages):
    """A sample every 0.5 s for t = 0 .. 40 s from functions of t."""
    judge, probe = harness("judge"), harness("probe")
    return [
        judge.Sample(t, {"p": probe.Usage(rss(t), threads(t), fds(t), 1)}, ages(t), 1, 0)
        for t in (i / 2 for i in range(81))
    ]


def test_memory_that_keeps_growing_after_the_warm_up_fails_by_the_growth_between_windows():
    judge = harness("judge")
    # 1 MB/s: after the 10 s warm-up the windows are 7.5 s ((40 - 10) / 4) long; their medians
    # are at t = 13.75 and 36.25 s, 22.5 MB apart.
    run = samples(lambda t: 100 + t, lambda t: 4, lambda t: 6, lambda t: [0.1])
    verdict = judge.judge(run, ["p"], judge.Limits(warmup_s=10))
    assert verdict["targets"]["p"]["rss_mb"]["growth"] == pytest.approx(22.5)
    assert verdict["problems"] == ["p: RSS grew 22.5 MB after the 10 s warm-up (limit 5 MB)"]


def test_a_step_in_the_warm_up_and_a_pool_that_shrinks_back_pass_and_a_late_thread_fails():
    judge = harness("judge")
    flat = samples(
        lambda t: 100 if t < 5 else 130,  # the model loads during the warm-up
        lambda t: 4,
        lambda t: 9 if 20 <= t < 25 else 6,  # connections opened and closed again
        lambda t: [0.2, 0.4],
    )
    verdict = judge.judge(flat, ["p"], judge.Limits(warmup_s=10, max_age_s=0.5))
    assert verdict["passed"] and verdict["age"]["median_s"] == pytest.approx(0.3)
    late = samples(lambda t: 100, lambda t: 5 if t > 30 else 4, lambda t: 6, lambda t: [1.0])
    verdict = judge.judge(late, ["p"], judge.Limits(warmup_s=10, max_age_s=0.5))
    assert verdict["problems"] == [
        "p: threads 4 -> 5 after warm-up (1 leaked)",
        "forecast age p99 1.00 s is over the 0.5 s bound",
    ]


@pytest.mark.slow
def test_a_short_live_soak_passes_and_the_same_soak_with_a_frame_leak_fails(
    tmp_path, tmp_path_factory
):
    if not (BAIR_REAL / "clip0.mkv").exists():
        pytest.skip("bair-real data absent")
    bundle = export_tiny_bundle(tmp_path_factory)
    command = [sys.executable, str(TOOLS / "soak.py"), "--scenario", "live", "--bundle", bundle]
    # 15 s, 5 s of warm-up; the age bound is loose: a shared machine may be slow, and the
    # age rule has its own test above
    command += ["--live-seconds", "15", "--warmup-s", "5", "--max-age-s", "60"]
    runs = {
        case: subprocess.Popen(
            [*command, "--out", str(tmp_path / case), *(["--leak"] if case == "leak" else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case in ("clean", "leak")
    }
    outputs = {case: run.communicate(timeout=300) for case, run in runs.items()}
    assert runs["clean"].returncode == 0, outputs["clean"][1]
    assert outputs["clean"][0] == "live: passed, 2 cameras x 10 Hz x 0.25 min\n"
    assert runs["leak"].returncode == 1
    error = outputs["leak"][1]
    assert error.count("\n") == 1 and ";" not in error, error  # one line, the one problem
    assert error.startswith("Error: soak failed: live: process: RSS grew "), error
    assert error.endswith(" MB after the 5 s warm-up (limit 5 MB)\n"), error
    for case, passed in (("clean", True), ("leak", False)):
        record = json.loads((tmp_path / case / "soak.json").read_text())
        live = record["scenarios"]["live"]
        assert live["verdict"]["passed"] is passed and live["verdict"]["errors"] == 0
        assert live["settings"]["leak"] is not passed
        assert (tmp_path / case / "soak.png").read_bytes()[:4] == b"\x89PNG"
