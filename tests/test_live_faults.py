"""Faults in a live stream (`live.LiveStream`), each with what the caller sees and how the stream
recovers: a camera that stops and resumes, frames that change size, a bad frame among good ones,
a backend that raises or returns NaN once (survived), failures in a row and a worker bug (the
stream ends). Most use `Echo`, a model without a network; the NaN and resize cases run the
shipped bundle, one denoising step."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

import lgcvd_runtime
from lgcvd_runtime.checks import check_frames
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.live import ForecastFailed, LiveStream, StreamEnded
from lgcvd_runtime.media.resize import CROP, fit_frame

SIZE = 8
PERIOD = 0.05  # the shipped bundle's frame period, s: frames pushed at it are all taken


class Echo:
    """A `live.Forecaster` without a network: a forecast is its clip's newest frame n times.
    `outcomes`: what its calls do in turn ("ok" or "raise"; then "ok"); `clips` records each
    call's fitted clips and `scored` whether it was asked for the input score."""

    def __init__(self, period_s: float | None = None, outcomes=()):
        self.manifest = SimpleNamespace(model=ModelSpec(SIZE, 3, 8, 2, "v"))
        self.period_s = period_s
        self.outcomes = list(outcomes)
        self.clips: list[list[np.ndarray]] = []
        self.scored: list[bool] = []

    def fit(self, frames) -> np.ndarray:
        frames = check_frames(frames)
        return np.stack([fit_frame(f, SIZE, CROP) for f in frames])

    def seeds(self, seed, clips: int) -> list[int]:
        return [0] * clips

    def predict(self, clips, n: int, samples: int = 1, seed=None, score: bool = True):
        self.clips.append([c.copy() for c in clips])
        self.scored.append(score)
        if (self.outcomes.pop(0) if self.outcomes else "ok") == "raise":
            raise RuntimeError("device lost")
        frames = np.stack([np.repeat(c[-1:], n, axis=0) for c in clips])[:, None]
        yield SimpleNamespace(start=len(clips[0]), frames=frames, input_score=None)


class Clock:
    """A clock the test sets: stamps and ages without waiting."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def frame(value: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def test_a_camera_that_stops_keeps_its_forecast_ever_older_then_resumes_afresh():
    clock, echo = Clock(), Echo(period_s=0.1)
    with LiveStream(echo, p=2, n=3, cameras=1, deadline_s=0.25, clock=clock) as live:
        live.push(frame(0), stamp=0.0)
        live.push(frame(1), stamp=0.1)
        assert live.wait(10)
        clock.now = 0.15
        fresh = live.latest()
        clock.now = 5.0  # the camera stopped
        begin = time.monotonic()
        assert live.wait(10)  # nothing is due: returns at once
        waited = time.monotonic() - begin
        late = live.latest()
        live.push(frame(2), stamp=5.0)  # back: a fresh start, which needs p new frames
        assert live.wait(10) and live.latest().frame_index == 1
        live.push(frame(3), stamp=5.1)
        assert live.wait(10)
        clock.now = 5.2
        back = live.latest()
    assert (fresh.frame_index, fresh.age, fresh.stale) == (1, pytest.approx(0.05), False)
    assert (late.frame_index, late.age, late.stale) == (1, pytest.approx(4.9), True)
    assert waited < 1.0
    assert (back.frame_index, back.age, back.stale) == (3, pytest.approx(0.1), False)
    assert back.times == pytest.approx([5.2, 5.3, 5.4])  # the newest frame's stamp + k periods
    assert [c[0][:, 0, 0, 0].tolist() for c in echo.clips] == [[0, 1], [2, 3]]  # not [1, 2]


def test_a_frame_of_the_wrong_dtype_among_good_ones_is_one_error_and_the_stream_goes_on():
    echo = Echo()
    with LiveStream(echo, p=2, n=2, cameras=1) as live:
        live.push(frame(10))
        with pytest.raises(LgcvdError) as err:
            live.push(frame(11).astype(np.float32))
        live.push(frame(12))
        assert live.wait(10)
        latest = live.latest()
    assert str(err.value) == (
        "frames must be uint8 RGB of shape (T, H, W, 3), got float32 (1, 8, 8, 3); "
        "convert them first"
    )
    assert latest.frame_index == 1  # the refused frame took no index
    assert echo.clips[0][0][:, 0, 0, 0].tolist() == [10, 12]


def test_failures_not_in_a_row_are_survived_each_reported_once():
    echo = Echo(outcomes=["raise", "raise", "ok", "raise", "raise", "ok"])
    with LiveStream(echo, p=1, n=2, cameras=1) as live:
        for i in range(6):
            live.push(frame(i))
            if i in (0, 1, 3, 4):
                with pytest.raises(
                    ForecastFailed, match=f"^camera 0: the forecast from frame {i} "
                ):
                    live.wait(10)
            else:
                assert live.wait(10)
            latest = live.latest()  # never raises a failure a second time
            assert latest is None or latest.frame_index in (2, 5)
        assert live.failures == 4 and live.latest().frame_index == 5


def test_failures_in_a_row_end_the_stream_every_call_says_so_and_close_returns():
    live = LiveStream(Echo(outcomes=["raise"] * 3), p=1, n=2, cameras=1)
    for i in range(2):
        live.push(frame(i))
        with pytest.raises(ForecastFailed) as failed:
            live.wait(10)
    live.push(frame(2))
    line = (
        "the live stream stopped: 3 forecasts failed in a row (last: RuntimeError: device "
        "lost); fix the cause and open another with model.live()"
    )
    calls = [lambda: live.wait(10), lambda: live.push(frame(3)), live.latest]
    for call in calls:
        with pytest.raises(StreamEnded) as ended:
            call()
        assert str(ended.value) == line
    closer = threading.Thread(target=live.close)
    closer.start()
    closer.join(10)
    assert not closer.is_alive()
    assert str(failed.value) == (
        "camera 0: the forecast from frame 1 failed and was dropped (RuntimeError: device "
        "lost); forecasting goes on with the next frames"
    )


def test_an_error_of_the_worker_itself_ends_the_stream():
    live = LiveStream(Echo(), p=1, n=2, cameras=1)

    def bug():
        raise ZeroDivisionError("division by zero")

    live._take = bug  # an internal bug, outside any forecast
    live.push(frame(0))
    with pytest.raises(StreamEnded) as ended:
        live.wait(10)
    with pytest.raises(StreamEnded):
        live.latest()
    live.close()
    assert str(ended.value) == (
        "the live stream stopped: its worker failed (ZeroDivisionError: division by zero); "
        "open another with model.live()"
    )


class Faulty:
    """Wraps a backend: `once(kind)` makes the next denoiser call raise or return NaN."""

    def __init__(self, backend):
        self.backend, self.name, self.calls = backend, backend.name, backend.calls
        self.fault: str | None = None

    def once(self, kind: str) -> None:
        self.fault = kind

    def encode(self, prev):
        return self.backend.encode(prev)

    def denoise(self, x_t, t, cond, context):
        fault, self.fault = self.fault, None
        if fault == "raise":
            raise RuntimeError("CUDA error: device lost")
        out = self.backend.denoise(x_t, t, cond, context)
        return out * np.nan if fault == "nan" else out

    def close(self):
        self.backend.close()


@pytest.fixture(scope="module")
def model():
    """The shipped bundle, one ddim step per window, without the input score's extra calls."""
    loaded = lgcvd_runtime.load(backend="onnxruntime", sampler="ddim", steps=1, seed=0, threads=1)
    loaded.calibration = None
    loaded.pipeline.backend = Faulty(loaded.backend)
    yield loaded
    loaded.close()


