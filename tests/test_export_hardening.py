"""lgcvd-export under stress: stop signals (exit 143 / 130, nothing left behind, an existing bundle
kept), a signal during the final renames, the user's umask, diverged weights and paths that cannot
hold a bundle. (Checkpoints from a newer lgcvd: tests/test_train_hardening.py.)"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import error_line, random_model, stop_and_wait
from test_export import export, gate_frames, write_checkpoint

from lgcvd_runtime.bundle import MANIFEST, load_manifest
from lgcvd_train.checkpoint import FILENAME

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "run", random_model())


def leftovers(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_stop_signal_leaves_no_temporary_folder_and_keeps_the_old_bundle(
    checkpoint, tmp_path, sig, code, word
):
    out = tmp_path / "x.lgcvd"
    out.mkdir()
    (out / "old").write_text("the bundle --force would replace")
    cmd = [str(Path(sys.executable).parent / "lgcvd-export"), str(checkpoint), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--force", "--real-frames", str(gate_frames())],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(leftovers(tmp_path)) < 2:  # the work folder is made
        time.sleep(0.05)
    err = stop_and_wait(proc, sig)
    assert proc.returncode == code, err[-2000:]
    assert err.strip().splitlines() == [f"{word}; no bundle written to {out}"]
    assert leftovers(tmp_path) == ["x.lgcvd"]
    assert leftovers(out) == ["old"]


def test_a_signal_during_the_final_renames_waits_until_the_bundle_is_in_place(
    checkpoint, tmp_path, monkeypatch
):
    out = tmp_path / "x.lgcvd"
    out.mkdir()
    (out / "old").write_text("old")
    rename = os.replace
    renames = []

    def rename_then_signal(src, dst):
        rename(src, dst)
        renames.append(dst)
        if Path(src) == out:  # the old bundle is moved aside, the new one not yet in place
            signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(os, "replace", rename_then_signal)
    result = export(checkpoint, "-o", out, "--force")
    assert result.exit_code == 0
    assert result.output.strip().splitlines()[-1] == (
        f"terminated after writing {out}; the bundle is complete"
    )
    assert load_manifest(out).precision == "fp32" and not (out / "old").exists()
    assert leftovers(tmp_path) == ["x.lgcvd"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15])  # in the command, then as Python exits
def test_a_stop_once_the_bundle_is_in_place_exits_0_with_the_bundle(checkpoint, tmp_path, delay):
    out = tmp_path / "x.lgcvd"
    cmd = [str(Path(sys.executable).parent / "lgcvd-export"), str(checkpoint), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--real-frames", str(gate_frames())],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not (out / MANIFEST).exists() and proc.poll() is None:
        time.sleep(0.002)
    time.sleep(delay)
    err = stop_and_wait(proc, signal.SIGINT)
    assert proc.returncode == 0, err[-2000:]
    assert err.strip() in ("", f"interrupted after writing {out}; the bundle is complete")
    assert load_manifest(out).precision == "fp32"


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_bundle_gets_the_permissions_the_umask_gives(checkpoint, tmp_path, umask):
    out = tmp_path / "x.lgcvd"
    old = os.umask(umask)
    try:
        result = export(checkpoint, "-o", out)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert oct(stat.S_IMODE(out.stat().st_mode)) == oct(0o777 & ~umask)
    files = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in out.iterdir()}
    assert files == dict.fromkeys([MANIFEST, "context.onnx", "denoiser.onnx"], oct(0o666 & ~umask))


def test_weights_that_hold_nan_are_refused_in_one_line(tmp_path):
    model = random_model()
    with torch.no_grad():
        model.unet.head[-1].weight[0, 0, 0, 0] = float("nan")
    f = write_checkpoint(tmp_path / "run", model)
    assert error_line(export(f.parent, "-o", tmp_path / "x.lgcvd")) == (
        f"{f}: 1 weight tensors hold NaN or Inf (e.g. unet.head.2.weight): the run "
        "diverged; use a checkpoint from before it did"
    )
    assert leftovers(tmp_path) == ["run"]


def test_a_bundle_path_below_a_file_is_one_line(checkpoint, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert error_line(export(checkpoint, "-o", tmp_path / "notes.txt" / "x.lgcvd")) == (
        f"{tmp_path / 'notes.txt'} is a file, not a directory; pass -o a bundle path "
        "inside a directory"
    )
    assert leftovers(tmp_path) == ["notes.txt"]


def test_a_run_directory_with_a_truncated_checkpoint_is_one_line(checkpoint, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    data = checkpoint.read_bytes()
    (run / FILENAME).write_bytes(data[: len(data) // 3])  # a copy cut short
    result = export(run, "-o", tmp_path / "x.lgcvd")
    assert error_line(result).startswith(f"{run / FILENAME}: corrupt checkpoint (")
    assert leftovers(tmp_path) == ["run"]


def test_an_export_removes_what_a_killed_export_of_the_same_bundle_left(checkpoint, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs, as after a SIGKILL
    left = tmp_path / f".x.lgcvd.{proc.pid}-0123abcd.tmp"
    left.mkdir()
    (left / "denoiser.onnx").write_bytes(b"half")
    result = export(checkpoint, "-o", tmp_path / "x.lgcvd")
    assert result.exit_code == 0, result.output
    assert f"note: removed {left.name}, left by an export that was killed" in result.output
    assert leftovers(tmp_path) == ["x.lgcvd"]


def test_a_bundle_name_of_254_bytes_is_written(checkpoint, tmp_path):
    out = tmp_path / ("é" * 124 + ".lgcvd")  # 254 bytes, one under the usual limit
    assert len(os.fsencode(out.name)) == 254
    result = export(checkpoint, "-o", out)
    assert result.exit_code == 0, result.output
    assert load_manifest(out).precision == "fp32"
    assert leftovers(tmp_path) == [out.name]


def test_unreadable_gate_frames_are_one_line(checkpoint, tmp_path):
    from click.testing import CliRunner

    from lgcvd_export.cli import main

    bad = tmp_path / "frames.npz"
    bad.write_bytes(b"not a zip")
    result = CliRunner().invoke(
        main, [str(checkpoint), "-o", str(tmp_path / "x.lgcvd"), "--real-frames", str(bad)]
    )
    assert result.exit_code == 1
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith(f"Error: cannot read {bad} as a numpy array (")
    )
    assert leftovers(tmp_path) == ["frames.npz"]


def test_a_full_disk_is_one_line_and_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    import errno

    from lgcvd_export import bundle_writer

    def full(directory, manifest):
        (directory / MANIFEST).write_text("{")  # part of it fitted
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundle_writer, "write_manifest", full)
    out = tmp_path / "x.lgcvd"
    result = export(checkpoint, "-o", out)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {out}: cannot write the bundle ([Errno 28] No space left on device); no bundle "
        "written"
    )
    assert leftovers(tmp_path) == []
