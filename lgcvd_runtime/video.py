"""Video files in and out, with PyAV (design.md Runtime "Streaming" and Data).

Reading: `iter_frames` decodes one frame at a time (so a caller stops decoding as soon as it has
what it needs), `read_frames` collects a clip, `probe` describes a file without decoding it.
Frames are uint8 RGB (H, W, 3); `size` center-crops to a square and area-resamples it.
Writing: `VideoWriter` encodes frames as they come into a temporary file beside the target and
renames it into place only when the `with` block ends normally (.mp4 H.264, .mkv lossless
FFV1, .gif, .png strip); `write_strip` and `side_by_side` build demo pictures.

Every bad input becomes a one-line `VideoError` naming the file and the fix; PyAV errors never
escape. This module knows nothing about models; it must not import torch or onnx.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from lgcvd_runtime.errors import VideoError
from lgcvd_runtime.files import refuse_existing

MAX_SIDE = 8192  # largest frame side we decode, in pixels
SEPARATOR = 255  # value of the 2-px lines between pictures in strips and side-by-side videos

# Output suffix -> (container format, codec, encoder pixel format).
_OUTPUTS = {
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".mkv": ("matroska", "ffv1", "bgr0"),  # lossless: frames read back bit-exactly
    ".gif": ("gif", "gif", "pal8"),
    ".png": ("png", "png", "rgb24"),  # all frames side by side in one picture
}
_MP4_FALLBACK = "mpeg4"  # when this PyAV build has no libx264; needs an explicit bit rate
_GIF_LEVELS = (6, 7, 6)  # uniform GIF palette: levels per R, G, B channel (252 colours)


@dataclass(frozen=True)
class VideoInfo:
    """What a video file's header says (frames is None where the container does not know)."""

    frames: int | None
    fps: float | None
    width: int
    height: int
    codec: str


# ----------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _open_video(path: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open `path` and yield (container, first video stream), checked; closes on exit."""
    if not path.exists():
        raise VideoError(f"{path} does not exist; check the path")
    if not path.is_file():
        raise VideoError(f"{path} is not a file; pass a video file")
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise VideoError(
            f"{path} is not a readable video ({err.strerror}); pass a complete video file "
            "(.mp4, .mkv, .avi, .gif, ...)"
        ) from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream; pass a video file")
        stream = container.streams.video[0]
        if not (0 < stream.width <= MAX_SIDE and 0 < stream.height <= MAX_SIDE):
            raise VideoError(
                f"{path} has frames of {stream.width}x{stream.height} pixels; lgcvd reads 1 to "
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


def _corrupt(path: Path, detail: str) -> VideoError:
    return VideoError(f"{path} is truncated or corrupt ({detail}); re-encode or replace the file")


@lru_cache(maxsize=16)
def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix: output pixel i averages source pixels by their overlap with its span."""
    edges = np.arange(dst + 1) * (src / dst)  # output pixel i spans [edges[i], edges[i+1])
    lo = np.maximum(edges[:-1, None], np.arange(src)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, src + 1)[None, :])
    weights = np.clip(hi - lo, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def center_crop_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): crop the centre square, then area-resample it."""
    h, w, _ = frame.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top : top + side, left : left + side]  # (side, side, 3)
    if side == size:
        return np.ascontiguousarray(square)
    weights = _area_weights(side, size)  # (size, side)
    rows = weights @ square.reshape(side, side * 3).astype(np.float32)  # (size, side * 3)
    out = weights @ rows.reshape(size, side, 3)  # per output row: (size, side) @ (side, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def iter_frames(
    path: str | os.PathLike[str], *, start: int = 0, size: int | None = None
) -> Iterator[np.ndarray]:
    """Yield frames start, start+1, ... of a video as (H, W, 3) uint8 RGB, decoding lazily.

    With `size`, each frame is center-cropped to a square and resampled to (size, size, 3).
    Raises VideoError for a missing, unreadable, truncated or corrupt file, or a `start` beyond
    the end (only once the generator is exhausted: a caller that stops early decodes no more).
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    path = Path(path)
    with _open_video(path) as (container, stream):
        decoded = 0
        try:
            for frame in container.decode(stream):
                decoded += 1
                if decoded > start:
                    image = frame.to_ndarray(format="rgb24")  # (H, W, 3)
                    yield image if size is None else center_crop_resize(image, size)
        except av.FFmpegError as err:
            raise _corrupt(
                path, f"decoding failed after {decoded} frames: {err.strerror}"
            ) from None
        expected = _expected_frames(container, stream)
        if expected is not None and decoded < expected - 1:  # 1 frame of slack for rounding
            raise _corrupt(path, f"decoded {decoded} of the {expected} frames its header lists")
    if decoded == 0:
        raise VideoError(f"{path} has no frames; pass a video with frames")
    if start >= decoded:
        raise VideoError(
            f"{path} has {decoded} frames; start frame {start} is beyond the end: "
            f"pass a start below {decoded}"
        )


def read_frames(
    path: str | os.PathLike[str],
    *,
    start: int = 0,
    count: int | None = None,
    size: int | None = None,
) -> np.ndarray:
    """Frames [start, start+count) (all from start if count is None) as (T, H, W, 3) uint8 RGB.

    Decoding stops once start+count frames are read. Raises VideoError as `iter_frames` does,
    and when the video has fewer than `count` frames from `start`.
    """
    if count is not None and count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    frames: list[np.ndarray] = []
    with contextlib.closing(iter_frames(path, start=start, size=size)) as stream:
        for frame in stream:
            frames.append(frame)
            if len(frames) == count:
                break
    if count is not None and len(frames) < count:
        raise VideoError(
            f"{path} has {len(frames)} frames from frame {start}; the task needs {count}"
        )
    if len({frame.shape for frame in frames}) > 1:
        raise VideoError(f"{path} changes frame size mid-stream; pass a size to resize every frame")
    return np.stack(frames)  # (T, H, W, 3)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video from its header, without decoding frames."""
    with _open_video(Path(path)) as (container, stream):
        rate = stream.average_rate
        return VideoInfo(
            frames=_expected_frames(container, stream),
            fps=None if rate is None else float(rate),
            width=stream.width,
            height=stream.height,
            codec=stream.codec_context.name,
        )


