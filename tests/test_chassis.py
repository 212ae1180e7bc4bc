"""The command-line chassis (`lgcvd_runtime.cli.chassis`): errors and stops end in one line and
the shell's exit code in every command. Through click's CliRunner for the mapping itself, then
through real processes, all started at once: each command is stopped by Ctrl-C (130) and by
SIGTERM (143) once it reports that it runs, and a service stopped on request exits 0."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import export_tiny_bundle, random_model
from test_cli import write_video
from test_export import gate_frames, write_checkpoint

from lgcvd_runtime.cli.chassis import Command, Group, Service, when_stopped
from lgcvd_runtime.errors import DataError
from lgcvd_runtime.signals import Terminated

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SERVE_BIN = ROOT / ".venv-serve" / "bin"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STOPS = {signal.SIGINT: (130, "interrupted"), signal.SIGTERM: (143, "terminated")}


# --- the mapping, in process ------------------------------------------------------------------


def raising(error: BaseException, cls=Command, **attrs) -> click.Command:
    def body():
        raise error

    return click.command(cls=cls, **attrs)(body)


@pytest.mark.parametrize(
    "stop, code, word",
    [
        (KeyboardInterrupt(), 130, "interrupted"),
        (Terminated(signal.SIGTERM), 143, "terminated"),
        (Terminated(signal.SIGHUP), 129, "hung up"),
    ],
)
def test_a_stopped_batch_command_exits_with_the_shells_code_and_its_own_line(stop, code, word):
    result = CliRunner().invoke(raising(stop, stopped="{word}; nothing written"))
    assert (result.exit_code, result.output) == (code, f"{word}; nothing written\n")


def test_a_user_error_is_one_line_and_exit_1_without_a_traceback():
    result = CliRunner().invoke(raising(DataError("no clips in x; pass --data a folder")))
    assert (result.exit_code, result.output) == (1, "Error: no clips in x; pass --data a folder\n")


def test_a_command_can_say_what_a_stop_leaves_once_it_knows():
    @click.command(cls=Command, stopped="{word} early")
    def body():
        when_stopped(lambda word: f"{word} at step 7; checkpoint saved")
        raise Terminated(signal.SIGTERM)

    result = CliRunner().invoke(body)
    assert (result.exit_code, result.output) == (143, "terminated at step 7; checkpoint saved\n")


def test_a_service_stopped_on_request_says_stopped_and_exits_0_alone_or_in_a_group():
    alone = CliRunner().invoke(raising(Terminated(signal.SIGTERM), cls=Service))
    assert (alone.exit_code, alone.output) == (0, "stopped\n")

    @click.group(cls=Group, stopped="{word}; no output")
    def main():
        pass

    main.add_command(raising(KeyboardInterrupt(), cls=Service), "serve")
    main.add_command(raising(KeyboardInterrupt(), cls=click.Command), "batch")
    assert CliRunner().invoke(main, ["serve"]).output == "stopped\n"
    batch = CliRunner().invoke(main, ["batch"])
    assert (batch.exit_code, batch.output) == (130, "interrupted; no output\n")


# --- real processes ---------------------------------------------------------------------------

SERVICE = textwrap.dedent(
    """
    import time, click
    from lgcvd_runtime.cli.chassis import Service

    @click.command(cls=Service)
    def main():
        click.echo("ready", err=True)
        while True:
            time.sleep(0.05)

    main()
    """
)


@dataclass
class Stopped:
    """A command started, stopped by `sig` once `ready(self)` holds, then waited for."""

    command: list
    sig: int
    ready: Callable[[Stopped], bool]
    folder: Path
    err: bytes = b""
    code: int | None = None
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        (self.folder / "out").mkdir(parents=True)  # for a command's -o out/NAME
        self.proc = subprocess.Popen(
            [str(c) for c in self.command],
            cwd=self.folder,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while chunk := os.read(self.proc.stderr.fileno(), 4096):
            self.err += chunk

    @property
    def said(self) -> str:
        return self.err.decode(errors="replace")

    @property
    def last_line(self) -> str:
        lines = [line for line in re.split(r"[\r\n]", self.said) if line.strip()]
        return lines[-1] if lines else ""


def said(text: str) -> Callable[[Stopped], bool]:
    return lambda run: text in run.said


def holds_more_than(entries: int, where: str = ".") -> Callable[[Stopped], bool]:
    return lambda run: len(os.listdir(run.folder / where)) > entries


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(tmp: Path, bundle: str, checkpoint: Path, repo: Path | None) -> dict:
    """name -> (command, ready) for every command line of the project (new ports each call)."""
    clip = tmp / "clip.mkv"
    out = {
        "lgcvd-run": (
            [sys.executable, "-m", "lgcvd_runtime", "predict", clip, "-n", 120, "--steps", 100]
            + ["-o", "out.mkv", "--model", bundle, "--backend", "onnxruntime", "--quiet"],
            holds_more_than(1),  # out/ and the output's temporary file: the command runs
        ),
        "lgcvd-train": (
            [BIN / "lgcvd-train", "--preset", "tiny", "--data", "shapes", "--num-videos", 4]
            + ["--batch-size", 1, "--steps", 100000, "--save-every", 100000, "--out", "run"],
            said("/100000"),  # the progress bar: training runs
        ),
        "lgcvd-export": (
            [BIN / "lgcvd-export", checkpoint, "-o", "out/x.lgcvd"]
            + ["--real-frames", gate_frames()],
            holds_more_than(0, "out"),  # the bundle's work folder
        ),
        "lgcvd-eval": (
            [BIN / "lgcvd-eval", "--model", bundle, "--data", "shapes", "--clips", 4]
            + ["--steps", 100, "--no-lpips", "--no-fvd", "--threads", 1, "--out", "eval"],
            said("LPIPS skipped"),  # a note once the models and clips are loaded
        ),
        "tools/make_dataset.py": (
            [sys.executable, ROOT / "tools" / "make_dataset.py", "pushsim", "-n", 100000]
            + ["-o", "clips.npy"],
            said("pushsim"),  # the progress bar: rendering runs
        ),
        "service": ([sys.executable, "-c", SERVICE], said("ready")),
    }
    if repo is not None:
        ports = ["--grpc-port", free_port(), "--http-port", free_port()]
        out["lgcvd-serve local"] = (
            [SERVE_BIN / "lgcvd-serve", "local", repo, *ports],
            said("ready:"),
        )
    return out


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> dict[tuple[str, int], Stopped]:
    """Every command, once per stop signal, all at once: each is signalled as soon as it is
    ready, then waited for."""
    tmp = tmp_path_factory.mktemp("chassis")
    bundle = export_tiny_bundle(tmp_path_factory)
    checkpoint = write_checkpoint(tmp / "ckpt" / "run", random_model())
    write_video(tmp / "clip.mkv", 4)
    repo = None
    if (SERVE_BIN / "lgcvd-serve").is_file():
        from lgcvd_runtime.api import default_bundle
        from lgcvd_runtime.serve.repository import RepoOptions, write_repository

        repo = tmp / "repo"
        write_repository(default_bundle(), repo, RepoOptions(graphs="python", pipelines=1))
    runs = {
        (name, sig): Stopped(command, sig, ready, tmp / f"{name.replace('/', '-')}-{sig.name}")
        for sig in STOPS
        for name, (command, ready) in commands(tmp, bundle, checkpoint, repo).items()
    }
    for run in runs.values():
        run.start()
    waiting, deadline = set(runs), time.monotonic() + 240
    try:
        while waiting and time.monotonic() < deadline:
            for key in list(waiting):
                run = runs[key]
                if run.proc.poll() is not None:  # ended before it was ready: the test says why
                    waiting.discard(key)
                elif run.ready(run):
                    run.proc.send_signal(run.sig)
                    waiting.discard(key)
            time.sleep(0.05)
        for run in runs.values():
            run.code = run.proc.wait(timeout=max(10, deadline - time.monotonic()))
    finally:  # a command that did not obey: SIGTERM lets a server stop its children first
        for run in runs.values():
            if run.proc.poll() is None:
                run.proc.terminate()
                try:
                    run.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    run.proc.kill()
                    run.proc.wait()
        time.sleep(0.1)  # the readers' last chunks
    return runs


@pytest.mark.parametrize("sig", list(STOPS))
@pytest.mark.parametrize(
    "name, line",
    [
        ("lgcvd-run", "{word}; no output was written"),
        ("lgcvd-export", "{word}; no bundle written to out/x.lgcvd"),
        ("lgcvd-eval", "{word}; no report written"),
        ("tools/make_dataset.py", "{word}; no file written"),
    ],
)
def test_every_command_stopped_mid_run_exits_130_or_143_with_its_line(stopped, name, line, sig):
    run = stopped[name, sig]
    code, word = STOPS[sig]
    assert (run.code, run.last_line) == (code, line.format(word=word)), run.said[-2000:]
    if name == "lgcvd-run":
        assert os.listdir(run.folder) == ["out"]  # the temporary output went with the stop
    if name == "lgcvd-export":
        assert os.listdir(run.folder / "out") == []


@pytest.mark.parametrize("sig", list(STOPS))
def test_lgcvd_train_stopped_mid_run_exits_130_or_143_and_says_where_the_checkpoint_is(
    stopped, sig
):
    run = stopped["lgcvd-train", sig]
    code, word = STOPS[sig]
    assert run.code == code, run.said[-2000:]
    assert re.fullmatch(
        rf"{word} at step \d+; checkpoint saved in run \(continue with --resume\)", run.last_line
    ), run.said[-2000:]


@pytest.mark.parametrize("sig", list(STOPS))
@pytest.mark.parametrize("name", ["service", "lgcvd-serve local"])
def test_a_service_asked_to_stop_says_stopped_and_exits_0(stopped, name, sig):
    if (name, sig) not in stopped:
        pytest.skip("no serving environment (.venv-serve, which `make test` creates)")
    run = stopped[name, sig]
    assert (run.code, run.last_line) == (0, "stopped"), run.said[-2000:]
