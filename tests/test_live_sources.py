"""Where live frames come from and when: the live stream takes a faster camera's frames at the
model's period by stamp (`live._Camera.takes`, against `stamps.resample` and a derivation
written here), and `lgcvd-run live` reads a stream URL, here MPEG-TS over loopback UDP sent by
another process, writes forecasts and stops cleanly; a URL reaches PyAV intact."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import BAIR_REAL, error_line, stop_and_wait
from test_live_faults import Echo, frame

from lgcvd_runtime.cli.run import main
from lgcvd_runtime.live import LiveStream
from lgcvd_runtime.media.bags import read_stamped_frames
from lgcvd_runtime.media.stamps import resample
from lgcvd_runtime.media.video import read_frames

MODEL_S = 0.1  # a 10 Hz model


def taken(stamps: list[float], camera_period_s: float | None) -> list[int]:
    """The frames a live stream of a 10 Hz model takes from frames stamped `stamps`."""
    echo = Echo(period_s=MODEL_S)
    with LiveStream(echo, p=1, n=1, cameras=1, camera_period_s=camera_period_s) as live:
        for i, stamp in enumerate(stamps):
            live.push(frame(i), stamp=stamp)
            assert live.wait(10)
    return [int(clip[0][0, 0, 0, 0]) for clip in echo.clips]


def first_within_half_a_period(stamps: list[float], camera: float) -> list[int]:
    """Each model time's frame, judged as frames arrive: the first frame whose stamp is at most
    half a camera period before it (nearer than the next frame, expected a period later)."""
    times = np.arange(stamps[0], stamps[-1] + camera / 2 + 1e-9, MODEL_S)
    picks = [next(i for i, s in enumerate(stamps) if s + camera / 2 >= t - 1e-9) for t in times]
    return sorted(set(picks))


def test_a_30_hz_camera_on_a_10_hz_model_gives_every_third_frame_by_stamp():
    stamps = [k / 30 for k in range(31)]
    nanos = [round(s * 1e9) for s in stamps]
    assert taken(stamps, 1 / 30) == list(range(0, 31, 3))
    assert taken(stamps, None) == list(range(0, 31, 3))  # the camera's period measured
    assert list(resample(nanos, round(MODEL_S * 1e9)).indices) == list(range(0, 31, 3))


def test_a_camera_rate_that_is_no_multiple_or_jitters_is_followed_by_stamp():
    rate25 = [k / 25 for k in range(26)]  # 40 ms frames: model times fall between them
    assert taken(rate25, 0.04) == list(resample([round(s * 1e9) for s in rate25], 10**8).indices)
    jitter = np.random.default_rng(0).uniform(-0.006, 0.006, 40)
    jittered = [k / 30 + j for k, j in enumerate(jitter)]
    assert taken(jittered, 1 / 30) == first_within_half_a_period(jittered, 1 / 30)


def test_a_stamp_that_goes_back_starts_the_camera_afresh():
    echo = Echo(period_s=MODEL_S)
    with LiveStream(echo, p=2, n=1, cameras=1) as live:
        for i, stamp in enumerate([0.0, 0.1, 0.05, 0.15]):
            live.push(frame(i), stamp=stamp)
            assert live.wait(10)
    assert [c[0][:, 0, 0, 0].tolist() for c in echo.clips] == [[0, 1], [2, 3]]


def test_a_buffer_the_caller_refills_after_each_push_leaves_the_taken_frames_as_pushed():
    echo, buffer = Echo(period_s=MODEL_S), frame(0)
    with LiveStream(echo, p=2, n=1, cameras=1) as live:
        for i in range(10):
            buffer[...] = i  # a camera driver that fills one buffer again and again
            live.push(buffer, stamp=i / 30)
            assert live.wait(10)
    assert [c[0][:, 0, 0, 0].tolist() for c in echo.clips] == [[0, 3], [3, 6], [6, 9]]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_url_reaches_pyav_intact_and_a_refused_one_is_one_line():
    url = f"rtsp://127.0.0.1:{free_port(socket.SOCK_STREAM)}/cam"
    result = CliRunner().invoke(main, ["predict", url, "--backend", "onnxruntime"])
    assert error_line(result).endswith(
        f"cannot open {url} (Connection refused); check the address and that the stream is running"
    )


def test_a_stream_that_sends_nothing_is_one_line_after_its_timeout():
    url = f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    begin = time.monotonic()
    result = CliRunner().invoke(main, ["live", url, "--timeout", "1", "--backend", "onnxruntime"])
    assert error_line(result) == (
        f"{url} sent nothing in 1 s; check the address and that the stream is running"
    )
    assert time.monotonic() - begin < 30  # the model loads, then 1 s of waiting: no hang


SENDER = Path(__file__).resolve().parents[1] / "tools" / "stream_video.py"
RUN = "from lgcvd_runtime.cli.run import main; main(prog_name='lgcvd-run')"


@pytest.fixture
def udp_stream():
    """A loopback UDP URL on which another process sends a real clip as 20 Hz MPEG-TS."""
    if not (BAIR_REAL / "clip0.mkv").exists():
        pytest.skip("bair-real data absent")
    url = f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    args = [sys.executable, str(SENDER), str(BAIR_REAL / "clip0.mkv"), url, "--seconds", "60"]
    sender = subprocess.Popen(args)
    yield url
    sender.kill()
    sender.wait()


FAST = ["--backend", "onnxruntime", "--sampler", "ddim", "--steps", "1", "--seed", "0"]


def test_live_reads_a_udp_stream_and_writes_each_forecast_to_a_video(udp_stream, tmp_path):
    out = tmp_path / "forecasts.mkv"
    args = ["live", udp_stream, *FAST, "-o", str(out), "--duration", "3", "--camera-rate", "20"]
    result = CliRunner().invoke(main, args)
    lines = result.stdout.splitlines()
    assert result.exit_code == 0, result.output
    assert lines and all(line.startswith("forecast after frame ") for line in lines)
    assert len(read_frames(out)) == 6 * len(lines)  # n = one window, 6 frames per forecast
    assert f"wrote {out}: {len(lines)} forecast" in result.stderr


def test_sigterm_stops_live_with_exit_0_and_a_complete_robot_log(udp_stream, tmp_path):
    out = tmp_path / "forecasts.mcap"
    args = [sys.executable, "-c", RUN, "live", udp_stream, *FAST, "-o", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline()  # the first forecast is written
    finally:
        stderr = stop_and_wait(proc, signal.SIGTERM)
    assert first.startswith("forecast after frame "), stderr
    assert proc.returncode == 0 and stderr.splitlines()[-1] == "stopped"
    frames = list(read_stamped_frames(out, "/camera/forecast"))
    stamps = [stamp for stamp, _ in frames]
    assert len(frames) >= 6 and stamps == sorted(stamps)
    assert abs(stamps[0] / 1e9 - time.time()) < 120  # stamped on the wall clock, in the future
    assert Path(out).stat().st_size > 0
