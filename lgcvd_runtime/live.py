"""A live forecaster for control loops: pushes never wait, a worker thread forecasts
(docs/design.md, "Many cameras, live loops, fleets").

    with model.live(p=2, n=6, cameras=2) as live:
        while robot.running:                          # e.g. at 10 Hz
            live.push(front_camera(), camera=0)      # stores the frame, returns at once
            live.push(wrist_camera(), camera=1)
            forecast = live.latest(camera=0)          # newest finished forecast, or None
            if forecast is not None:
                plan(forecast.frames, forecast.times)  # times: when each frame is, or None

`push` checks and stores a frame and wakes the worker. The worker forecasts the n frames after
the newest p frames of every camera that has a frame no forecast has seen yet, all those
cameras as one batch (`Model.predict` on a list of clips). While it works, newer frames replace
older ones (latest wins: nothing queues up); frames that no forecast used are counted in
`skipped`. A forecast depends only on its p frames and its camera's seed, as the same
`Model.predict` call would give. An error in the worker is raised by the next `push`, `latest`
or `wait`. The model must not be used from another thread while the stream is open.
This module knows no engine package, and not the façade `api` that builds it: the model is
anything with `Model`'s `fit`, `seeds`, `predict`, `manifest` and `period_s` (the `Forecaster`
protocol). A forecast's `times` are its newest frame's push time plus k model periods
(`framing.frame_times`, seconds on the caller's clock); frames are used as pushed, so push them
at the model's period (`Model.period_s`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lgcvd_runtime.bundle import Manifest
from lgcvd_runtime.checks import check_count, check_frames, is_whole
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.framing import frame_times
from lgcvd_runtime.timeline import Timeline


class Forecaster(Protocol):
    """What the stream needs of its model (`api.Model` is one)."""

    manifest: Manifest
    period_s: float | None

    def fit(self, frames) -> np.ndarray: ...

    def seeds(self, seed, clips: int) -> list[int]: ...

    def predict(self, clips, n: int, samples: int = 1, seed=None) -> Iterator: ...


@dataclass(frozen=True)
class Forecast:
    """The n frames (S, n, size, size, 3) uint8 that follow frame `frame_index` (counted from
    the camera's first push) of one camera, pushed at `frame_time` (time.monotonic() unless the
    caller gave its own clock); `made_at` is when the forecast finished. `times` (n,): the
    time each frame shows, `frame_time` + k periods, k = 1 .. n (None: no period recorded)."""

    camera: int
    frames: np.ndarray
    frame_index: int
    frame_time: float
    made_at: float
    input_score: float | None = None  # the given frames' input score (api.PredictedWindow)
    times: np.ndarray | None = None


class _Camera:
    """One camera's newest p raw frames, their indices and times, and what forecasts used."""

    def __init__(self, p: int):
        self.frames: deque[tuple[np.ndarray, int, float]] = deque(maxlen=p)
        self.pushed = 0  # frames pushed so far; the next frame's index
        self.used = -1  # index of the newest frame the last forecast started from
        self.latest: Forecast | None = None

    def due(self) -> bool:
        return len(self.frames) == self.frames.maxlen and self.pushed - 1 > self.used


class LiveStream:
    """See the module header. Build it with `Model.live(p, n, cameras, samples, seed)`."""

    def __init__(
        self, model: Forecaster, p: int, n: int, cameras: int, samples: int = 1, seed=None
    ):
        for what, value in (("p", p), ("n", n), ("cameras", cameras), ("samples", samples)):
            check_count(what, value)
        self.model, self.p, self.n, self.samples = model, p, n, samples
        self.seeds = model.seeds(seed, cameras)  # one per camera, for all its forecasts
        self.skipped = 0  # frames no forecast used
        self._cameras = [_Camera(p) for _ in range(cameras)]
        self._cond = threading.Condition()
        self._busy, self._closing = False, False
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._work, name="lgcvd-live", daemon=True)
        self._worker.start()

    @property
    def cameras(self) -> int:
        return len(self._cameras)

    def push(self, frame: np.ndarray, camera: int = 0, stamp: float | None = None) -> int:
        """Store one (H, W, 3) uint8 frame of `camera` and return its index at once. `stamp`:
        the frame's time on the caller's clock (default time.monotonic())."""
        frame = np.array(check_frames(np.asarray(frame)[None])[0])  # a copy
        stamp = time.monotonic() if stamp is None else float(stamp)
        with self._cond:
            self._raise_error()
            if self._closing:
                raise LgcvdError("this live stream is closed; open another with model.live()")
            cam = self._camera(camera)
            index = cam.pushed
            cam.frames.append((frame, index, stamp))
            cam.pushed += 1
            self._cond.notify_all()
        return index

    def latest(self, camera: int = 0) -> Forecast | None:
        """The newest finished forecast of `camera`, or None while there is none."""
        with self._cond:
            self._raise_error()
            return self._camera(camera).latest

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every camera's newest frame has a finished forecast (or the timeout
        passes: False). For tests and orderly shutdowns; a control loop never needs it."""
        with self._cond:
            done = self._cond.wait_for(
                lambda: (
                    self._error is not None
                    or self._closing
                    or not (self._busy or any(c.due() for c in self._cameras))
                ),
                timeout,
            )
            self._raise_error()
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

    def _camera(self, camera: int) -> _Camera:
        if not is_whole(camera) or not 0 <= camera < len(self._cameras):
            raise LgcvdError(
                f"camera {camera!r} does not exist; this stream has cameras "
                f"0..{len(self._cameras) - 1}"
            )
        return self._cameras[camera]

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _take(self) -> list[tuple[int, list[np.ndarray], int, float]]:
        """Under the lock: the due cameras' newest p frames; marks them used, counts skips."""
        jobs = []
        for c, cam in enumerate(self._cameras):
            if cam.due():
                frames, indices, stamps = zip(*cam.frames, strict=True)
                self.skipped += max(0, indices[0] - (cam.used + 1))
                cam.used = indices[-1]
                jobs.append((c, list(frames), indices[-1], stamps[-1]))
        return jobs

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._closing or any(c.due() for c in self._cameras)
                    )
                    if self._closing:
                        return
                    jobs, self._busy = self._take(), True
                forecasts = self._forecast(jobs)
                with self._cond:
                    for f in forecasts:
                        self._cameras[f.camera].latest = f
                    self._busy = False
                    self._cond.notify_all()
        except BaseException as err:  # kept for the caller's next push / latest / wait
            with self._cond:
                self._error, self._busy = err, False
                self._cond.notify_all()

    def _forecast(self, jobs) -> list[Forecast]:
        """One batch for all due cameras: (C, S, n, size, size, 3) through `Model.predict`."""
        fit = self.model.fit  # frame by frame: a camera's frames may change size
        clips = [np.concatenate([fit(f[None]) for f in frames]) for _, frames, _, _ in jobs]
        seeds = [self.seeds[c] for c, _, _, _ in jobs]
        given = np.stack(clips)[:, None].repeat(self.samples, axis=1)  # (C, S, p, size, size, 3)
        timeline = Timeline.prediction(given, self.n, self.model.manifest.model)
        scores = None
        for w in self.model.predict(clips, self.n, self.samples, seed=seeds):
            timeline.write(w.start, w.frames)
            scores = w.input_score  # (C,) or None
        made, period = time.monotonic(), self.model.period_s
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
