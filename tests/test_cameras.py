"""Several cameras in one call and the live stream (`live.LiveStream`), on the tiny bundle with
onnxruntime: batched forecasts equal lone ones bit for bit, pushes never wait, failed forecasts
surface and are never published, skipped frames are counted (more faults: test_live_faults)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from conftest import export_tiny_bundle

import lgcvd_runtime
from lgcvd_runtime.errors import LgcvdError, NonFiniteError
from lgcvd_runtime.live import ForecastFailed, StreamEnded


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


@pytest.fixture
def model(bundle):
    return lgcvd_runtime.load(bundle, backend="onnxruntime", sampler="ddpm", steps=2, seed=0)


def clip(seed: int, count: int = 2, height: int = 32, width: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), np.uint8)


def forecast(windows) -> np.ndarray:
    """Windows -> all their frames along the frame axis (third from the end but three)."""
    windows = list(windows)
    return np.concatenate([w.frames for w in windows], axis=windows[0].frames.ndim - 4)


def test_a_list_of_clips_gives_windows_with_a_leading_camera_axis(model):
    clips = [clip(1), clip(2, height=48, width=64), clip(3, height=20, width=20)]
    windows = list(model.predict(clips, n=9, seed=[4, 5, 6]))
    assert [w.start for w in windows] == [2, 8]
    assert [w.frames.shape for w in windows] == [(3, 1, 6, 32, 32, 3), (3, 1, 3, 32, 32, 3)]
    assert model.backend.calls == {"encode": 2, "denoise": 4}  # all cameras in one batch
    list(model.predict(clips, n=6, samples=2, seed=[4, 5, 6]))  # 6 rows: chunks of 4 and 2
    assert model.backend.calls == {"encode": 4, "denoise": 8}
    (one,) = model.predict(clip(1), n=6, seed=4)
    assert one.frames.shape == (1, 6, 32, 32, 3)  # one clip keeps its shape


@pytest.mark.parametrize("samples", [1, 2])
def test_a_clips_forecast_is_bit_identical_alone_and_batched_with_three_other_cameras(
    model, samples
):
    """Camera 2 of 4: with 2 samples the 8 rows run in chunks of 4 (the bundle's max batch), so
    the clip's rows sit at other batch positions and in another chunk than when alone."""
    clips = [clip(10), clip(11, height=40, width=56), clip(12), clip(13)]
    alone = forecast(model.predict(clips[2], n=9, samples=samples, seed=7))
    batched = forecast(model.predict(clips, n=9, samples=samples, seed=[1, 2, 7, 3]))
    assert batched.shape == (4, samples, 9, 32, 32, 3)
    assert np.array_equal(batched[2], alone)
    assert not np.array_equal(batched[3], alone)  # another clip and seed: another forecast


def test_interpolate_takes_a_list_of_clips_too(model):
    keys = [clip(20, count=2), clip(21, count=2)]
    (window,) = model.interpolate(keys, seed=[8, 9])
    (alone,) = model.interpolate(keys[1], seed=9)
    assert window.start == 1 and window.frames.shape == (2, 1, 6, 32, 32, 3)
    assert np.array_equal(window.frames[1], alone.frames)


def test_a_five_dimensional_array_is_a_list_of_clips(model):
    stacked = np.stack([clip(30), clip(31)])
    (a,) = model.predict(stacked, n=6, seed=3)
    (b,) = model.predict([clip(30), clip(31)], n=6, seed=3)
    assert a.frames.shape == (2, 1, 6, 32, 32, 3) and np.array_equal(a.frames, b.frames)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m.predict([clip(1), clip(2, count=3)], 6),
            "^every camera needs the same number of frames, got 2 and 3; pass each camera's "
            "newest frames, as many for all$",
        ),
        (
            lambda m: m.predict([clip(1), clip(2)], 6, seed=[1, 2, 3]),
            "^got 3 seeds for 2 clips; give one per clip$",
        ),
        (
            lambda m: m.predict([clip(1)[0], clip(2, height=16, width=16)[0]], 6),
            r"^frames of one clip must share one shape, got \(32, 32, 3\) and \(16, 16, 3\); ",
        ),
        (
            lambda m: m.predict(np.zeros((2, 0, 0, 3), np.uint8), 6),
            "^frames must be at least 1x1 pixels, got 0x0$",
        ),
        (lambda m: m.predict(clip(1), 6, seed=-1), r"^a seed must be a whole number 0 <= seed "),
        (lambda m: m.predict(clip(1)[:0], 6), r"^no frames given \(T = 0\); pass at least one"),
        (lambda m: m.predict(clip(1), 2.5), "^n must be a whole number of at least 1, got 2.5$"),
        (lambda m: m.live(p=0), "^p must be a whole number of at least 1, got 0$"),
        (
            lambda m: m.predict([clip(1), clip(2).astype(np.float32)], 6),
            r"^camera 1: frames must be uint8 RGB of shape \(T, H, W, 3\), got float32",
        ),
        (
            lambda m: m.predict(clip(1), 10**12),
            r"^a video of 1000000000002 frames x 1 rows needs [\d,]+ GiB, more memory than",
        ),
    ],
    ids=[
        "uneven p",
        "seed count",
        "ragged frames",
        "zero-sized frames",
        "negative seed",
        "no frames",
        "fractional n",
        "live p 0",
        "one bad camera",
        "too many frames",
    ],
)
def test_bad_clips_and_seeds_are_one_line_errors(model, call, message):
    with pytest.raises(LgcvdError, match=message) as err:
        call(model)
    assert "\n" not in str(err.value)


