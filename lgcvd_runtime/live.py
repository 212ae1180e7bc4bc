"""A live forecaster for control loops: pushes never wait, a worker thread forecasts
(docs/design.md, "Many cameras, live loops, fleets").

    with model.live(p=2, n=6, cameras=2, camera_period_s=1 / 30, deadline_s=0.5) as live:
        while robot.running:
            live.push(front_camera(), camera=0)      # stores the frame, returns at once
            live.push(wrist_camera(), camera=1)
            forecast = live.latest(camera=0)          # newest finished forecast, or None
            if forecast is not None and not forecast.stale:
                plan(forecast.frames, forecast.times)  # times: when each frame is, or None

`push` checks and stores a frame and wakes the worker. The worker forecasts the n frames after
the newest p frames of every camera that has a frame no forecast has seen yet, all those
cameras as one batch (`Model.predict` on a list of clips). While it works, newer frames replace
older ones (latest wins: nothing queues up); frames that no forecast used are counted in
`skipped`. A forecast depends only on its p frames and its camera's seed, as the same
`Model.predict` call would give. The model must not be used from another thread while the
stream is open.

Time. A frame's stamp is the caller's (`push(stamp=)`, seconds) or the stream's clock at the push
(`clock`, default time.monotonic). Where the model records its frame period (`period_s`), frames
are taken by stamp at that period, by the rule recordings are resampled by (`stamps.nearest`:
each model time takes its nearest frame, the earlier on a tie), so a 30 Hz camera on a 10 Hz
model gives every third frame. A frame is judged as it arrives, against the next one expected a
camera period later (`camera_period_s`, else the last step): where a frame comes later than
expected, a model time that its predecessor would have served goes to it (late rather than
never), the one place where `stamps.resample`, which sees both neighbours, differs. Frames
not taken are counted in `thinned`. A stamp that goes back, or a step over `stamps.GAP` camera
periods (the camera stopped), starts the camera afresh: its next forecast waits for p new
frames, never spanning the break. A forecast's `times` are its newest frame's stamp plus k
model periods (`framing.frame_times`); `latest` gives its `age`, the clock's now minus that
stamp, and `stale`, whether the age passed `deadline_s`: a camera that stopped keeps its last
forecast, ever older.

Input score. A calibrated bundle's forecasts carry the given frames' input score (`ood`) on
each camera's first forecast, after the stream opens or the camera starts afresh, then on every
k-th (`score_every`: forecasts 1, 1+k, 1+2k, ...; 0: the first only); the others carry None
and save the score's denoiser call (~0.4% of a 50-step forecast, ~50% of a 1-step one). A batch
with any camera due is scored whole, every camera of it given its score (one call either way);
a scored batch that fails makes its cameras' next forecast scored.

Errors. A frame or camera that `push` refuses is that call's one-line error; the stream goes
on. A forecast that fails (the backend raises, or returns NaN or Inf: `NonFiniteError`) is
dropped, never published; the stream survives it: the next `push`, `latest` or `wait` that
concerns one of its cameras raises `ForecastFailed` once (that call does nothing else: push the
frame again), `latest` keeps the last good forecast, and forecasting resumes with the next
frames. `MAX_FAILURES` failed forecasts in a row, or an error of the worker itself (a bug), end
the stream: every call then raises the same one-line `StreamEnded`, and `close` returns.
This module knows no engine package, and not the façade `api` that builds it: the model is
anything with `Model`'s `fit`, `seeds`, `predict`, `manifest` and `period_s` (`Forecaster`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from lgcvd_runtime.bundle import Manifest
from lgcvd_runtime.checks import check_count, check_frames, is_whole
from lgcvd_runtime.errors import LgcvdError, first_line
from lgcvd_runtime.framing import frame_times, period_ns
from lgcvd_runtime.media.stamps import GAP, last_nearer
from lgcvd_runtime.timeline import Timeline

MAX_FAILURES = 3  # failed forecasts in a row that end a stream


class ForecastFailed(LgcvdError):
    """One forecast failed and was dropped; the stream goes on (module header)."""


class StreamEnded(LgcvdError):
    """The stream stopped for good: every call raises it (module header)."""


class Forecaster(Protocol):
    """What the stream needs of its model (`api.Model` is one)."""

    manifest: Manifest
    period_s: float | None

    def fit(self, frames) -> np.ndarray: ...

    def seeds(self, seed, clips: int) -> list[int]: ...

    def predict(
        self, clips, n: int, samples: int = 1, seed=None, score: bool = True
    ) -> Iterator: ...


@dataclass(frozen=True)
class Forecast:
    """The n frames (S, n, size, size, 3) uint8 that follow frame `frame_index` (counted from
    the camera's first push) of one camera, stamped `frame_time`; `made_at` is when the forecast
    finished (the stream's clock). `times` (n,): the time each frame shows, `frame_time` + k
    periods, k = 1 .. n (None: no period recorded). `age`: seconds from `frame_time` to the
    `latest` call that returned it; `stale`: that age is over the stream's deadline.
    `input_score`: None where the forecast was not scored (`score_every`, module header) or the
    bundle is not calibrated."""

    camera: int
    frames: np.ndarray
    frame_index: int
    frame_time: float
    made_at: float
    input_score: float | None = None  # the given frames' input score (api.PredictedWindow)
    times: np.ndarray | None = None
    age: float = 0.0
    stale: bool = False


def _one_line(err: BaseException) -> str:
    """`first_line`, after the type name for an error that is not lgcvd's own and says something."""
    line = first_line(err)
    if isinstance(err, LgcvdError) or not str(err).strip():
        return line
    return f"{type(err).__name__}: {line}"


class _Camera:
    """One camera's newest p raw frames, their indices and times, what forecasts used, and
    where its model times lie (ns: `origin`, the last stamp and step)."""

    def __init__(self, p: int):
        self.frames: deque[tuple[np.ndarray, int, float]] = deque(maxlen=p)
        self.pushed = 0  # frames pushed so far; the next frame's index
        self.used = -1  # index of the newest frame the last forecast started from
        self.latest: Forecast | None = None
        self.failed: ForecastFailed | None = None  # to report once
        self.origin = self.judged = self.last = self.step = 0  # ns: model times (header)
        self.forecasts = 0  # forecasts taken since the camera started (afresh)

    def scored(self, every: int) -> bool:
        """Whether its next forecast is due a score: 1, 1+k, 1+2k, ... (0: the first only)."""
        return self.forecasts == 0 or (every > 0 and self.forecasts % every == 0)

    def due(self) -> bool:
        full = len(self.frames) == self.frames.maxlen
        return full and self.frames[-1][1] > self.used  # a taken frame no forecast has seen

    def takes(self, stamp: int, period: int | None, camera: int | None) -> bool:
        """Whether the model takes the frame stamped `stamp` (module header, "Time"): the model
        times not judged yet whose nearest frame, between this one and the next (expected one
        camera period later), is this one (`stamps.last_nearer`, the rule of `stamps.nearest`, on
        ints: no arrays per frame). A break in the stamps starts the camera afresh."""
        step, self.last = stamp - self.last, stamp
        if period is None:
            return True
        known = camera or self.step  # the camera's period, once known
        if not self.frames or step <= 0 or (known and step > GAP * max(period, known)):
            self.frames.clear()
            self.origin = self.judged = stamp
            self.step = self.forecasts = 0
            return True
        self.step, ahead = step, camera or step
        first = self.origin + ((self.judged - self.origin) // period + 1) * period
        last = last_nearer(stamp, stamp + ahead)
        if first <= last:  # model times nearer this frame than the next: the last one judged
            self.judged = last - (last - first) % period
        return first <= last


def _seconds(what: str, value: float | None) -> int | None:
    """A positive number of seconds as whole ns (None stays None), or a one-line error."""
    if value is None:
        return None
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise LgcvdError(f"{what} must be a positive number of seconds, got {value!r}")
    return period_ns(value)


class LiveStream:
    """See the module header. Build it with `Model.live(p, n, cameras, samples, seed, ...)`."""

    def __init__(
        self,
        model: Forecaster,
        p: int,
        n: int,
        cameras: int,
        samples: int = 1,
        seed=None,
        *,
        camera_period_s: float | None = None,
        deadline_s: float | None = None,
        clock: Callable[[], float] | None = None,
        score_every: int = 1,
    ):
        for what, value in (("p", p), ("n", n), ("cameras", cameras), ("samples", samples)):
            check_count(what, value)
        if not is_whole(score_every) or score_every < 0:
            raise LgcvdError(
                f"score_every must be a whole number of at least 0, got {score_every!r}; "
                "0 scores only each camera's first forecast"
            )
        self.score_every = score_every
        self._camera_ns = _seconds("camera_period_s", camera_period_s)
        _seconds("deadline_s", deadline_s)
        self.model, self.p, self.n, self.samples = model, p, n, samples
        self.deadline_s, self.clock = deadline_s, clock or time.monotonic
        self._period_ns = _seconds("the model's period_s", model.period_s)
        self.seeds = model.seeds(seed, cameras)  # one per camera, for all its forecasts
        self.skipped = 0  # frames no forecast used
        self.thinned = 0  # frames between the model's times, not taken (module header)
        self.failures = 0  # forecasts that failed and were dropped
        self._in_a_row = 0
        self._cameras = [_Camera(p) for _ in range(cameras)]
        self._cond = threading.Condition()
        self._busy, self._closing = False, False
        self._ended: StreamEnded | None = None
        self._worker = threading.Thread(target=self._work, name="lgcvd-live", daemon=True)
        self._worker.start()

    @property
    def cameras(self) -> int:
        return len(self._cameras)

    def push(self, frame: np.ndarray, camera: int = 0, stamp: float | None = None) -> int:
        """Store one (H, W, 3) uint8 frame of `camera` and return its index at once. `stamp`:
        the frame's time in seconds on the stream's clock (default: the clock now)."""
        frame = check_frames(np.asarray(frame)[None])[0]  # copied below only if taken
        stamp = self.clock() if stamp is None else float(stamp)
        with self._cond:
            self._raise_error(camera)
            if self._closing:
                raise LgcvdError("this live stream is closed; open another with model.live()")
            cam = self._cameras[camera]
            index = cam.pushed
            cam.pushed += 1
            if cam.takes(round(stamp * 1e9), self._period_ns, self._camera_ns):
                cam.frames.append((frame.copy(), index, stamp))  # the caller may reuse it
                self._cond.notify_all()
            else:
                self.thinned += 1
        return index

    def latest(self, camera: int = 0) -> Forecast | None:
        """The newest finished forecast of `camera` with its age now, or None while there is
        none."""
        with self._cond:
            self._raise_error(camera)
            forecast = self._cameras[camera].latest
        if forecast is None:
            return None
        age = self.clock() - forecast.frame_time
        late = self.deadline_s is not None and age > self.deadline_s
        return replace(forecast, age=age, stale=late)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every camera's newest frame has a finished (or failed) forecast, or the
        timeout passes (False). For tests and orderly shutdowns; a control loop never needs it."""
        with self._cond:
            done = self._cond.wait_for(
                lambda: (
                    self._ended is not None
                    or self._closing
                    or not (self._busy or any(c.due() for c in self._cameras))
                ),
                timeout,
            )
            self._raise_error(None)
            return done

    def close(self) -> None:
        """Stop the worker (after the forecast it is running) and wait for it."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._worker.join()

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_camera(self, camera: int) -> None:
        if not is_whole(camera) or not 0 <= camera < len(self._cameras):
            raise LgcvdError(
                f"camera {camera!r} does not exist; this stream has cameras "
                f"0..{len(self._cameras) - 1}"
            )

    def _raise_error(self, camera: int | None) -> None:
        """Under the lock: the stream's end, else a failed forecast of `camera` (None: of any)
        not yet reported."""
        if self._ended is not None:
            raise StreamEnded(str(self._ended)) from self._ended.__cause__
        if camera is not None:
            self._check_camera(camera)
        for cam in self._cameras if camera is None else [self._cameras[camera]]:
            failed, cam.failed = cam.failed, None
            if failed is not None:
                raise failed

    def _take(self) -> tuple[list[tuple[int, list[np.ndarray], int, float]], bool]:
        """Under the lock: the due cameras' newest p frames, and whether any is due a score;
        marks them used, counts skips and forecasts."""
        jobs, score = [], False
        for c, cam in enumerate(self._cameras):
            if cam.due():
                frames, indices, stamps = zip(*cam.frames, strict=True)
                self.skipped += max(0, indices[0] - (cam.used + 1))
                cam.used = indices[-1]
                score = cam.scored(self.score_every) or score
                cam.forecasts += 1
                jobs.append((c, list(frames), indices[-1], stamps[-1]))
        return jobs, score

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._closing or any(c.due() for c in self._cameras)
                    )
                    if self._closing:
                        return
                    (jobs, score), self._busy = self._take(), True
                try:
                    forecasts, failure = self._forecast(jobs, score), None
                except Exception as err:  # a failed forecast: the stream survives it
                    forecasts, failure = [], err
                with self._cond:
                    self._publish(jobs, score, forecasts, failure)
        except BaseException as err:
            with self._cond:
                self._end(f"its worker failed ({_one_line(err)}); open another", err)

    def _publish(
        self, jobs, score: bool, forecasts: list[Forecast], failure: Exception | None
    ) -> None:
        """Under the lock: the batch's forecasts, or its failure, for the callers to see."""
        self._busy = False
        self._cond.notify_all()
        if failure is None:
            self._in_a_row = 0
            for f in forecasts:
                self._cameras[f.camera].latest = f
            return
        for c, _, _, _ in jobs if score else []:  # the score is still owed (module header)
            self._cameras[c].forecasts = 0
        self.failures += 1
        self._in_a_row += 1
        detail = _one_line(failure)
        if self._in_a_row >= MAX_FAILURES:
            self._end(
                f"{MAX_FAILURES} forecasts failed in a row (last: {detail}); fix the cause and "
                "open another",
                failure,
            )
            return
        for c, _, index, _ in jobs:
            failed = ForecastFailed(
                f"camera {c}: the forecast from frame {index} failed and was dropped ({detail});"
                " forecasting goes on with the next frames"
            )
            failed.__cause__ = failure
            self._cameras[c].failed = failed

    def _end(self, why: str, cause: BaseException) -> None:
        """Under the lock: end the stream; the worker returns."""
        ended = StreamEnded(f"the live stream stopped: {why} with model.live()")
        ended.__cause__ = cause
        self._ended, self._busy, self._closing = ended, False, True
        self._cond.notify_all()

    def _forecast(self, jobs, score: bool) -> list[Forecast]:
        """One batch for all due cameras: (C, S, n, size, size, 3) through `Model.predict`,
        with the input score where `score`."""
        fit = self.model.fit  # frame by frame: a camera's frames may change size
        clips = [np.concatenate([fit(f[None]) for f in frames]) for _, frames, _, _ in jobs]
        seeds = [self.seeds[c] for c, _, _, _ in jobs]
        given = np.stack(clips)[:, None].repeat(self.samples, axis=1)  # (C, S, p, size, size, 3)
        timeline = Timeline.prediction(given, self.n, self.model.manifest.model)
        scores = None
        for w in self.model.predict(clips, self.n, self.samples, seed=seeds, score=score):
            timeline.write(w.start, w.frames)
            scores = w.input_score  # (C,) or None
        made, period = self.clock(), self.model.period_s
        return [
            Forecast(
                c,
                timeline.video[j, :, self.p :],
                index,
                stamp,
                made,
                None if scores is None else float(scores[j]),
                None if period is None else frame_times(stamp, 0, 1, self.n, period),
            )
            for j, (c, _, index, stamp) in enumerate(jobs)
        ]
