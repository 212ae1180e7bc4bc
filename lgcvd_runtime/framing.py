"""How camera frames become model frames, and when they were taken: what a model records about
its input besides the network's layout (`layout.ModelSpec`).

`Framing` travels in the checkpoint and the bundle (manifest key "framing", format version 2), so
that training and serving take frames the same way: `period_s` is the frame period the model
was trained at (None: unknown, frames are taken by index as before), `fit` how a frame of another
shape becomes the model's square (crop, pad or stretch) and `roi` the part of the camera's frame
used (x, y, w, h in the camera's pixels; None: all of it). A bundle of format version 1 has no
framing and reads as `Framing()`. `frame_times` is the one rule for when a made frame is: the
anchor frame's time plus whole model periods; `period_ns` the one rule for a period's whole ns. This module knows no file format, image library or
engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FITS = ("crop", "pad", "stretch")
PERIODS = (1e-9, 1e9)  # seconds: a frame period that whole ns stamps can follow


@dataclass(frozen=True)
class Framing:
    period_s: float | None = None  # seconds between model frames; None: by frame index
    fit: str = "crop"  # one of FITS
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h; None: the whole frame

    @property
    def period_ns(self) -> int | None:
        """`period_s` in whole ns (`period_ns`); None: by frame index."""
        return period_ns(self.period_s)

    def to_dict(self) -> dict:
        return {
            "period_s": self.period_s,
            "fit": self.fit,
            "roi": list(self.roi) if self.roi is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> Framing:
        if not d:
            return cls()
        roi, period = d.get("roi"), d.get("period_s")
        if roi is not None and len(roi) != 4:
            raise ValueError(f"roi must be 4 whole numbers x, y, w, h, got {roi}")
        seconds = float(period) if period is not None else None
        if seconds is not None and not PERIODS[0] <= seconds <= PERIODS[1]:
            raise ValueError(f"period_s must be {PERIODS[0]:g} to {PERIODS[1]:g} s, got {period}")
        return cls(
            period_s=seconds,
            fit=str(d.get("fit", "crop")),
            roi=(int(roi[0]), int(roi[1]), int(roi[2]), int(roi[3])) if roi is not None else None,
        )


def period_ns(period_s: float | None) -> int | None:
    """A frame period in whole nanoseconds, the unit of stamps (None stays None)."""
    return None if period_s is None else round(period_s * 1e9)


def frame_times(anchor, anchor_index: int, start: int, count: int, period):
    """The times of frames start .. start+count-1 of a video whose frame `anchor_index` is at
    `anchor`: anchor + (i - anchor_index) * period. For a prediction the anchor is the last
    given frame, so made frame k after it (k = 1, 2, ...) is at anchor + k * period. Units are
    the caller's: int ns (anchor an int, period an int) give exact int64 stamps, seconds give
    float64. `anchor` may be an array of one anchor per camera (C,): the result is then (C,
    count), else (count,)."""
    steps = np.arange(start - anchor_index, start - anchor_index + count, dtype=np.int64)
    anchor = np.asarray(anchor)
    return anchor[..., None] + steps * (period if isinstance(period, int) else float(period))
