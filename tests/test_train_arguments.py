"""lgcvd-train's arguments: every bad number, path, task mixture or device is a one-line error with
the exit code click gives (2: usage, 1: the input), and nothing is written."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import error_line
from test_train_hardening import RUN_FILES, train

from lgcvd_train.checkpoint import FILENAME


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--seed", "-1"],
            "Invalid value for '--seed': -1 is not in the range 0<=x<=18446744073709551615.",
        ),
        (
            ["--seed", str(2**64)],
            f"Invalid value for '--seed': {2**64} is not in the range 0<=x<=18446744073709551615.",
        ),
        (["--steps", "0"], "Invalid value for '--steps': 0 is not in the range x>=1."),
        (["--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in the range x>=1."),
        (["--lr", "nan"], "Invalid value for '--lr': nan is not a finite number"),
        (["--lr", "inf"], "Invalid value for '--lr': inf is not a finite number"),
        (["--lr", "0"], "Invalid value for '--lr': 0.0 is not in the range x>0."),
        (["--ema-decay", "1"], "Invalid value for '--ema-decay': 1.0 is not in the range 0<=x<1."),
        (["--grad-clip", "nan"], "Invalid value for '--grad-clip': nan is not a finite number"),
    ],
)
def test_bad_numbers_are_usage_errors_in_one_line(tmp_path, args, message):
    result = train("--out", tmp_path / "run", *args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["the file", "below the file"])
def test_out_naming_a_file_is_one_line(tmp_path, where):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    result = train("--out", f if where == "the file" else f / "run")
    assert error_line(result) == f"{f} is a file, not a directory; pass --out a run directory"
    assert f.read_text() == "mine" and os.listdir(tmp_path) == ["notes.txt"]


def test_data_naming_an_empty_folder_is_one_line(tmp_path):
    (tmp_path / "videos").mkdir()
    result = train("--out", tmp_path / "run", "--data", tmp_path / "videos")
    assert (
        error_line(result)
        == f"folder {tmp_path / 'videos'} is empty; put the training videos in it"
    )
    assert os.listdir(tmp_path) == ["videos"]


def test_resume_without_a_checkpoint_is_one_line(tmp_path):
    result = train("--out", tmp_path, "--resume")
    assert error_line(result) == f"{tmp_path} holds no checkpoint to resume; drop --resume"
    assert os.listdir(tmp_path) == []


def test_resume_of_a_truncated_checkpoint_is_one_line(tmp_path):
    out = tmp_path / "run"
    assert train("--steps", 1, "--out", out).exit_code == 0
    data = (out / FILENAME).read_bytes()
    (out / FILENAME).write_bytes(data[: len(data) // 2])
    result = train("--steps", 2, "--out", out, "--resume")
    assert error_line(result).startswith(f"{out / FILENAME}: corrupt checkpoint (")
    assert sorted(os.listdir(out)) == RUN_FILES


TASKS = "the tasks are prediction, unconditional, interpolation, random"


@pytest.mark.parametrize(
    "weights, message",
    [
        ("prediction=-1", "prediction=-1.0: weights are finite numbers >= 0"),
        ("prediction=nan", "prediction=nan: weights are finite numbers >= 0"),
        ("foo=1", f"unknown task 'foo'; {TASKS}"),
        ("prediction=0,random=0", "the weights sum to 0; give a task a positive weight"),
    ],
)
def test_bad_task_weights_are_one_line(tmp_path, weights, message):
    result = train("--out", tmp_path / "run", "--task-weights", weights)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: Invalid value for '--task-weights': {message}"
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "device, gpus, message",
    [
        ("foo", 0, "--device foo: not a device name; use cpu, cuda or cuda:N"),
        ("cuda", 0, "--device cuda: no CUDA GPU is usable here; use --device cpu"),
        ("cuda:3", 2, "--device cuda:3: this machine has 2 CUDA GPU(s), cuda:0 to cuda:1"),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(tmp_path, monkeypatch, device, gpus, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    assert error_line(train("--out", tmp_path / "run", "--device", device)) == message
    assert os.listdir(tmp_path) == []


def test_resume_with_no_steps_left_is_one_line(tmp_path):
    out = tmp_path / "run"
    assert train("--steps", 2, "--out", out).exit_code == 0
    before = (out / FILENAME).read_bytes()
    result = train("--steps", 2, "--out", out, "--resume")
    assert error_line(result) == f"{out} is at step 2 already; pass --steps above 2 to train on"
    assert (out / FILENAME).read_bytes() == before and sorted(os.listdir(out)) == RUN_FILES
