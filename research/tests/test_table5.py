"""research/table5.py, the Table 5 ablation runner: its plan (the lgcvd-train / lgcvd-eval command
lines per variant and seed), resuming from the runs' checkpoints, the table over seeds against
numbers worked out by hand, one real run of the tiny preset, and a stop that saves."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import ablation
import table5
from lgcvd_train.checkpoint import load_checkpoint, save_checkpoint
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.model import LGCVD
from lgcvd_train.train_options import parse_task_weights
from lgcvd_train.trainer import METRICS

pytestmark = pytest.mark.research  # every test here (pyproject's markers)

RESEARCH = Path(__file__).resolve().parents[1]

BIN = Path(sys.executable).parent
TASKS = "prediction=0.6,unconditional=0.2,interpolation=0.1,random=0.1"  # the base run's
ABLATION_FLAGS = {  # paper Table 5, written out here rather than read from the tool
    "baseline": {"--no-two-stage", "--no-context"},
    "two-stage": {"--no-context"},
    "encoder": {"--no-two-stage"},
    "full": set(),
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def invoke(*args):
    return CliRunner().invoke(table5.main, [str(a) for a in args])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def commands(output: str, program: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.startswith(str(BIN / program))]


def test_the_dry_run_prints_eight_trainings_with_each_variants_flags_and_their_evaluations(
    tmp_path,
):
    out = tmp_path / "t5"
    result = invoke("--data", "train.npy", "--test-data", "test.npy", "--out", out, "--dry-run")
    assert result.exit_code == 0, result.output
    trains = commands(result.output, "lgcvd-train")
    assert len(trains) == 8
    seen = set()
    for command in trains:
        run = Path(option(command, "--out")).name  # VARIANT-seedS
        variant, seed = run.rsplit("-seed", 1)
        seen.add((variant, int(seed)))
        assert option(command, "--seed") == seed
        assert {a for a in command if a in ("--no-two-stage", "--no-context")} == (
            ABLATION_FLAGS[variant]
        )
        assert option(command, "--preset") == "base" and option(command, "--steps") == "4000"
        assert option(command, "--batch-size") == "8" and float(option(command, "--lr")) == 3e-4
        assert option(command, "--task-weights") == TASKS
        assert option(command, "--adam") == "fused" and option(command, "--data") == "train.npy"
        assert "--resume" not in command and "--device" not in command
    assert seen == {(v, s) for v in ABLATION_FLAGS for s in (0, 1)}
    evals = commands(result.output, "lgcvd-eval")
    assert len(evals) == 8
    for command in evals:
        assert option(command, "--data") == "test.npy" and option(command, "--clips") == "256"
        assert (option(command, "-p"), option(command, "-n")) == ("2", "28")
        assert command[command.index("--frame-range") + 1 :][:2] == ["3", "28"]
        assert (option(command, "--sampler"), option(command, "--steps")) == ("dpmpp", "10")
        assert option(command, "--seed") == "0" and option(command, "--samples") == "1"
        assert "--no-fvd" not in command
    assert not out.exists()  # nothing run, nothing written


def fake_run(out: Path, name: str, step: int, seed: int, **train) -> Path:
    """A checkpoint of a tiny `name` run at `step`, trained (the record says) with table5's
    defaults and `train` overrides."""
    cfg = preset("tiny") if name != "baseline" else replace(preset("tiny"), context=False)
    model = LGCVD(cfg)
    fields = {"lr": 3e-4, "task_weights": parse_task_weights(TASKS), "seed": seed, **train}
    tcfg = TrainConfig(steps=step, two_stage=name != "baseline", **fields)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    folder = out / "train" / f"{name}-seed{seed}"
    save_checkpoint(folder, model, copy.deepcopy(model), opt, step, tcfg, {})
    return folder


def plan_of(out: Path, *more) -> str:
    args = ["--data", "d.npy", "--test-data", "t.npy", "--out", out, "--preset", "tiny"]
    result = invoke(*args, "--steps", 3, "--variants", "full", *more, "--dry-run")
    assert result.exit_code == 0, result.output
    return result.output


def test_a_finished_run_is_skipped_a_shorter_one_resumed_and_a_missing_one_started(tmp_path):
    out = tmp_path / "t5"
    fake_run(out, "full", step=3, seed=0)
    fake_run(out, "full", step=1, seed=1)
    assert load_checkpoint(out / "train" / "full-seed1").step == 1  # the reader the tool uses
    output = plan_of(out, "--seeds", "0,1,2")
    assert "# full-seed0: evaluate\n" in output  # trained; its report is missing
    assert "# full-seed1: resume from step 1, evaluate\n" in output
    assert "# full-seed2: start, evaluate\n" in output
    trains = {option(c, "--seed"): c for c in commands(output, "lgcvd-train")}
    assert sorted(trains) == ["1", "2"]
    assert "--resume" in trains["1"] and "--resume" not in trains["2"]


def test_a_run_of_other_settings_or_beyond_the_steps_is_a_one_line_error(tmp_path):
    args = ["--data", "d.npy", "--test-data", "t.npy", "--preset", "tiny", "--steps", 3]
    folder = fake_run(tmp_path / "a", "full", step=3, seed=0, lr=1e-3)
    result = invoke(*args, "--out", tmp_path / "a", "--variants", "full", "--seeds", 0)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {folder} was trained with another lr (0.001; this plan: 0.0003); pass "
        f"another --out or delete {folder}\n"
    )
    folder = fake_run(tmp_path / "c", "baseline", step=3, seed=0).rename(
        tmp_path / "c" / "train" / "full-seed0"
    )
    result = invoke(*args, "--out", tmp_path / "c", "--variants", "full", "--seeds", 0)
    assert result.output == (
        f"Error: {folder} holds a 32x32 'tiny' model (v-prediction, no context), this plan trains "
        f"a 32x32 'tiny' model (v-prediction); pass another --out or delete {folder}\n"
    )
    folder = fake_run(tmp_path / "b", "full", step=5, seed=0)
    result = invoke(*args, "--out", tmp_path / "b", "--variants", "full", "--seeds", 0)
    assert result.output == (
        f"Error: {folder} is at step 5, beyond --steps 3; pass --steps 5 or another --out\n"
    )


def test_bad_seeds_variants_or_task_weights_are_one_line_errors(tmp_path):
    args = ["--data", "d.npy", "--test-data", "t.npy", "--out", tmp_path, "--dry-run"]
    for more, message in (
        (["--seeds", "0,x"], "Invalid value for '--seeds': use comma-separated integers, e.g. 0,1"),
        (["--seeds", "1,1"], "Invalid value for '--seeds': give distinct seeds >= 0, e.g. 0,1"),
        (
            ["--variants", "full,none"],
            "Invalid value for '--variants': unknown variant 'none'; choose from baseline, "
            "two-stage, encoder, full",
        ),
        (
            ["--task-weights", "prediction=1,jumping=1"],
            "Invalid value for '--task-weights': unknown task 'jumping'; the tasks are "
            "prediction, unconditional, interpolation, random",
        ),
    ):
        result = invoke(*args, *more)
        assert result.exit_code == 2
        assert result.output.splitlines()[-1] == f"Error: {message}", more


def test_too_few_test_clips_are_refused_before_any_training(tmp_path):
    np.save(tmp_path / "test.npy", clips(2, 1))
    out = tmp_path / "t5"
    test = tmp_path / "test.npy"
    result = invoke("--data", "never-read.npy", "--test-data", test, "--out", out)
    assert result.exit_code == 1
    assert result.output == f"Error: {test} holds 2 videos but --clips is 256; pass --clips 2\n"
    assert not out.exists()


def fake_report(test_data: str, psnr, ssim, lpips, fvd, label: str = "full") -> dict:
    def model(p, s, lp, f):
        best = {"psnr": {"mean": p}, "ssim": {"mean": s}, "lpips": {"mean": lp}}
        return {
            "fvd": f,
            "fvd_clips": {"real": 256, "fake": 256},
            "aggregates": {"frames 3-28": {"best": best}},
        }

    return {
        "settings": {"sampler": "dpmpp", "steps": 10, "seed": 0},
        "data": {"source": test_data, "clips": 256},
        "metrics": {"fvd": {"real_videos": 256}},
        "models": {
            "copy-last": model(14.97, 0.662, 0.177, 1263.0),
            label: model(psnr, ssim, lpips, fvd),
        },
    }


def test_the_table_gives_the_mean_over_two_seeds_and_half_their_difference(tmp_path):
    out = tmp_path / "t5"
    for seed, numbers in ((0, (15.20, 0.650, 0.180, 1000.0)), (1, (15.60, 0.670, 0.170, 1100.0))):
        fake_run(out, "full", step=3, seed=seed)
        report = out / "eval" / f"full-seed{seed}" / "report.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps(fake_report("t.npy", *numbers)))  # after the checkpoint
    assert "# full-seed0: done\n" in plan_of(out)
    args = ["--data", "d.npy", "--test-data", "t.npy", "--out", out, "--preset", "tiny"]
    result = invoke(*args, "--steps", 3, "--variants", "full")
    assert result.exit_code == 0, result.output
    text = (out / "table5.md").read_text()
    assert text in result.output
    lines = text.splitlines()
    assert lines[2].endswith("mean over clips. ± is half the difference between the two seeds.")
    assert "first 256 clips of t.npy" in lines[2] and "dpmpp 10 steps" in lines[2]
    assert lines[4:8] == [
        "| variant | flags | PSNR ↑ | SSIM ↑ | LPIPS ↓ | FVD ↓ |",
        "|---|---|---:|---:|---:|---:|",
        "| copy last frame | — | 14.97 | 0.662 | 0.177 | 1263.0 |",
        # (15.2 + 15.6) / 2 ± (15.6 - 15.2) / 2, and so on
        "| full (both) | — | 15.40 ± 0.20 | 0.660 ± 0.010 | 0.175 ± 0.005 | 1050.0 ± 50.0 |",
    ]
    assert lines[-2:] == [
        "| full (both), seed 0 | 15.20 | 0.650 | 0.180 | 1000.0 (N=256) |",
        "| full (both), seed 1 | 15.60 | 0.670 | 0.170 | 1100.0 (N=256) |",
    ]


def test_the_spread_of_more_than_two_seeds_is_their_standard_deviation():
    # 1, 2, 4: mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9, over n - 1 = 2: 7/3
    assert ablation.spread([1.0, 2.0, 4.0]) == pytest.approx(math.sqrt(7 / 3))
    assert ablation.spread([3.0, 4.0]) == 0.5 and ablation.spread([3.0]) is None


def clips(n: int, seed: int) -> np.ndarray:
    """Noise videos, 30 frames of 32×32: no two frames alike, so copy-last's PSNR is finite."""
    return np.random.default_rng(seed).integers(0, 256, (n, 30, 32, 32, 3), dtype=np.uint8)


