"""Where a command's frames go: a video file that grows as frames become final, or a labelled
grid picture written at the end (`lgcvd-run predict -o ...`).

An output is opened before the model loads, so a bad or existing target fails at once, and used
as a `with` block: on an error, Ctrl-C or SIGTERM nothing appears and no temporary file stays.
It follows a `Timeline` (the video, its known mask and how windows fill it): a video writes each
frame once it and every frame before it are final, the samples side by side, left to right, and
the input's own frames (ground truth) left of them if given; a .png grid has one row for the
given frames, one for the truth, and one per sample, on one time axis (`pictures.grid`).
Side-by-side panels of an .mp4 or .gif are labelled in a row above them, as the grid labels its
rows ("truth", the made frames' label, or "sample 1", "sample 2", ...); an .mkv, the lossless
format to measure on, holds the panels alone, in that order, left to right. `SUFFIXES` are the
outputs there are. A robot log (`BagOutput`: a lone .mcap, or a folder named without a suffix)
holds a prediction's made frames, stamped at the times they show (`media.bag_writer`). Where
INPUT's frames were fitted, a video records how (`record_fit`: the container tag `FIT_TAG`) and a
robot log the made frames' intrinsics (a CameraInfo), so a forecast pixel maps back to the
camera's (README, "Forecasts in time").
Knows nothing about networks or engines.
"""

from __future__ import annotations

import json
from functools import reduce
from pathlib import Path
from types import TracebackType

import numpy as np

from lgcvd_runtime.errors import VideoError
from lgcvd_runtime.files import refuse_existing
from lgcvd_runtime.media.bag_writer import Forecast, write_forecast_bag
from lgcvd_runtime.media.pictures import (
    PICTURE,
    Row,
    check_png_target,
    grid,
    panel_labels,
    shown_frames,
    side_by_side,
    write_png,
)
from lgcvd_runtime.media.resize import FitTransform
from lgcvd_runtime.media.writer import OUTPUTS, VideoWriter
from lgcvd_runtime.timeline import Timeline

SUFFIXES = (*OUTPUTS, PICTURE)  # every output: the videos `VideoWriter` writes, then the grid
MEASURED = ".mkv"  # lossless: side-by-side panels without a label row, for measurement
FIT_TAG = "lgcvd_fit"  # container tag: JSON of FitTransform.to_dict() (Matroska: LGCVD_FIT)
IDENTITY = FitTransform(1.0, 1.0, 0.0, 0.0)


class Truth:
    """The input's own frames on the output's time axis: `frames` (T, H, W, 3), of which the
    first `count` exist (the input may end earlier; black after that)."""

    def __init__(self, frames: np.ndarray, count: int):
        self.frames, self.count = frames, count


class VideoOutput:
    """A video file (.mp4, .mkv, .gif) written frame by frame as the timeline becomes final;
    `label` names the made frames' panel (module header)."""

    def __init__(self, path: Path, fps: float, force: bool, label: str):
        self.writer = VideoWriter(path, fps, force=force)
        self.labelled = path.suffix.lower() != MEASURED
        self.label = label
        self.timeline: Timeline | None = None
        self.truth: Truth | None = None
        self.header: np.ndarray | None = None  # (h, W, 3) label row of 2 or more panels

    def record_fit(self, fit: FitTransform) -> None:
        """Record where each panel's model pixels lie in the camera's frame (`FIT_TAG`), unless
        the fit left the frames as they were (then the file is as without it)."""
        if fit != IDENTITY:
            self.writer.metadata[FIT_TAG] = json.dumps(fit.to_dict())

    def follow(self, timeline: Timeline, truth: Truth | None = None) -> None:
        """Write `timeline`'s frames (S, T, H, W, 3) uint8 from now on; write those final now."""
        self.timeline, self.truth = timeline, truth
        samples, _, height, width, _ = timeline.video.shape
        names = [self.label] if samples == 1 else [f"sample {s + 1}" for s in range(samples)]
        names = ["truth", *names] if truth is not None else names
        if self.labelled and len(names) > 1:
            self.header = panel_labels(names, height, width)
        self.update()

    def update(self) -> None:
        """Write the frames that became final since the last call."""
        assert self.timeline is not None
        start = self.timeline.taken
        frames = self.timeline.take_final()  # (S, F, H, W, 3)
        if frames.shape[1] == 0:
            return
        panels = list(frames)
        if self.truth is not None:
            panels.insert(0, self.truth.frames[start : start + frames.shape[1]])
        video = reduce(side_by_side, panels)  # (F, H, W', 3)
        if self.header is not None:
            header = np.broadcast_to(self.header, (len(video), *self.header.shape))
            video = np.concatenate([header, video], axis=1)
        self.writer.write(video)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.writer.__exit__(exc_type, exc, tb)


