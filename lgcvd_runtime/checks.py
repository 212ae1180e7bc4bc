"""Input checks shared by the embedding API (`api`), the live stream (`live`), the Triton client
(`serve.client`) and the file loaders: counts, frame arrays, and fields from a newer lgcvd.

Each check returns what it accepted or raises a one-line error naming the problem and the fix.
This module knows no model, no engine package and no torch.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.samplers import SAMPLERS

UPGRADE = "upgrade lgcvd (pip install -U lgcvd)"


def is_whole(value) -> bool:
    """True for an int or numpy integer (not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_count(what: str, value: int) -> None:
    """A one-line error unless `value` is a whole number of at least 1."""
    if not is_whole(value) or value < 1:
        raise LgcvdError(f"{what} must be a whole number of at least 1, got {value!r}")


def check_sampler(sampler: str) -> None:
    """A one-line error unless `sampler` names one of `samplers.SAMPLERS`."""
    if sampler not in SAMPLERS:
        raise LgcvdError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")


def check_steps(steps: int, total: int, error: type[LgcvdError] = LgcvdError) -> None:
    """`error` unless `steps` is a whole number in 1..total, the schedule's T."""
    if not is_whole(steps) or not 1 <= steps <= total:
        raise error(f"steps must be in 1..{total} (the schedule's T), got {steps!r}")


def is_clip_list(clips) -> bool:
    """True for a list of clips (a list or tuple of (T, H, W, 3) arrays, or a (C, T, H, W, 3)
    array); False for one clip."""
    if isinstance(clips, np.ndarray):
        return clips.ndim == 5
    return isinstance(clips, (list, tuple)) and len(clips) > 0 and len(_shape(clips[0]) or ()) == 4


def _shape(value) -> tuple[int, ...] | None:
    """np.shape of `value`; None for a ragged nested list, which numpy refuses to shape."""
    try:
        return np.shape(value)
    except ValueError:
        return None


def _as_clip(frames) -> np.ndarray:
    """One clip from an array or a list of frames; a ragged list is a one-line error."""
    if isinstance(frames, (list, tuple)):
        shapes = list(dict.fromkeys(_shape(f) for f in frames))
        if None in shapes:
            raise LgcvdError(
                "frames of one clip must be arrays, got a ragged nested list; pass a (T, H, W, "
                "3) uint8 array or a list of (H, W, 3) ones"
            )
        if len(shapes) > 1:
            raise LgcvdError(
                f"frames of one clip must share one shape, got {shapes[0]} and {shapes[1]}; "
                "resize them first, or pass a list of clips (one (T, H, W, 3) array per camera)"
            )
    return np.asarray(frames)


def check_frames(frames) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames, T >= 1, of at least one pixel, as an array, or a one-line
    error."""
    frames = _as_clip(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise LgcvdError(
            f"frames must be uint8 RGB of shape (T, H, W, 3), got {frames.dtype} "
            f"{frames.shape}; convert them first"
        )
    if len(frames) == 0:
        raise LgcvdError("no frames given (T = 0); pass at least one (H, W, 3) frame")
    if 0 in frames.shape[1:3]:
        raise LgcvdError(
            f"frames must be at least 1x1 pixels, got {frames.shape[2]}x{frames.shape[1]}"
        )
    return frames


def refuse_unknown_fields(
    where, what: str, cls, record: dict, error: type[LgcvdError] = LgcvdError
) -> None:
    """Keys of `record` that the dataclass `cls` has no field for mean that a newer lgcvd wrote
    it: `error` saying so, naming the file (`where`) and the record (`what`)."""
    unknown = sorted(set(record) - {f.name for f in fields(cls)})
    if unknown:
        raise error(
            f"{where}: written by a newer lgcvd ({what} has fields {', '.join(unknown)} that "
            f"this version does not know); {UPGRADE}"
        )


def _camera_clip(index: int, fit, clip) -> np.ndarray:
    """`fit(clip)` of camera `index`, its one-line error prefixed "camera INDEX: " (the library's
    and the Triton client's one wording)."""
    try:
        return fit(clip)
    except LgcvdError as err:
        raise LgcvdError(f"camera {index}: {err}") from None


def camera_clips(clips, fit) -> tuple[list[np.ndarray], bool]:
    """(`fit` of each clip, whether a list of clips was given, `is_clip_list`): the library's and
    the Triton client's one check of the clips of a call, whose cameras give as many frames."""
    many = is_clip_list(clips)
    fitted = [_camera_clip(c, fit, clip) for c, clip in enumerate(clips)] if many else [fit(clips)]
    counts = list(dict.fromkeys(len(c) for c in fitted))
    if len(counts) > 1:
        raise LgcvdError(
            f"every camera needs the same number of frames, got {counts[0]} and "
            f"{counts[1]}; pass each camera's newest frames, as many for all"
        )
    check_count("frames per clip", counts[0])
    return fitted, many