def wait_for(condition, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_a_backend_error_or_nan_once_is_reported_once_never_published_and_survived(model, bair):
    faulty = model.pipeline.backend
    with model.live(p=2, n=6, seed=1) as live:
        live.push(bair[0], stamp=0 * PERIOD)
        live.push(bair[1], stamp=1 * PERIOD)
        assert live.wait(60)
        faulty.once("raise")
        live.push(bair[2], stamp=2 * PERIOD)
        with pytest.raises(ForecastFailed) as raised:
            live.wait(60)
        kept = live.latest()  # the failure was told once; the last good forecast stays
        live.push(bair[3], stamp=3 * PERIOD)
        assert live.wait(60) and live.latest().frame_index == 3
        faulty.once("nan")
        live.push(bair[4], stamp=4 * PERIOD)
        wait_for(lambda: live.failures == 2)
        with pytest.raises(ForecastFailed) as nan:
            live.push(bair[5], stamp=5 * PERIOD)  # told by the next call; that push stored nothing
        after_nan = live.latest()
        live.push(bair[5], stamp=5 * PERIOD)
        assert live.wait(60)
        recovered = live.latest()
    assert str(raised.value) == (
        "camera 0: the forecast from frame 2 failed and was dropped (RuntimeError: CUDA error: "
        "device lost); forecasting goes on with the next frames"
    )
    assert kept.frame_index == 1
    assert str(nan.value).startswith(
        "camera 0: the forecast from frame 4 failed and was dropped (the denoiser graph returned "
        "NaN or Inf at step 1/1 of window 1 on onnxruntime;"
    )
    assert after_nan.frame_index == 3  # the NaN forecast never became one
    assert recovered.frame_index == 5 and recovered.frames.shape == (1, 6, 64, 64, 3)
    (expected,) = model.predict(bair[4:6], n=6, seed=1)  # (frame 4 was taken, not forecast)
    assert np.array_equal(recovered.frames, expected.frames)


def test_frames_whose_size_changes_mid_stream_are_fitted_one_by_one(model, bair):
    wide = np.pad(bair[1], ((16, 16), (40, 40), (0, 0)), mode="edge")  # (96, 144, 3)
    with model.live(p=2, n=6, seed=2) as live:
        live.push(bair[0], stamp=0 * PERIOD)  # 64x64, the model's own size
        live.push(wide, stamp=PERIOD)
        assert live.wait(60)
        forecast = live.latest()
    given = np.stack([bair[0], fit_frame(wide, 64, model.framing)])
    (expected,) = model.predict(given, n=6, seed=2)
    assert np.array_equal(forecast.frames, expected.frames)