class Gate:
    """Wraps a backend: the first `held` denoiser calls wait until `open()`; records batches;
    from call `nan_from` on returns NaN."""

    def __init__(self, backend, held: int = 0, nan_from: int | None = None):
        self.backend, self.held, self.nan_from = backend, held, nan_from
        self.name, self.calls = backend.name, backend.calls
        self.released, self.entered = threading.Event(), threading.Event()
        self.batches: list[int] = []

    def open(self):
        self.released.set()

    def encode(self, prev):
        return self.backend.encode(prev)

    def denoise(self, x_t, t, cond, context):
        self.batches.append(len(x_t))
        self.entered.set()
        if len(self.batches) <= self.held:
            assert self.released.wait(30), "the test never opened the gate"
        out = self.backend.denoise(x_t, t, cond, context)
        return out * np.nan if self.nan_from and len(self.batches) >= self.nan_from else out

    def close(self):
        self.backend.close()


def test_push_returns_at_once_while_the_worker_forecasts_and_latest_wins(model):
    gate = Gate(model.backend, held=1)
    model.pipeline.backend = gate
    video = clip(40, count=6)
    with model.live(p=2, n=6, seed=5) as live:
        live.push(video[0])
        live.push(video[1])  # the worker takes frames 0, 1 and blocks in the gate
        assert gate.entered.wait(30)
        begin = time.perf_counter()
        for frame in video[2:]:
            live.push(frame)
        pushes = time.perf_counter() - begin
        assert live.latest() is None  # nothing finished yet
        gate.open()
        assert live.wait(60)
        latest = live.latest()
    assert pushes < 1.0  # returned at all while the forecast is held: no push waits for one
    assert latest.frame_index == 5 and latest.frames.shape == (1, 6, 32, 32, 3)
    assert live.skipped == 2  # frames 2 and 3: the second forecast used 4 and 5
    (expected,) = model.predict(video[4:6], n=6, seed=5)
    assert np.array_equal(latest.frames, expected.frames)


def test_due_cameras_run_as_one_batch_and_match_their_forecast_alone(model):
    gate = Gate(model.backend, held=1)
    model.pipeline.backend = gate
    videos = [clip(50 + c, count=2, height=32 + 8 * c, width=32) for c in range(4)]
    with model.live(p=2, n=6, cameras=4, seed=[1, 2, 3, 4]) as live:
        for frame in videos[0]:
            live.push(frame, camera=0)
        assert gate.entered.wait(30)  # camera 0 alone, held
        for c in (1, 2, 3):
            for frame in videos[c]:
                live.push(frame, camera=c)
        gate.open()
        assert live.wait(60)
        batched = live.latest(camera=2)
    assert gate.batches == [1, 1, 3, 3]  # camera 0 alone, then cameras 1-3 in one batch
    with model.live(p=2, n=6, cameras=1, seed=3) as alone:
        for frame in videos[2]:
            alone.push(frame)
        assert alone.wait(60)
        assert np.array_equal(alone.latest().frames, batched.frames)


def test_nan_from_every_call_fails_each_forecast_until_three_in_a_row_end_the_stream(model):
    model.pipeline.backend = Gate(model.backend, nan_from=1)
    live = model.live(p=1, n=6)
    for i in range(2):
        live.push(clip(60)[i])
        with pytest.raises(ForecastFailed) as failed:
            live.wait(60)
        assert isinstance(failed.value.__cause__, NonFiniteError)
        assert live.latest() is None  # a NaN forecast is never published
    live.push(clip(61)[0])
    for call in (lambda: live.wait(60), lambda: live.push(clip(61)[1]), live.latest):
        with pytest.raises(
            StreamEnded,
            match="^the live stream stopped: 3 forecasts failed in a "
            r"row \(last: the denoiser graph returned NaN or Inf at step 1/2 of "
            "window 1 on onnxruntime;",
        ):
            call()
    live.close()


def test_a_live_push_checks_its_frame_and_camera_at_once(model):
    with model.live(p=2, cameras=2) as live:
        with pytest.raises(
            LgcvdError, match=r"^camera 2 does not exist; this stream has cameras 0\.\.1$"
        ):
            live.push(clip(1)[0], camera=2)
        with pytest.raises(LgcvdError, match="^frames must be uint8 RGB"):
            live.push(np.zeros((8, 8, 3), np.float32))
        with pytest.raises(LgcvdError, match=r"^camera '0' does not exist"):
            live.push(clip(1)[0], camera="0")
        live.push(clip(2, height=48, width=40)[0])  # a camera's frame size may change
        live.push(clip(3)[0])
        assert live.wait(60) and live.latest().frames.shape == (1, 6, 32, 32, 3)
    with pytest.raises(LgcvdError, match="^this live stream is closed; open another with"):
        live.push(clip(1)[0])


def test_the_camera_benchmark_prints_ratios_and_the_live_streams_timings(bundle, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tool = Path(__file__).parents[1] / "tools" / "bench_cameras.py"
    args = ["--model", bundle, "--backend", "onnxruntime", "--steps", "1", "--cameras", "1,2"]
    done = subprocess.run(
        [sys.executable, str(tool), *args, "--rate", "20", "--seconds", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("onnxruntime, ddpm 1 step, max batch 4, p=2, n=6")
    assert [line.split("|")[0].strip() for line in lines[2:4]] == ["1", "2"]
    assert lines[4].startswith("live stream at 20 Hz for 1 s (20 frames): push median ")