# ----------------------------------------------------------------------------- writing


def _check_target(path: Path, force: bool) -> None:
    refuse_existing(path, force)
    if not path.parent.is_dir():
        raise VideoError(f"folder {path.parent} does not exist; create it or choose another path")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (T, H, W, 3) uint8 -> (T, H, W, 3)."""
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames[None] if frames.ndim == 3 else frames


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column where a side is odd (yuv420p needs even sides)."""
    h, w, _ = frame.shape
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _gif_palette() -> np.ndarray:
    """(256, 4) ARGB palette: a uniform grid of _GIF_LEVELS colours, the rest unused black."""
    levels = [np.linspace(0, 255, n).round() for n in _GIF_LEVELS]
    grid = np.stack(np.meshgrid(*levels, indexing="ij"), axis=-1).reshape(-1, 3)  # (252, 3)
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255
    palette[: len(grid), 1:] = grid
    return palette


def _gif_frame(frame: np.ndarray) -> av.VideoFrame:
    """(H, W, 3) uint8 -> pal8 frame: each channel rounded to the nearest palette level."""
    index = np.zeros(frame.shape[:2], dtype=np.int64)
    for channel, n in enumerate(_GIF_LEVELS):
        level = np.rint(frame[..., channel].astype(np.float32) * ((n - 1) / 255))
        index = index * n + level.astype(np.int64)
    return av.VideoFrame.from_ndarray((index.astype(np.uint8), _gif_palette()), format="pal8")


def _png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> the bytes of a PNG file, with PyAV's png encoder."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    codec.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


