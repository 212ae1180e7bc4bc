"""Reading video files with PyAV: frames decoded only as they are needed.

`iter_frames` decodes one frame at a time (so a caller stops decoding as soon as it has what it
needs), `iter_stamped_frames` gives each frame's presentation time with it (its pts in ns, else
index / fps), `read_frames` collects a clip, `probe` describes a file without decoding it.
Besides files, these read live sources (`is_stream`): a URL (rtsp://, udp://, tcp://, http://...)
passed to PyAV as given, or a device (/dev/video0, read as v4l2), waiting at most `timeout`
seconds for it to open or send data; `LiveSource` reads one as its frames arrive. Frames are
uint8 RGB (H, W, 3), turned upright where the file carries a display rotation (phone clips: a
display matrix in the stream's side data, read per frame); `size` fits them to the model's square
as a `framing` says (`resize.fit_frame`; by default the centre crop). Writing is `writer.py`,
pictures `pictures.py`.

Every bad input becomes a one-line `VideoError` naming the file and the fix; PyAV errors never
escape. This module knows nothing about models; it must not import torch or onnx.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lgcvd_runtime.errors import VideoError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import CROP, fit_frame

MAX_SIDE = 8192  # largest frame side we decode, in pixels
TIMEOUT_S = 5.0  # seconds a live source may take to open or to send data


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header says (frames is None where the container does not know);
    width and height are the stored frames', before any display rotation."""

    frames: int | None
    fps: float | None
    width: int
    height: int
    codec: str


# ----------------------------------------------------------------------------- reading


def is_stream(source: str | os.PathLike[str]) -> bool:
    """Whether `source` is a live source, not a file: a URL (scheme://...) or a device (/dev/)."""
    text = os.fspath(source)
    return "://" in text or text.startswith("/dev/")


def _open_container(source: str | os.PathLike[str], timeout: float) -> av.container.InputContainer:
    """PyAV's container of a file (checked first), URL or device (v4l2 for /dev/video*)."""
    text = os.fspath(source)
    live = is_stream(text)
    if not live:
        path = Path(text)
        if not path.exists():
            raise VideoError(f"{path} does not exist; check the path")
        if not path.is_file():
            raise VideoError(f"{path} is not a file; pass a video file")
    device = "v4l2" if text.startswith("/dev/video") else None
    try:
        return av.open(text, format=device, timeout=timeout if live else None)
    except UnicodeDecodeError:  # PyAV reads the container's metadata as UTF-8
        raise _corrupt(text, "its metadata is not UTF-8 text") from None
    except av.ExitError:
        raise VideoError(
            f"{text} sent nothing in {timeout:g} s; check the address and that the stream is "
            "running"
        ) from None
    except av.FFmpegError as err:
        if live:
            raise VideoError(
                f"cannot open {text} ({err.strerror}); check the address and that the stream is "
                "running"
            ) from None
        raise VideoError(
            f"{text} is not a readable video ({err.strerror}); pass a complete video file "
            "(.mp4, .mkv, .avi, .gif, ...)"
        ) from None


@contextlib.contextmanager
def _open_video(
    source: str | os.PathLike[str], timeout: float = TIMEOUT_S
) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open `source` and yield (container, first video stream), checked; closes on exit."""
    with _open_container(source, timeout) as container:
        if not container.streams.video:
            raise VideoError(f"{source} has no video stream; pass a video file")
        stream = container.streams.video[0]
        if not (0 < stream.width <= MAX_SIDE and 0 < stream.height <= MAX_SIDE):
            raise VideoError(
                f"{source} has frames of {stream.width}x{stream.height} pixels; lgcvd reads 1 to "
                f"{MAX_SIDE} pixels per side: resize the video first"
            )
        yield container, stream


def _expected_frames(container: av.container.InputContainer, stream: av.VideoStream) -> int | None:
    """Frame count from the header: the index, else the stream's (or sole stream's) duration."""
    if stream.frames > 0:
        return stream.frames
    rate = stream.average_rate
    if rate is None:
        return None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None and len(container.streams) == 1:
        seconds = container.duration / av.time_base
    else:
        return None
    return round(seconds * float(rate))


def _corrupt(path: str | os.PathLike[str], detail: str) -> VideoError:
    return VideoError(f"{path} is truncated or corrupt ({detail}); re-encode or replace the file")


def upright(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, turned as its display matrix says: PyAV's
    `rotation` is the counter-clockwise angle a player turns the stored picture by, rounded here
    to quarter turns (np.rot90 turns counter-clockwise). Flips in the matrix are not applied."""
    image = frame.to_ndarray(format="rgb24")  # (H, W, 3) as stored
    turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def iter_frames(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    size: int | None = None,
    framing: Framing = CROP,
) -> Iterator[np.ndarray]:
    """Yield frames start, start+1, ... of a video as upright (H, W, 3) uint8 RGB, decoding
    lazily.

    With `size`, each frame is fitted to (size, size, 3) as `framing` says (`resize.fit_frame`).
    Raises VideoError for a missing, unreadable, truncated or corrupt file, or a `start` beyond
    the end (only once the generator is exhausted: a caller that stops early decodes no more).
    """
    for _, image in iter_stamped_frames(path, start=start, size=size, framing=framing):
        yield image


