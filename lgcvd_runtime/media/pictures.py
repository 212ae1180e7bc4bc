"""Pictures a person can look at: labelled grids of frames, side-by-side videos, PNG files.

`grid` lays out rows of frames on one time axis: one column per shown frame, numbered above,
each row labelled on the left (given, truth, prediction, one row per sample), empty where a row
has no frame at that time, and wrapped into bands when a clip is long. `shown_frames` is the one
rule for which frames a frame step keeps. Labels are drawn with a built-in 5x7 pixel font (no
font files or imaging package needed); `panel_labels` is the label row over side-by-side video
panels. `write_png` writes a picture like every other output: temporary file, then rename.
Pure numpy plus PyAV's PNG encoder; nothing about models here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import reduce
from pathlib import Path

import av
import numpy as np

from lgcvd_runtime.errors import VideoError
from lgcvd_runtime.files import create_temporary, publish
from lgcvd_runtime.media.writer import check_target

SEPARATOR = 255  # value of the 2-px lines between pictures in side-by-side videos
GAP = 2  # px between cells of a grid
GRID_WIDTH = 1280  # px a grid wraps at (more only when a single column needs it)
BACKGROUND, INK, EMPTY = 255, 0, 224  # grey levels: page, text, a cell with no frame
PICTURE = ".png"  # the suffix of a picture

# 5x7 glyphs: per row one base-32 digit whose 5 bits are the pixels, leftmost the highest.
_FONT = {
    "a": "00e1fhf", "b": "ggmphhu", "c": "00egghe", "d": "11djhhf", "e": "00ehvge",
    "f": "698s888", "g": "0fhhf1e", "h": "ggmphhh", "i": "40c444e", "j": "20622ic",
    "k": "ggikoki", "l": "c44444e", "m": "00qllhh", "n": "00mphhh", "o": "00ehhhe",
    "p": "00uhugg", "q": "00djf11", "r": "00mpggg", "s": "00ege1u", "t": "88s8896",
    "u": "00hhhjd", "v": "00hhha4", "w": "00hhlla", "x": "00ha4ah", "y": "00hhf1e",
    "z": "00v248v", "0": "ehjlphe", "1": "4c4444e", "2": "eh1248v", "3": "v2421he",
    "4": "26aiv22", "5": "vgu11he", "6": "68guhhe", "7": "v124888", "8": "ehhehhe",
    "9": "ehhf12c", "-": "000v000", "=": "00v0v00", " ": "0000000",
}  # fmt: skip
_GLYPH_W, _GLYPH_H = 5, 7


def text(label: str, scale: int = 1) -> np.ndarray:
    """`label` (letters, digits, space, '-', '=') as an (7 s, 6 s len - s) bool mask, s = scale;
    any other character is drawn as a space."""
    if not label:
        return np.zeros((_GLYPH_H * scale, 0), dtype=bool)
    glyphs = []
    for char in label.lower():
        rows = [int(d, 32) for d in _FONT.get(char, _FONT[" "])]
        bits = (np.array(rows)[:, None] >> np.arange(_GLYPH_W - 1, -1, -1)) & 1  # (7, 5)
        glyphs += [bits.astype(bool), np.zeros((_GLYPH_H, 1), dtype=bool)]
    mask = np.concatenate(glyphs[:-1], axis=1)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)


@dataclass(frozen=True)
class Row:
    """One row of a grid: `frames` (T, H, W, 3) on the grid's time axis; `shown[i]` says
    whether frame i belongs to this row (an empty cell where not)."""

    label: str
    frames: np.ndarray
    shown: Sequence[bool]


def shown_frames(known: Sequence[bool], every: int) -> list[int]:
    """The frames a grid shows with frame step `every`: every known (given) frame, and of the
    others every `every`-th counting from 1 (frames every-1, 2 every-1, ...: the last of 30
    with every=3 or 5)."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return [i for i, k in enumerate(known) if k or (i + 1) % every == 0]


