"""Writing video files with PyAV: `VideoWriter`, fed a window at a time.

Frames are encoded as they come into a hidden temporary file beside the target
(`files.create_temporary`), renamed into place with the umask's permissions only when the `with`
block ends normally; on an error, Ctrl-C or SIGTERM the temporary file is deleted. Formats by
suffix: .mp4 H.264 (for sharing; lossy, never for measurement), .mkv FFV1 (lossless: read back
bit-exactly, the format to measure on), .gif (one adaptive 256-colour palette for the whole clip,
FFmpeg's palettegen + paletteuse through a PyAV filter graph; for looking at). PNG pictures are
`pictures.py`. `metadata`, set before the first frame, becomes container tags (.mkv; .mp4 with
movflags=use_metadata_tags, only when there are tags, so other files stay byte for byte as
before; a GIF holds none). Bad input or an encoder failure is a one-line `VideoError`. This module knows
nothing about models; it must not import torch or onnx.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from lgcvd_runtime.errors import OutputError, VideoError
from lgcvd_runtime.files import create_temporary, publish, refuse_existing

# Output suffix -> (container format, codec, encoder pixel format).
OUTPUTS = {
    ".mp4": ("mp4", "libx264", "yuv420p"),
    ".mkv": ("matroska", "ffv1", "bgr0"),  # lossless: frames read back bit-exactly
    ".gif": ("gif", "gif", "pal8"),
}
_MP4_FALLBACK = "mpeg4"  # when this PyAV build has no libx264; needs an explicit bit rate
# One palette from every frame's colours, no dithering: measured on the demo clip and two real
# videos it has the lowest grey-level error of FFmpeg's dithering modes (docs: README, GIF).
_PALETTEGEN, _PALETTEUSE = "stats_mode=full", "dither=none"


def check_target(path: Path, force: bool) -> None:
    """An output may be written at `path`: its folder exists, no folder is in the way (not even
    with force: a file never replaces a folder), and, without force, nothing is there."""
    if path.is_dir():
        raise OutputError(f"{path} is a folder; choose a file name for the output")
    refuse_existing(path, force)
    if not path.parent.is_dir():
        raise OutputError(f"folder {path.parent} does not exist; create it or choose another path")


def frame_rate(fps: float) -> Fraction:
    """`fps` as the exact fraction written to the file (denominator at most 1001, as in
    30000/1001); a rate that is not finite or rounds to 0 is a VideoError."""
    rate = Fraction(fps).limit_denominator(1001) if math.isfinite(fps) else Fraction(0)
    if rate <= 0:
        raise VideoError(
            f"frame rate {fps} is not a positive number of frames per second; "
            "pass --fps such as 10 or 29.97"
        )
    return rate


def _check_frames(frames: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (T, H, W, 3) uint8 -> (T, H, W, 3)."""
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames[None] if frames.ndim == 3 else frames


def _pad_even(frame: np.ndarray) -> np.ndarray:
    """Repeat the last row / column where a side is odd (yuv420p needs even sides)."""
    h, w, _ = frame.shape
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class _GifPalette:
    """rgb24 frames in, pal8 frames out: palettegen sees every frame, then paletteuse maps each
    to the one palette; frames come out only once `finish` has been called."""

    def __init__(self, width: int, height: int, rate: Fraction):
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(
            width=width, height=height, format="rgb24", time_base=1 / rate
        )
        split = self.graph.add("split")
        palette = self.graph.add("palettegen", _PALETTEGEN)
        use = self.graph.add("paletteuse", _PALETTEUSE)
        sink = self.graph.add("buffersink")
        source.link_to(split)
        split.link_to(palette, 0, 0)
        split.link_to(use, 1, 0)  # the frames ...
        palette.link_to(use, 0, 1)  # ... and their palette
        use.link_to(sink)
        self.graph.configure()
        self.pts = 0

    def push(self, frame: av.VideoFrame) -> None:
        frame.pts = self.pts
        self.pts += 1
        self.graph.push(frame)

    def finish(self) -> list[av.VideoFrame]:
        self.graph.push(None)
        frames = []
        with contextlib.suppress(av.EOFError, av.BlockingIOError):
            while True:
                frames.append(self.graph.pull())
        return frames


