"""Does a model read the motion between the given frames? (`research/eval_tasks.py motion`)

Each clip is forecast twice with the same noise: from its p given frames, and from p copies of
the last given frame ("still": what the frames show, without the motion). Both are scored with
SSIM against the truth over the first predicted frames, the later ones and all, next to
copy-last; a model that reads the motion scores higher from the given frames, most in the first
frames. Models are used through the runtime's `api.Model` only.
"""

from __future__ import annotations

import numpy as np

from lgcvd_runtime import api
from lgcvd_train.eval_protocol import copy_last
from lgcvd_train.metrics import ssim
from lgcvd_train.metrics.aggregate import paired_difference

COPY_LAST = copy_last()


def still(given: np.ndarray) -> np.ndarray:
    """(p, H, W, 3) given frames -> p copies of the last: what they show, without the motion."""
    return np.repeat(given[-1:], len(given), axis=0)


def motion_report(model: api.Model, videos: np.ndarray, p: int, split: int) -> dict:
    """Per-clip SSIM of forecasts from the given frames and from still ones (the same seed per
    clip), and of copy-last, over frames p+1..split, split+1..end and all (numbered from 1).
    videos (C, p+n, H, W, 3) uint8 -> {predictor: {range: [C values]}}."""
    first = slice(0, split - p)  # indices into the n predicted frames
    later = slice(split - p, None)
    per_clip: dict[str, dict[str, list]] = {
        name: {"first": [], "later": [], "all": []} for name in ("given", "still", "copy-last")
    }
    n = videos.shape[1] - p
    for video in videos:
        truth, given = video[p:], video[:p]
        seed = model.seeds(None, 1)[0]  # one draw per clip, used for both inputs
        fakes = {
            "given": forecast(model, given, n, seed),
            "still": forecast(model, still(given), n, seed),
        }
        fakes["copy-last"] = COPY_LAST.predict(given, n, 1)[0]
        for name, fake in fakes.items():
            values = ssim(truth, fake)  # (n,)
            for part, frames in (("first", first), ("later", later), ("all", slice(None))):
                per_clip[name][part].append(float(values[frames].mean()))
    return per_clip


def forecast(model: api.Model, given: np.ndarray, n: int, seed: int) -> np.ndarray:
    """One sample of the n frames after `given`. -> (n, H, W, 3) uint8."""
    return np.concatenate([w.frames[0] for w in model.predict(given, n, seed=seed)])


def motion_table(per_clip: dict, p: int, split: int, last: int) -> str:
    """SSIM per predictor and frame range, then given - still with its paired standard error."""
    parts = (
        ("first", f"{p + 1}-{split}"),
        ("later", f"{split + 1}-{last}"),
        ("all", f"{p + 1}-{last}"),
    )
    head = " | ".join(f"SSIM {label}" for _, label in parts)
    lines = [f"| forecast from | {head} |", "|---" + "|---:" * len(parts) + "|"]
    for name in ("given", "still", "copy-last"):
        cells = " | ".join(f"{np.mean(per_clip[name][part]):.4f}" for part, _ in parts)
        lines.append(f"| {name} | {cells} |")
    diffs = [
        paired_difference(per_clip["given"][part], per_clip["still"][part]) for part, _ in parts
    ]
    lines.append(
        "| given − still (± SE) | " + " | ".join(f"{d:+.4f} ± {se:.4f}" for d, se in diffs) + " |"
    )
    return "\n".join(lines) + "\n"