def _cell_text(canvas: np.ndarray, label: str, top: int, left: int, height: int, scale: int):
    """Draw `label` in INK, vertically centred in rows top .. top+height of the canvas."""
    mask = text(label, scale)
    y = top + (height - mask.shape[0]) // 2
    region = canvas[y : y + mask.shape[0], left : left + mask.shape[1]]
    region[mask[: region.shape[0], : region.shape[1]]] = INK


def grid(rows: Sequence[Row], columns: Sequence[int], width: int = GRID_WIDTH) -> np.ndarray:
    """(height, width', 3) uint8 picture: `columns` (frame indices) left to right, numbered on a
    header line, one labelled line per row, wrapped into bands of at most `width` px."""
    if not rows or not columns:
        raise ValueError("a grid needs at least one row and one column")
    h, w = rows[0].frames.shape[1:3]
    scale = max(1, h // 48)
    labels = ["frame", *(row.label for row in rows)]
    label_w = max(text(label, scale).shape[1] for label in labels) + 2 * GAP * scale
    per_band = max(1, (width - label_w) // (w + GAP))
    header = (_GLYPH_H + 2) * scale
    band_h = header + len(rows) * (h + GAP)
    bands = [columns[i : i + per_band] for i in range(0, len(columns), per_band)]
    picture_w = label_w + min(per_band, len(columns)) * (w + GAP)
    canvas = np.full((len(bands) * (band_h + GAP) - GAP, picture_w, 3), BACKGROUND, np.uint8)
    for b, band in enumerate(bands):
        top = b * (band_h + GAP)
        _cell_text(canvas, "frame", top, GAP * scale, header, scale)
        for c, index in enumerate(band):
            _cell_text(canvas, str(index), top, label_w + c * (w + GAP), header, scale)
        for r, row in enumerate(rows):
            y = top + header + r * (h + GAP)
            _cell_text(canvas, row.label, y, GAP * scale, h, scale)
            for c, index in enumerate(band):
                x = label_w + c * (w + GAP)
                shown = row.shown[index]
                canvas[y : y + h, x : x + w] = row.frames[index] if shown else EMPTY
    return canvas


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two (T, H, W, 3) videos -> (T, H, Wa + 2 + Wb, 3), with a 2-px separator between them."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"videos need equal frames and height, got {a.shape} and {b.shape}")
    line = np.full((*a.shape[:2], 2, 3), SEPARATOR, dtype=np.uint8)
    return np.concatenate([a, line, b], axis=2)


def panel_labels(labels: Sequence[str], height: int, width: int) -> np.ndarray:
    """The label row above `side_by_side` panels of (height, width) px: (10 s, P (width + 2) - 2,
    3) uint8, s = the grid's text scale; each label in INK at its panel's left, cut at the
    panel's right edge, on BACKGROUND (the separators' grey as well)."""
    scale = max(1, height // 48)
    cells = []
    for label in labels:
        cell = np.full((1, (_GLYPH_H + 3) * scale, width, 3), BACKGROUND, np.uint8)
        _cell_text(cell[0], label, 0, GAP * scale, cell.shape[1], scale)
        cells.append(cell)
    return reduce(side_by_side, cells)[0]


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> the bytes of a PNG file, with PyAV's png encoder."""
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = image.shape[1], image.shape[0], "rgb24"
    codec.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def check_png_target(path: Path, force: bool) -> None:
    """A picture may be written at `path`: a .png name in an existing folder, free or forced."""
    if path.suffix.lower() != PICTURE:
        raise VideoError(
            f"cannot write {path}: a picture is a {PICTURE} file; use a {PICTURE} path"
        )
    check_target(path, force)


def write_png(path: str | os.PathLike[str], image: np.ndarray, force: bool = False) -> None:
    """Write an (H, W, 3) uint8 picture to `path` (.png) through a temporary file."""
    path = Path(path)
    check_png_target(path, force)
    data = png_bytes(image)
    tmp = create_temporary(path)
    try:
        tmp.write_bytes(data)
        check_target(path, force)  # it may have appeared meanwhile
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