class VideoWriter:
    """Write frames to `path` as they come; the file appears only when the `with` block succeeds.

    Format by suffix: .mp4 H.264 (libx264, yuv420p, odd sides padded by one repeated row or
    column; mpeg4 with a warning where libx264 is missing), .mkv FFV1 (lossless), .gif (252-colour
    uniform palette), .png (every frame side by side in one picture, written at close).
    `codec` names the encoder used.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 10, *, force: bool = False):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.force = force
        suffix = self.path.suffix.lower()
        if suffix not in _OUTPUTS:
            raise VideoError(
                f"cannot write {self.path}: unknown suffix {suffix!r}; use one of "
                f"{', '.join(_OUTPUTS)}"
            )
        _check_target(self.path, force)
        self._format, self.codec, self._pix_fmt = _OUTPUTS[suffix]
        if suffix == ".mp4" and "libx264" not in av.codecs_available:
            self.codec = _MP4_FALLBACK
            warnings.warn(
                f"this PyAV build has no libx264: writing {self.path} as MPEG-4 Part 2 (mpeg4)",
                stacklevel=2,
            )
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=suffix
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._frames: list[np.ndarray] = []  # PNG strip frames, kept until close
        self._shape: tuple[int, ...] | None = None
        self._count = 0

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open_stream(self, height: int, width: int) -> av.VideoStream:
        self._container = av.open(str(self._tmp), "w", format=self._format)
        options = {"crf": "18"} if self.codec == "libx264" else {}
        stream = self._container.add_stream(self.codec, rate=self.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, self._pix_fmt
        if self.codec == _MP4_FALLBACK:
            stream.bit_rate = max(1_000_000, int(width * height * self.fps / 4))
        return stream

    def _encode(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) frame into the open stream."""
        if self._pix_fmt == "yuv420p":
            frame = _pad_even(frame)
        if self._stream is None:
            self._stream = self._open_stream(frame.shape[0], frame.shape[1])
        if self._pix_fmt == "pal8":
            av_frame = _gif_frame(frame)
        else:
            av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        assert self._container is not None
        self._container.mux(self._stream.encode(av_frame))

    def write(self, frames: np.ndarray) -> None:
        """Append (H, W, 3) or (T, H, W, 3) uint8 RGB frames; every frame must have one size."""
        for frame in _check_frames(frames):
            if self._shape is None:
                self._shape = frame.shape
            elif frame.shape != self._shape:
                raise ValueError(f"frame size changed from {self._shape} to {frame.shape}")
            if self._format == "png":
                self._frames.append(frame)
            else:
                self._encode(frame)
            self._count += 1

    def close(self) -> None:
        """Finish the file and rename it to `path`; on any failure nothing appears at `path`."""
        try:
            if self._count == 0:
                raise VideoError(f"no frames were written to {self.path}; nothing was saved")
            if self._format == "png":
                self._tmp.write_bytes(_png_bytes(np.concatenate(self._frames, axis=1)))
            else:
                assert self._container is not None and self._stream is not None
                self._container.mux(self._stream.encode(None))
                self._container.close()
            _check_target(self.path, self.force)  # it may have appeared while we wrote
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written so far: close the encoder and delete the temporary file."""
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
        self._tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- pictures


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two (T, H, W, 3) videos -> (T, H, Wa + 2 + Wb, 3), with a 2-px separator between them."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"videos need equal frames and height, got {a.shape} and {b.shape}")
    line = np.full((*a.shape[:2], 2, 3), SEPARATOR, dtype=np.uint8)
    return np.concatenate([a, line, b], axis=2)


def write_strip(path: str | os.PathLike[str], rows: list[np.ndarray], force: bool = False) -> None:
    """Write a PNG grid: row r holds the frames of rows[r] (T_r, H, W, 3) left to right.

    Rows are separated by 2-px lines; shorter rows are padded with the separator colour.
    """
    if Path(path).suffix.lower() != ".png":
        raise VideoError(f"cannot write {path}: a strip is a .png file; use a .png path")
    strips = [np.concatenate(list(row), axis=1) for row in rows]  # each (H, T_r * W, 3)
    width = max(strip.shape[1] for strip in strips)
    pieces: list[np.ndarray] = []
    for strip in strips:
        if pieces:
            pieces.append(np.full((2, width, 3), SEPARATOR, dtype=np.uint8))
        pad = ((0, 0), (0, width - strip.shape[1]), (0, 0))
        pieces.append(np.pad(strip, pad, constant_values=SEPARATOR))
    with VideoWriter(path, force=force) as writer:
        writer.write(np.concatenate(pieces, axis=0))  # (R * H + 2 (R - 1), width, 3)