class VideoWriter:
    """Write frames to `path` as they come; the file appears only when the `with` block succeeds.

    Format by suffix (module header); .mp4 pads odd sides by one repeated row or column and
    falls back to mpeg4 with a warning where libx264 is missing. `codec` names the encoder used.
    The target is checked (suffix, folder, existing file, frame rate) when the writer is made,
    so a caller can make it before any slow work.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 10, *, force: bool = False):
        self.path = Path(path)
        self.fps = frame_rate(fps)
        self.force = force
        suffix = self.path.suffix.lower()
        if suffix not in OUTPUTS:
            raise VideoError(
                f"cannot write {self.path}: unknown suffix {suffix!r}; use one of "
                f"{', '.join(OUTPUTS)}"
            )
        check_target(self.path, force)
        self._format, self.codec, self._pix_fmt = OUTPUTS[suffix]
        if suffix == ".mp4" and "libx264" not in av.codecs_available:
            self.codec = _MP4_FALLBACK
            warnings.warn(
                f"this PyAV build has no libx264: writing {self.path} as MPEG-4 Part 2 (mpeg4)",
                stacklevel=2,
            )
        self._tmp = create_temporary(self.path)
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._gif: _GifPalette | None = None
        self._shape: tuple[int, ...] | None = None
        self._count = 0
        self.metadata: dict[str, str] = {}  # container tags, set before the first frame

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
        tags = {"movflags": "use_metadata_tags"} if self.metadata and self._format == "mp4" else {}
        self._container = av.open(str(self._tmp), "w", format=self._format, options=tags)
        self._container.metadata.update(self.metadata)
        options = {"crf": "18"} if self.codec == "libx264" else {}
        stream = self._container.add_stream(self.codec, rate=self.fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, self._pix_fmt
        if self.codec == _MP4_FALLBACK:
            stream.bit_rate = max(1_000_000, int(width * height * self.fps / 4))
        if self._pix_fmt == "pal8":
            self._gif = _GifPalette(width, height, self.fps)
        return stream

    def _mux(self, frame: av.VideoFrame | None) -> None:
        assert self._container is not None and self._stream is not None
        self._container.mux(self._stream.encode(frame))

    def _encode(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) frame into the open stream (GIF: into the palette graph)."""
        if self._pix_fmt == "yuv420p":
            frame = _pad_even(frame)
        if self._stream is None:
            self._stream = self._open_stream(frame.shape[0], frame.shape[1])
        av_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if self._gif is not None:
            self._gif.push(av_frame)
        else:
            self._mux(av_frame)

    def write(self, frames: np.ndarray) -> None:
        """Append (H, W, 3) or (T, H, W, 3) uint8 RGB frames; every frame must have one size."""
        for frame in _check_frames(frames):
            if self._shape is None:
                self._shape = frame.shape
            elif frame.shape != self._shape:
                raise ValueError(f"frame size changed from {self._shape} to {frame.shape}")
            try:
                self._encode(frame)
            except av.FFmpegError as err:
                raise VideoError(f"cannot write {self.path} ({err.strerror})") from None
            self._count += 1

    def close(self) -> None:
        """Finish the file and rename it to `path`; on any failure nothing appears at `path`."""
        try:
            if self._count == 0:
                raise VideoError(f"no frames were written to {self.path}; nothing was saved")
            try:
                for frame in self._gif.finish() if self._gif is not None else []:
                    self._mux(frame)
                self._mux(None)
                assert self._container is not None
                self._container.close()
            except av.FFmpegError as err:
                raise VideoError(f"cannot write {self.path} ({err.strerror})") from None
            check_target(self.path, self.force)  # it may have appeared while we wrote
            publish(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything written so far: close the encoder and delete the temporary file."""
        if self._container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
        self._tmp.unlink(missing_ok=True)
