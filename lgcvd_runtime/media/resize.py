"""The one resize: how a camera frame becomes the model's square frame, and the way back.

Camera frames (`api.Model.fit`), decoded videos (`video.iter_frames(size=...)`) and training data
(`lgcvd_train.data`) all go through `fit_frame`, so training sees the pixels serving sees. A
`framing.Framing` says how: its region of interest (x, y, w, h) is cut out first, then the fit
makes it square: "crop" takes the centre square (`center_crop_resize`, the rule of every model
before fits existed), "pad" centres it on a square of the grey `PAD` (the whole view is kept),
"stretch" scales each axis on its own. Resampling is by area. `fit_transform` gives the inverse
as data: where each model pixel lies in the camera's frame. Pure numpy: this module knows no
video container, so the training side imports it without PyAV.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.framing import FITS, Framing

# Padding is the absent frame U (0 in [-1, 1]; `conditioning.to_uint8` rounds 127.5 to 128): the
# value the model already reads as "nothing here", and one that a dark scene edge cannot continue.
PAD = 128
CROP = Framing()  # the whole frame, centre-cropped: the framing of models made before fits


@dataclass(frozen=True)
class FitTransform:
    """Model pixels -> camera pixels: x = scale_x * u + offset_x, y = scale_y * v + offset_y, in
    continuous coordinates where pixel i covers [i, i + 1) (its centre is i + 0.5) on both sides.
    A padded model pixel maps outside the camera's frame."""

    scale_x: float
    scale_y: float
    offset_x: float
    offset_y: float

    def to_camera(self, u, v):
        """Model coordinates (u, v) -> camera coordinates (x, y); arrays work element-wise."""
        return self.scale_x * u + self.offset_x, self.scale_y * v + self.offset_y

    def matrix(self) -> np.ndarray:
        """The same map as a 3x3 homogeneous matrix A: (x, y, 1) = A (u, v, 1)."""
        return np.array(
            [[self.scale_x, 0.0, self.offset_x], [0.0, self.scale_y, self.offset_y], [0, 0, 1.0]]
        )

    def intrinsics(self, k: np.ndarray) -> np.ndarray:
        """The model frames' 3x3 intrinsic matrix, given the camera's `k` (ROS and OpenCV put
        pixel centres at whole numbers, so the centre half-pixel shifts in): A_c^-1 k."""
        centred = self.matrix()
        centred[:2, 2] += 0.5 * np.array([self.scale_x, self.scale_y]) - 0.5
        return np.linalg.solve(centred, np.asarray(k, dtype=np.float64))

    def to_dict(self) -> dict[str, float]:
        return {
            "scale_x": self.scale_x,
            "scale_y": self.scale_y,
            "offset_x": self.offset_x,
            "offset_y": self.offset_y,
        }


@lru_cache(maxsize=16)
def _area_weights(src: int, dst: int) -> np.ndarray:
    """(dst, src) matrix: output pixel i averages source pixels by their overlap with its span."""
    edges = np.arange(dst + 1) * (src / dst)  # output pixel i spans [edges[i], edges[i+1])
    lo = np.maximum(edges[:-1, None], np.arange(src)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, src + 1)[None, :])
    weights = np.clip(hi - lo, 0.0, None)
    return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _resample(region: np.ndarray, rows_w: np.ndarray, cols_w: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 -> (out_h, out_w, 3) float32: rows by `rows_w` (out_h, h), then columns
    by `cols_w` (out_w, w)."""
    h, w, _ = region.shape
    rows = rows_w @ region.reshape(h, w * 3).astype(np.float32)  # (out_h, w * 3)
    return cols_w @ rows.reshape(len(rows_w), w, 3)  # per output row: (out_w, w) @ (w, 3)


def _to_uint8(out: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def center_crop_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): crop the centre square, then area-resample it."""
    h, w, _ = frame.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top : top + side, left : left + side]  # (side, side, 3)
    if side == size:
        return np.ascontiguousarray(square)
    weights = _area_weights(side, size)  # (size, side)
    return _to_uint8(_resample(square, weights, weights))


def _pad_resize(region: np.ndarray, size: int) -> np.ndarray:
    """Centre (h, w, 3) on a square of PAD and area-resample it, without building the square:
    the weights of the content's rows and columns, and PAD for the rest of each output's area."""
    h, w, _ = region.shape
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    rows_w = _area_weights(side, size)[:, top : top + h]  # (size, h): rows of the content
    cols_w = _area_weights(side, size)[:, left : left + w]  # (size, w)
    covered = rows_w.sum(axis=1)[:, None] * cols_w.sum(axis=1)[None, :]  # (size, size)
    return _to_uint8(_resample(region, rows_w, cols_w) + PAD * (1.0 - covered)[..., None])


def check_roi(roi: tuple[int, int, int, int], width: int, height: int) -> None:
    """A one-line LgcvdError unless the region (x, y, w, h) lies inside a width x height frame."""
    x, y, w, h = roi
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > width or y + h > height:
        raise LgcvdError(
            f"region of interest x,y,w,h = {x},{y},{w},{h} is not inside the {width}x{height} "
            "frame; pass a region of at least 1x1 pixel inside it (--roi X,Y,W,H)"
        )


def _check_fit(framing: Framing) -> None:
    if framing.fit not in FITS:
        raise LgcvdError(f"unknown fit {framing.fit!r}; use one of {', '.join(FITS)}")


def fit_frame(frame: np.ndarray, size: int, framing: Framing = CROP) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8 as `framing` says (see the module header)."""
    _check_fit(framing)
    if framing.roi is not None:
        check_roi(framing.roi, frame.shape[1], frame.shape[0])
        x, y, w, h = framing.roi
        frame = frame[y : y + h, x : x + w]
    if framing.fit == "crop":
        return center_crop_resize(frame, size)
    if framing.fit == "pad":
        return _pad_resize(frame, size)
    h, w, _ = frame.shape
    return _to_uint8(_resample(frame, _area_weights(h, size), _area_weights(w, size)))


def fit_transform(height: int, width: int, size: int, framing: Framing = CROP) -> FitTransform:
    """Where the model pixels of a fitted height x width camera frame come from (`FitTransform`)."""
    _check_fit(framing)
    x, y, w, h = framing.roi if framing.roi is not None else (0, 0, width, height)
    if framing.roi is not None:
        check_roi(framing.roi, width, height)
    if framing.fit == "stretch":
        return FitTransform(w / size, h / size, float(x), float(y))
    side = min(w, h) if framing.fit == "crop" else max(w, h)
    return FitTransform(
        side / size, side / size, float(x + _start(w, side)), float(y + _start(h, side))
    )


def _start(extent: int, side: int) -> int:
    """Where a centred square of `side` starts along an axis of `extent` pixels: inside it for a
    crop, before it (negative, in the padding) for a pad; rounded as the fits round."""
    return (extent - side) // 2 if extent >= side else -((side - extent) // 2)