@pytest.mark.slow
def test_a_tiny_ablation_trains_evaluates_writes_its_table_and_then_has_nothing_to_do(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the commands it runs
    np.save(tmp_path / "train.npy", clips(4, 0))
    np.save(tmp_path / "test.npy", clips(2, 1))
    out = tmp_path / "t5"
    args = ["--data", tmp_path / "train.npy", "--test-data", tmp_path / "test.npy", "--out", out]
    args += ["--preset", "tiny", "--steps", 2, "--batch-size", 2, "--seeds", 0, "--clips", 2]
    args += ["--no-fvd", "--variants", "full"]  # the signal test below trains the baseline
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out / "train" / "full-seed0").step == 2
    report = json.loads((out / "eval" / "full-seed0" / "report.json").read_text())
    assert report["data"]["clips"] == 2 and report["settings"]["sampler"] == "dpmpp"
    lines = (out / "table5.md").read_text().splitlines()
    assert lines[2].endswith("mean over clips. One seed: no spread.")
    assert lines[4] == "| variant | flags | PSNR ↑ | SSIM ↑ | LPIPS ↓ |"
    ours = report["models"]["full"]["aggregates"]["frames 3-28"]["best"]
    assert (
        lines[7]
        == "| full (both) | — | "
        + " | ".join(
            f"{ours[m]['mean']:.{d}f}" for m, d in (("psnr", 2), ("ssim", 3), ("lpips", 3))
        )
        + " |"
    )
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "table5: train" not in again.stderr and "table5: eval" not in again.stderr
    assert again.stdout == result.stdout


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def training(tmp_path):
    """The tool, started on a long tiny baseline run, once that run has logged its 10th step:
    (process, its arguments, OUT). Whatever it left running is killed at the end."""
    np.save(tmp_path / "train.npy", clips(2, 0))
    out = tmp_path / "t5"
    args = ["--data", tmp_path / "train.npy", "--test-data", tmp_path / "train.npy", "--out", out]
    args += ["--preset", "tiny", "--steps", 100000, "--save-every", 100000, "--batch-size", 1]
    args += ["--seeds", 0, "--clips", 2, "--no-fvd", "--variants", "baseline"]
    tool = subprocess.Popen(
        [sys.executable, RESEARCH / "table5.py", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log, deadline = out / "train" / "baseline-seed0" / METRICS, time.monotonic() + 60
    while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    started = children(tool.pid)
    yield tool, args, out
    for pid in [*started, tool.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    tool.communicate()


@pytest.mark.slow
def test_sigterm_reaches_the_training_which_saves_and_the_tool_exits_143(training):
    tool, args, out = training
    tool.send_signal(signal.SIGTERM)
    _, stderr = tool.communicate(timeout=60)
    assert tool.returncode == 143, stderr
    assert stderr.splitlines()[-1] == (
        "table5: terminated; the checkpoints are saved: run the same command to continue"
    )
    step = load_checkpoint(out / "train" / "baseline-seed0").step
    assert 10 <= step < 100000
    log = (out / "logs" / "baseline-seed0.train.log").read_text()
    assert f"terminated at step {step}; checkpoint saved" in log
    assert (
        f"# baseline-seed0: resume from step {step}, evaluate" in invoke(*args, "--dry-run").output
    )


@pytest.mark.slow
def test_a_tool_killed_outright_stops_its_training_which_saves(training):
    tool, _, out = training
    assert len(children(tool.pid)) == 1  # the training
    tool.kill()
    tool.wait()
    log, deadline = out / "logs" / "baseline-seed0.train.log", time.monotonic() + 30
    while "terminated at step" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "terminated at step" in log.read_text()
    assert load_checkpoint(out / "train" / "baseline-seed0").step >= 10
