"""Defects found by breaking lgcvd on purpose, each pinned by a test that failed before its fix:
zero given frames, what a killed `lgcvd-run predict` leaves, a stop as a command returns, and a
Triton port already in use."""

from __future__ import annotations

import os
import signal
import socket

import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import dead_pid
from test_cli import FAST, run, write_video

import lgcvd_runtime
from lgcvd_runtime.api import default_bundle
from lgcvd_runtime.checks import check_frames
from lgcvd_runtime.cli.chassis import Command, Finished, when_stopped
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.serve.cli import main as serve
from lgcvd_runtime.serve.local_server import free_port
from lgcvd_runtime.serve.repository import RepoOptions, write_repository
from lgcvd_runtime.signals import Terminated

NO_FRAMES = "no frames given (T = 0); pass at least one (H, W, 3) frame"


@pytest.fixture(scope="module")
def model():
    return lgcvd_runtime.load(default_bundle(), backend="onnxruntime", steps=2, seed=0)


@pytest.mark.parametrize("height, width", [(48, 64), (64, 64)])  # fitted, and at the model's size
@pytest.mark.parametrize(
    "call",
    [
        lambda m, f: list(m.predict(f, n=2)),
        lambda m, f: list(m.interpolate(f)),
        lambda m, f: m.input_score(f),
        lambda m, f: list(m.predict([f, f], n=2)),  # cameras
        lambda m, f: check_frames(f),  # what the Triton client and the live stream check with
    ],
    ids=["predict", "interpolate", "input_score", "cameras", "check_frames"],
)
def test_zero_given_frames_are_a_one_line_error_at_any_size(model, call, height, width):
    with pytest.raises(LgcvdError) as err:
        call(model, np.zeros((0, height, width, 3), np.uint8))
    assert str(err.value).removeprefix("camera 0: ") == NO_FRAMES


def test_a_predict_removes_what_a_killed_predict_of_the_same_output_left(tmp_path):
    write_video(tmp_path / "clip.mkv", 4)
    out = tmp_path / "k3.mkv"
    killed = tmp_path / f".k3.mkv.{dead_pid()}-0123abcd.tmp"
    killed.write_bytes(bytes(256 * 1024))
    running = tmp_path / f".k3.mkv.{os.getpid()}-0123abcd.tmp"  # a writer that still runs
    running.write_bytes(b"")
    result = run("predict", tmp_path / "clip.mkv", "-n", 2, "-o", out, *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["clip.mkv", "k3.mkv", running.name]
    )


def test_a_stop_once_the_output_is_complete_says_so_and_exits_0():
    @click.command(cls=Command, stopped="{word}; nothing written")
    def body():
        when_stopped(lambda word: Finished(f"{word} after writing x; x is complete"))
        raise Terminated(signal.SIGTERM)

    result = CliRunner().invoke(body)
    assert (result.exit_code, result.output) == (0, "terminated after writing x; x is complete\n")


def test_a_command_run_in_process_leaves_the_stop_handlers_as_they_were():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    result = CliRunner().invoke(click.command(cls=Command)(lambda: None))
    assert result.exit_code == 0
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("which", ["--grpc-port", "--http-port"])
def test_serving_on_a_port_in_use_is_one_short_line(tmp_path, which):
    repo = tmp_path / "repo"
    write_repository(default_bundle(), repo, RepoOptions(graphs="python"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--http-port" if which == "--grpc-port" else "--grpc-port"
        args = ["local", str(repo), which, str(port), other, str(free_port())]
        result = CliRunner().invoke(serve, args)
    what = "gRPC" if which == "--grpc-port" else "HTTP"
    assert (result.exit_code, result.output) == (
        1,
        f"Error: {what} port {port} on 127.0.0.1 is already in use; stop what listens there "
        f"or pass another {which}\n",
    )
