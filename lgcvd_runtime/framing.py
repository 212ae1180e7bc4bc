"""How camera frames become model frames, and when they were taken: what a model records about
its input besides the network's layout (`layout.ModelSpec`).

`Framing` travels in the checkpoint and the bundle (manifest key "framing", format version 2), so
that training and serving take frames the same way: `period_s` is the frame period the model
was trained at (None: unknown, frames are taken by index as before), `fit` how a frame of another
shape becomes the model's square (crop, pad or stretch) and `roi` the part of the camera's frame
used (x, y, w, h in the camera's pixels; None: all of it). A bundle of format version 1 has no
framing and reads as `Framing()`. This module knows no file format, image library or engine.
"""

from __future__ import annotations

from dataclasses import dataclass

FITS = ("crop", "pad", "stretch")


@dataclass(frozen=True)
class Framing:
    period_s: float | None = None  # seconds between model frames; None: by frame index
    fit: str = "crop"  # one of FITS
    roi: tuple[int, int, int, int] | None = None  # x, y, w, h; None: the whole frame

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
        return cls(
            period_s=float(period) if period is not None else None,
            fit=str(d.get("fit", "crop")),
            roi=(int(roi[0]), int(roi[1]), int(roi[2]), int(roi[3])) if roi is not None else None,
        )