def _stamp_ns(frame: av.VideoFrame, stream: av.VideoStream, index: int) -> int:
    """A frame's presentation time in ns: pts x time_base, exact; else index / average rate."""
    if frame.pts is not None and frame.time_base is not None:
        return int(frame.pts * frame.time_base * 1_000_000_000)
    rate = stream.average_rate or 1
    return int(index / rate * 1_000_000_000)


def _decode(
    source: str | os.PathLike[str],
    container: av.container.InputContainer,
    stream: av.VideoStream,
    *,
    timeout: float,
    start: int = 0,
    size: int | None = None,
    framing: Framing = CROP,
    lost: Callable[[], None] | None = None,
) -> Generator[tuple[int, np.ndarray], None, int]:
    """The one decode loop of files and live sources: (stamp in ns, upright frame, fitted to
    `size` as `framing` says where given) for frames start, start+1, ... of `stream`; returns
    how many frames it decoded. A packet that does not decode is skipped and `lost()` called
    where given (a live source: a lost network packet), else the file is corrupt. A source that
    sends nothing for `timeout` s, or fails to read, ends it in a one-line VideoError."""
    decoded = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                if lost is None:
                    raise
                lost()
                continue
            for frame in frames:
                decoded += 1
                if decoded > start:
                    image = upright(frame)  # (H, W, 3)
                    fitted = image if size is None else fit_frame(image, size, framing)
                    yield _stamp_ns(frame, stream, decoded - 1), fitted
    except av.ExitError:
        raise VideoError(
            f"{source} sent nothing for {timeout:g} s; check that the stream is running"
        ) from None
    except av.FFmpegError as err:
        if lost is not None:
            raise VideoError(f"reading {source} failed ({err.strerror})") from None
        detail = f"decoding failed after {plural(decoded, 'frame')}: {err.strerror}"
        raise _corrupt(source, detail) from None
    return decoded


def iter_stamped_frames(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    size: int | None = None,
    framing: Framing = CROP,
) -> Iterator[tuple[int, np.ndarray]]:
    """(presentation time in ns, frame) for frames start, start+1, ... as `iter_frames`."""
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    with _open_video(path) as (container, stream):
        decoded = yield from _decode(
            path, container, stream, timeout=TIMEOUT_S, start=start, size=size, framing=framing
        )
        expected = _expected_frames(container, stream)
        if expected is not None and decoded < expected - 1:  # 1 frame of slack for rounding
            raise _corrupt(path, f"decoded {decoded} of the {expected} frames its header lists")
    if decoded == 0:
        raise VideoError(f"{path} has no frames; pass a video with frames")
    if start >= decoded:
        raise VideoError(
            f"{path} has {plural(decoded, 'frame')}; start frame {start} is beyond the end: "
            f"pass a start below {decoded}"
        )


def read_frames(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    count: int | None = None,
    size: int | None = None,
    framing: Framing = CROP,
) -> np.ndarray:
    """Frames [start, start+count) (all from start if count is None) as (T, H, W, 3) uint8 RGB.

    Decoding stops once start+count frames are read. Raises VideoError as `iter_frames` does,
    and when the video has fewer than `count` frames from `start`.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    frames: list[np.ndarray] = []
    with contextlib.closing(iter_frames(path, start=start, size=size, framing=framing)) as stream:
        for frame in stream:
            frames.append(frame)
            if len(frames) == count:
                break
    if count is not None and len(frames) < count:
        raise VideoError(
            f"{path} has {plural(len(frames), 'frame')} from frame {start}; the task needs {count}"
        )
    if len({frame.shape for frame in frames}) > 1:
        raise VideoError(f"{path} changes frame size mid-stream; pass a size to resize every frame")
    return np.stack(frames)  # (T, H, W, 3)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video from its header, without decoding frames."""
    with _open_video(path) as (container, stream):
        rate = stream.average_rate
        return VideoInfo(
            frames=_expected_frames(container, stream),
            fps=None if rate is None else float(rate),
            width=stream.width,
            height=stream.height,
            codec=stream.codec_context.name,
        )


class LiveSource:
    """A file, URL or device read as its frames arrive (`lgcvd-run live`): iterate for (pts in
    ns, upright (H, W, 3) uint8 frame). A packet that does not decode (a lost network packet) is
    skipped and counted in `lost`; a source that sends nothing for `timeout` s ends in a
    VideoError. `rate`: the stream's frames per second, None where unknown."""

    def __init__(self, source: str | os.PathLike[str], timeout: float = TIMEOUT_S):
        self.source, self.timeout, self.lost = os.fspath(source), timeout, 0
        self._open = _open_video(source, timeout)
        self._container, self._stream = self._open.__enter__()
        rate = self._stream.average_rate
        self.rate = float(rate) if rate else None
        self.width, self.height = self._stream.width, self._stream.height

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        yield from _decode(
            self.source, self._container, self._stream, timeout=self.timeout, lost=self._lose
        )

    def _lose(self) -> None:
        self.lost += 1

    def close(self) -> None:
        self._open.__exit__(None, None, None)
