"""I3D features remembered on disk, so that comparing plans costs one I3D pass per plan.

An FVD run passes three sets of clips through I3D: the real clips, copy-last's and the model's.
The first two depend only on the test clips, so every later `lgcvd-eval --feature-cache DIR` on
the same clips reads them back instead of recomputing them (about 3 s a clip on one CPU core).

A result is stored under the SHA-256 of everything it depends on: the network's weights (their
bytes, not the file's name), the clips' exact bytes and shape, the batch size and `FORMAT`.
Change I3D's preprocessing or output and `FORMAT` must change with it. Each result is written to
a temporary file and renamed; a file that cannot be read back is recomputed and replaced.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from lgcvd_runtime.files import write_then_rename

from .i3d import I3D, i3d_features

FORMAT = "lgcvd-i3d-features-1"  # bump when the features of the same clips would change


def weights_digest(model: I3D) -> str:
    """SHA-256 of the network's parameters and buffers, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class I3DFeatures:
    """`i3d_features(model, videos, batch)`, remembered in `folder` when one is given.

    `hits` and `misses` count the clips read back and computed."""

    def __init__(self, model: I3D, folder: Path | None = None) -> None:
        self.model = model
        self.folder = folder
        self._weights = weights_digest(model) if folder is not None else ""
        self.hits = self.misses = 0

    def __call__(self, videos: np.ndarray, batch: int = 4) -> np.ndarray:
        if self.folder is None:
            self.misses += len(videos)
            return i3d_features(self.model, videos, batch)
        path = self.folder / f"{self._key(videos, batch)}.npy"
        feats = _read(path, len(videos))
        if feats is not None:
            self.hits += len(videos)
            return feats
        feats = i3d_features(self.model, videos, batch)
        self.misses += len(videos)
        with write_then_rename(path) as tmp, open(tmp, "wb") as f:
            np.save(f, feats, allow_pickle=False)
        return feats

    def _key(self, videos: np.ndarray, batch: int) -> str:
        digest = hashlib.sha256(f"{FORMAT} {self._weights} {batch} {videos.dtype}".encode())
        digest.update(str(videos.shape).encode())
        digest.update(np.ascontiguousarray(videos).tobytes())
        return digest.hexdigest()


def _read(path: Path, rows: int) -> np.ndarray | None:
    """The features stored at `path`, or None if absent, unreadable or not (rows, D) float64."""
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if feats.ndim != 2 or len(feats) != rows or feats.dtype != np.float64:
        return None
    return feats
