"""Where `lgcvd-run predict` and `interpolate` take INPUT's frames from, and when they were taken:
a video or a bag's camera topic (`media.source`), at the model's frame period where it records
one (by stamp: the resampling and any break in the input's timeline are said once on stderr,
unless --quiet), with a robot-log output's stamps (`BagOutput`) and `lgcvd-run info BAG`.
INPUT may also be a live source (`video.is_stream`: a URL, kept as given, or a device: `SOURCE`).
No engine package or torch is imported here.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime import api
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.outputs import BagOutput, Truth
from lgcvd_runtime.errors import LgcvdError, plural
from lgcvd_runtime.framing import Framing, frame_times
from lgcvd_runtime.media.bags import camera_matrix, camera_topic, image_topics, is_bag
from lgcvd_runtime.media.resize import FitTransform, fit_transform
from lgcvd_runtime.media.source import Clip, read_clip, stamped_frames
from lgcvd_runtime.media.stamps import describe_breaks, frame_period
from lgcvd_runtime.media.video import is_stream, probe

DEFAULT_FPS = 10.0


class Source(click.ParamType):
    """INPUT: a file or folder path (a Path), or a live source's URL kept as given (a Path would
    fold rtsp://host into rtsp:/host)."""

    name = "INPUT"

    def convert(self, value, param, ctx) -> Path | str:
        if isinstance(value, Path) or is_stream(value):
            return value
        return Path(value)


SOURCE = Source()


def stem(source: Path | str) -> str:
    """The name outputs take after INPUT: a file's stem, a URL's last path part (or host)."""
    if isinstance(source, Path):
        return source.stem
    parts = [part for part in source.split("://", 1)[-1].split("/") if part]
    return Path(parts[-1] if parts else "stream").stem.replace(":", "-") or "stream"


def period_ns(bundle: Path | None, server: str | None) -> int | None:
    """The model's frame period in ns from its manifest (None: unknown, or a server's model)."""
    if server is not None:
        return None
    return load_manifest(bundle or api.default_bundle(), verify=False).framing.period_ns


def input_fps(path: Path, fps: float | None, period: int | None) -> float:
    """--fps, else the model's rate (frames are taken at it), else the video's, else 10."""
    if fps is not None:
        return fps
    if period is not None:
        return 1e9 / period
    return DEFAULT_FPS if is_bag(path) else probe(path).fps or DEFAULT_FPS


def read_input(path, topic, start, count, need, size, period, framing: Framing, quiet) -> Clip:
    """`source.read_clip`, with its notes (resampling, breaks) on stderr unless quiet."""
    log = None if quiet else (lambda line: click.echo(line, err=True))
    clip = read_clip(
        path,
        topic,
        start=start,
        count=count,
        need=need,
        size=size,
        period_ns=period,
        log=log,
        framing=framing,
    )
    for note in () if quiet else clip.notes:
        click.echo(note if note.startswith("note:") else f"note: {note}", err=True)
    return clip


def truth_of(clip: Clip, count: int) -> Truth:
    """A clip's frames on an output's time axis of `count` frames, black after the clip ends."""
    frames = np.zeros((count, *clip.frames.shape[1:]), dtype=np.uint8)
    frames[: len(clip.frames)] = clip.frames[:count]
    return Truth(frames, min(len(clip.frames), count))


def bag_output(output: Path, input_path: Path, side_by_side, every, fps, with_input, force):
    """The robot-log output of `predict -o`, refusing in one line what a log does not hold."""
    if not is_bag(input_path):
        raise LgcvdError(
            f"{output} is a robot log, which needs a bag INPUT (its topic and stamps); "
            "write a video (.mp4, .mkv, .gif) or a .png"
        )
    for given, option in ((side_by_side, "--side-by-side"), (every != 1, "--every")):
        if given:
            raise LgcvdError(f"{option} applies to videos and pictures, not to {output}: drop it")
    if fps is not None:
        raise LgcvdError(f"--fps applies to videos; {output} is stamped by time: drop it")
    return BagOutput(output, force, input_path if with_input else None)


def forecast_stamps(
    path: Path, topic, given: np.ndarray, n: int, period: int | None, size: int, framing: Framing
):
    """(topic, origin, the n made frames' stamps, frame_id, K) of a robot-log output: the last
    given frame's stamp plus k model periods (the camera's own period where the model records
    none), and `forecast_k`."""
    step = period or frame_period(given)
    if step is None:
        raise LgcvdError(
            f"the model records no frame period and one given frame of {path} shows no camera "
            "period; pass -p 2 or more to stamp the forecast"
        )
    name, frame_id = camera_topic(path, topic)
    origin = int(given[-1])
    k = forecast_k(path, name, size, framing)
    return name, origin, frame_times(origin, 0, 1, n, int(step)), frame_id, k


def forecast_k(path: Path, topic: str, size: int, framing: Framing) -> np.ndarray:
    """The made frames' 3x3 intrinsics: the camera's K (its `camera_info`) through the fit
    (`FitTransform.intrinsics`); where the bag has no camera_info, the fit alone (the camera's K
    taken as the identity), which maps the camera's pixel coordinates to the model's."""
    camera = camera_matrix(path, topic)
    return input_fit(path, topic, size, framing).intrinsics(np.eye(3) if camera is None else camera)


def input_fit(path: Path, topic, size: int, framing: Framing) -> FitTransform:
    """Where the model pixels of INPUT's fitted frames lie in its own (its first frame's size)."""
    frames = stamped_frames(path, topic)
    with contextlib.closing(frames):
        height, width, _ = next(frames)[1].shape
    return fit_transform(height, width, size, framing)


def describe_bag(bag: Path) -> str:
    """`lgcvd-run info BAG`: per image topic its type, count, size, encoding, rate and breaks."""
    if not is_bag(bag):
        raise LgcvdError(
            f"{bag} is not a bag (a rosbag2 folder, .mcap or .bag); describe a bundle with --model"
        )
    lines = []
    for t in image_topics(bag):
        size = f"{t.width}x{t.height}" if t.width is not None else "size unknown"
        rate = f"{t.rate:.3g} Hz" if t.rate is not None else "rate unknown"
        stamps = ", times from log (zero header stamps)" if t.stamps_from_log else ""
        kind = t.msgtype.replace("/msg/", "/")
        lines.append(
            f"{t.topic}  {kind}, {plural(t.count, 'frame')}, {size}, {t.encoding}, {rate}{stamps}"
        )
        if t.breaks:
            lines.append(f"  {describe_breaks(t.breaks, t.count)}")
    return "\n".join(lines) or f"{bag} has no image topics"
