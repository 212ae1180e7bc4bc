"""Serving under faults (docs/serving.md): a real `tritonserver` (the nvidia-pytriton wheel's, in
`.venv-serve`) killed mid-request and restarted, bad requests through lgcvd's client and through
raw tritonclient, and a closed port. One server's life runs in `triton_faults_check.py`; the
tests here read its report. The checks of the options themselves need no server."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lgcvd_runtime.api import default_bundle
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_runtime.serve.configs import frames_limit_error
from lgcvd_runtime.serve.repository import RepoOptions, write_repository

HERE = Path(__file__).resolve().parent
SERVE_PYTHON = HERE.parent / ".venv-serve" / "bin" / "python"
FIX = "check that it runs (docs/serving.md), or allow more --retries"
LIMIT = (
    "the server gives at most 1024 per request: ask for fewer, or serve a repository made with "
    "a larger --max-frames"
)


def seed_line(seed: str) -> str:
    """The library's one line for a seed outside 0 <= seed < 2**63 (`pipeline.check_seed`)."""
    return f"a seed must be a whole number 0 <= seed < 2**63, got {seed}; pass one in that range"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """The report of one server's life (triton_faults_check.py), about 50-80 s."""
    assert SERVE_PYTHON.is_file(), "no serving environment: run `make test`, which creates it"
    folder = tmp_path_factory.mktemp("faults")
    options = RepoOptions(graphs="python", pipelines=2, sampler="dpmpp", steps=1)
    write_repository(default_bundle(), folder / "repo", options)
    with VideoWriter(folder / "clip.mkv", fps=20) as writer:
        writer.write(np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), np.uint8))
    script = HERE / "triton_faults_check.py"
    args = [str(SERVE_PYTHON), str(script), str(folder / "repo"), str(folder / "clip.mkv")]
    result = subprocess.run(args, capture_output=True, text=True, timeout=400, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_server_killed_mid_request_fails_it_in_one_line_and_answers_after_a_restart(report):
    url, kill = report["url"], report["kill"]
    outcome, line, seconds = kill["no retries"]
    assert outcome == "error" and "\n" not in line
    assert line.startswith(f"the Triton server at {url} is down or was lost (")
    assert line.endswith(f"; 1 attempt); {FIX}")
    assert seconds < 5  # the kill came 1 s after the request: it fails at once, no hang
    assert kill["killed_code"] == -9  # SIGKILL: no clean shutdown
    assert kill["next"]  # the same client, after the restart: the frames of before the kill


@pytest.mark.slow
def test_a_request_with_retries_outlives_the_restart_with_the_same_frames(report):
    outcome, same, seconds = report["kill"]["10 retries"]
    assert outcome == "frames" and same  # sent again with its seed: the forecast of before
    assert seconds > report["kill"]["restart_s"]  # it did wait for the restarted server


@pytest.mark.slow
def test_the_client_refuses_bad_requests_in_one_line_before_sending(report):
    assert report["client"] == {
        "wrong shape": "frames must be uint8 RGB of shape (T, H, W, 3), got uint8 (64, 64, 3); "
        "convert them first",
        "wrong dtype": "frames must be uint8 RGB of shape (T, H, W, 3), got float32 "
        "(2, 64, 64, 3); convert them first",
        "NaN frames": "frames must be uint8 RGB of shape (T, H, W, 3), got float32 "
        "(2, 64, 64, 3); convert them first",
        "n = 0": "n must be a whole number of at least 1, got 0",
        "n huge": f"asked for 1000000000 frames (n = 1000000000, samples = 1); {LIMIT}",
        "cameras of other lengths": "every camera needs the same number of frames, got 2 "
        "and 1; pass each camera's newest frames, as many for all",
        "seed text": seed_line("'abc'"),
        "seed float": seed_line("1.5"),
        "seed negative": seed_line("-1"),
        "seed past int64": seed_line("9223372036854775808"),
    }


@pytest.mark.slow
def test_the_server_refuses_raw_bad_requests_in_one_line_and_answers_the_next(report):
    """Sent with tritonclient itself: Triton refuses wrong dtypes and ranks (its own words),
    the model what the library or the frame limit refuses (lgcvd's lines)."""
    raw = {name: line.strip() for name, (line, _) in report["raw"].items()}
    assert raw["n = 0"] == "n must be a whole number of at least 1, got 0"
    assert raw["n huge"] == f"asked for 2147483647 frames (n = 2147483647, samples = 1); {LIMIT}"
    assert raw["samples = 0"] == "samples must be a whole number of at least 1, got 0"
    assert raw["seed negative"] == seed_line("-1")
    assert raw["no frames"] == "no frames given (T = 0); pass at least one (H, W, 3) frame"
    triton = {
        "wrong shape": "unexpected shape for input 'frames' for model 'lgcvd'. Expected "
        "[-1,-1,-1,3], got [64,64,3].",
        "four channels": "unexpected shape for input 'frames'",
        "NaN frames": "input 'frames' data-type is 'FP32', but model 'lgcvd' expects 'UINT8'",
        "n of two values": "unexpected shape for input 'n' for model 'lgcvd'. Expected [1]",
        "n missing": "missing required input(s) ['n']",
        "seed float": "input 'seed' data-type is 'FP32', but model 'lgcvd' expects 'INT64'",
        "seed text": "input 'seed' data-type is 'BYTES', but model 'lgcvd' expects 'INT64'",
    }
    assert set(raw) == set(triton) | {
        "n = 0",
        "n huge",
        "samples = 0",
        "seed negative",
        "no frames",
    }
    for name, words in triton.items():
        assert words in raw[name] and "\n" not in raw[name], (name, raw[name])
    assert max(seconds for _, seconds in report["raw"].values()) < 5  # refused, not run
    assert report["answers_after"]  # the same frames as before the bad requests
    assert report["same_processes"] and report["processes"] >= 5  # server + 4 stubs, none died


@pytest.mark.slow
def test_a_request_past_its_timeout_fails_in_one_line_and_is_not_retried(report):
    line, seconds = report["timeout"]
    assert line == (
        f"the Triton server at {report['url']} did not answer within 0.5 s; allow more time "
        "(--timeout) or ask for fewer frames"
    )
    assert 0.5 <= seconds < 2.5  # two retries would have waited 1.5 s and timed out twice more


@pytest.mark.slow
def test_a_closed_port_fails_quickly_naming_the_url_and_the_fix(report):
    closed = report["closed"]
    url = closed["url"]
    line = (
        f"no Triton server answers at {url} (failed to connect to all addresses; last error: "
        f"UNKNOWN: ipv4:{url}: Failed to connect to remote host: Connection refused); start one "
        "(docs/serving.md) or check HOST:PORT (Triton's gRPC port, 8001 by default)"
    )
    assert closed["retries 0"][0] == line and closed["retries 0"][1] < 1
    assert closed["retries 2"][0] == line and 1.4 < closed["retries 2"][1] < 4  # 0.5 s + 1 s
    assert closed["cli"] == [1, f"Error: {line}\n", False]  # one line, no output written


@pytest.mark.slow
def test_no_process_shared_memory_or_workspace_is_left_after_a_kill_and_a_stop(report):
    assert report["left"] == {"processes": [], "shm": [], "workspaces": []}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        ({"timeout": math.inf}, "timeout must be a positive number of seconds, got inf"),
        ({"timeout": "5"}, "timeout must be a positive number of seconds, got '5'"),
        ({"retries": -1}, "retries must be a whole number of at least 0, got -1"),
        ({"retries": 1.5}, "retries must be a whole number of at least 0, got 1.5"),
    ],
)
def test_the_client_checks_its_timeout_and_retries_before_connecting(option, message):
    from lgcvd_runtime.serve.client import TritonClient

    with pytest.raises(LgcvdError) as err:
        TritonClient("127.0.0.1:1", **option)
    assert str(err.value) == message


def test_timeout_and_retries_without_a_server_are_refused(tmp_path):
    args = ["predict", str(tmp_path / "clip.mkv"), "--timeout", "5", "--retries", "1"]
    result = CliRunner().invoke(run_main, args)
    assert result.exit_code == 2
    assert "--timeout, --retries apply to --server only: drop them or add one" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("n", "samples", "refused"),
    [(1024, 1, False), (1025, 1, True), (512, 2, False), (513, 2, True), (0, 9999, False)],
)
def test_a_request_for_more_frames_than_the_limit_is_refused(n, samples, refused):
    """n x samples against the limit; a count below 1 is left to the library's own line."""
    line = frames_limit_error(n, samples, 1024)
    expected = f"asked for {n * samples} frames (n = {n}, samples = {samples}); {LIMIT}"
    assert line == (expected if refused else None)