class GridOutput:
    """A .png grid of the whole result, written when the `with` block ends."""

    def __init__(self, path: Path, force: bool, every: int, label: str):
        check_png_target(path, force)
        self.path, self.force, self.every, self.label = path, force, every, label
        self.timeline: Timeline | None = None
        self.truth: Truth | None = None
        self.given: list[bool] = []

    def follow(self, timeline: Timeline, truth: Truth | None = None) -> None:
        self.timeline, self.truth, self.given = timeline, truth, list(timeline.known)

    def update(self) -> None:
        """Nothing to do until the end: a picture is written whole."""

    def rows(self) -> list[Row]:
        """given (if any), truth (if given), then one row per sample of the made frames."""
        assert self.timeline is not None
        video, given = self.timeline.video, self.given  # (S, T, H, W, 3)
        made = [not k for k in given]
        rows = [Row("given", video[0], given)] if any(given) else []
        if self.truth is not None:
            exists = [i < self.truth.count for i in range(len(given))]
            rows.append(Row("truth", self.truth.frames, exists))
        samples = len(video)
        for s in range(samples):
            label = self.label if samples == 1 else f"{self.label} {s + 1}"
            rows.append(Row(label, video[s], made))
        return rows

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            assert self.timeline is not None
            columns = shown_frames(self.given, self.every)
            write_png(self.path, grid(self.rows(), columns), force=self.force)


def is_bag_target(path: Path) -> bool:
    """Whether `-o` names a robot log: a .mcap file, or a rosbag2 folder (no suffix)."""
    return path.suffix.lower() == ".mcap" or not path.suffix


class BagOutput:
    """A prediction's made frames as a robot log, written whole when the `with` block ends:
    `at` gives, before then, the camera `topic`, the origin (last given frame's stamp), each
    made frame's stamp, the camera's frame_id and the made frames' intrinsics `k` (a CameraInfo,
    `bag_writer`); `input_bag` is copied beside them if given."""

    def __init__(self, path: Path, force: bool, input_bag: Path | None = None):
        refuse_existing(path, force)
        self.path, self.force, self.input_bag = path, force, input_bag
        self.timeline: Timeline | None = None
        self.made: list[bool] = []
        self.topic, self.origin_ns, self.stamps_ns, self.frame_id = "", 0, (), ""
        self.k: np.ndarray | None = None

    def at(self, topic: str, origin_ns: int, stamps_ns, frame_id: str, k=None) -> None:
        self.topic, self.origin_ns, self.frame_id, self.k = topic, origin_ns, frame_id, k
        self.stamps_ns = tuple(int(s) for s in stamps_ns)

    def follow(self, timeline: Timeline, truth: Truth | None = None) -> None:
        self.timeline, self.made = timeline, [not k for k in timeline.known]  # before filling

    def update(self) -> None:
        """Nothing to do until the end: the log is written whole."""

    def __enter__(self) -> BagOutput:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            assert self.timeline is not None
            frames = self.timeline.video[:, self.made]  # (S, n, H, W, 3)
            forecast = Forecast(self.origin_ns, self.stamps_ns, frames)
            write_forecast_bag(
                self.path,
                self.topic,
                [forecast],
                frame_id=self.frame_id,
                input_bag=self.input_bag,
                force=self.force,
                k=self.k,
            )


class Output:
    """`Output(path, fps, force, every, label)` as a `with` block: a VideoOutput or GridOutput
    by suffix (`every`: the grid's frame step; `label`: the name of the made rows)."""

    def __init__(self, path: Path, fps: float, force: bool, every: int = 1, label: str = ""):
        suffix = path.suffix.lower()
        if suffix not in SUFFIXES:
            raise VideoError(
                f"cannot write {path}: unknown suffix {suffix!r}; use one of {', '.join(SUFFIXES)}"
            )
        if suffix == PICTURE:
            self.target: VideoOutput | GridOutput = GridOutput(path, force, every, label)
        elif every != 1:
            raise VideoError(
                f"a frame step (--every {every}) applies to a .png grid, not to {path.name}; "
                "drop it or write a .png"
            )
        else:
            self.target = VideoOutput(path, fps, force, label)

    def __enter__(self) -> VideoOutput | GridOutput:
        return self.target

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.target.__exit__(exc_type, exc, tb)
