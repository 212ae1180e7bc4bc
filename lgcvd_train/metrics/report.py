"""Writing evaluation results: a JSON report and a PNG of per-frame metric curves (paper §4.1).

Both files are written to a temporary name beside the target and renamed into place, so a reader
never sees half a file; an existing file is replaced only with `force=True`. The report should
carry the `weights_info` of the LPIPS / I3D networks that produced its numbers. This module
computes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lgcvd_runtime.files import write_then_rename


def write_report(path_json: Path, report: dict, force: bool = False) -> None:
    """Write `report` as indented JSON; numpy arrays and scalars become lists and numbers."""
    text = json.dumps(report, indent=2, default=_to_json) + "\n"
    with write_then_rename(Path(path_json), force) as tmp:
        tmp.write_text(text)


def plot_per_frame(
    path_png: Path, curves: dict[str, np.ndarray], metric: str, force: bool = False
) -> None:
    """Plot one line per entry of `curves` (name -> per-frame values (T,)) against frame index."""
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)  # attaches the Agg canvas: no pyplot, no global backend
    ax = fig.add_subplot()
    for name, values in curves.items():
        values = np.asarray(values, dtype=np.float64)
        ax.plot(np.arange(1, len(values) + 1), values, marker=".", label=name)
    ax.set_xlabel("frame")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend()
    fig.tight_layout()
    with write_then_rename(Path(path_png), force) as tmp:
        fig.savefig(tmp, format="png")


def _to_json(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a JSON report")
