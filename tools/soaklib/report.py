"""The soak's outputs, each written to a temporary file and renamed (`lgcvd_runtime.files`):
a JSON record (the machine, the command, and per scenario its settings, verdict and series)
and a picture with one row per scenario: resident memory of each process under test, and the
forecast age, over time. Knows nothing of how the samples were made.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np

from lgcvd_runtime.files import write_then_rename
from soaklib.judge import Limits, Sample


def machine() -> dict:
    """The CPU, its cores and the load average: a shared machine runs slower."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": model, "cores": os.cpu_count(), "loadavg": list(os.getloadavg())}


def series(samples: list[Sample], targets: list[str]) -> dict:
    """Per sample: time, each target's RSS / threads / fds (and RSS per process), and the ages
    seen (median, max)."""
    ages = [(float(np.median(s.ages)), max(s.ages)) if s.ages else (None, None) for s in samples]
    out: dict = {"t": [s.t for s in samples]}
    for what in ("rss_mb", "threads", "fds", "rss_by_process"):
        out[what] = {n: [getattr(s.usage[n], what) for s in samples] for n in targets}
    out["age_median_s"] = [a[0] for a in ages]
    out["age_max_s"] = [a[1] for a in ages]
    return out


def write_record(path: Path, record: dict) -> None:
    with write_then_rename(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _memory(ax, run: dict, limits: Limits) -> None:
    """Each target's RSS less its value just after the warm-up, so that MBs show beside GBs."""
    s, targets = run["series"], run["verdict"].get("targets", {})
    for name, rss in s["rss_mb"].items():
        base = targets.get(name, {}).get("rss_mb", {}).get("after_warmup", rss[0] if rss else 0)
        ax.plot(s["t"], [r - base for r in rss], label=f"{name} ({base:.0f} MB after warm-up)")
    ax.axhline(limits.max_growth_mb, color="grey", ls=":", lw=0.8, label="growth limit")
    ax.set_ylim(_judged_range(s, targets, limits))
    ax.axvspan(0, limits.warmup_s, color="0.9", label="warm-up")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS change (MB)")
    ax.legend(fontsize=7)


def _judged_range(s: dict, targets: dict, limits: Limits) -> tuple[float, float]:
    """Y limits showing the judged changes (after the warm-up) and the growth limit."""
    after = [i for i, t in enumerate(s["t"]) if t >= limits.warmup_s]
    changes = [0.0] + [
        s["rss_mb"][n][i] - targets.get(n, {}).get("rss_mb", {}).get("after_warmup", 0.0)
        for n in s["rss_mb"]
        for i in after
    ]
    span = max(changes) - min(changes) + 2 * limits.max_growth_mb
    return min(changes) - 0.1 * span, max(max(changes), 2 * limits.max_growth_mb) + 0.1 * span


def _age(ax, run: dict, limits: Limits) -> None:
    s = run["series"]
    ax.plot(s["t"], [np.nan if a is None else a for a in s["age_median_s"]], label="median")
    ax.plot(s["t"], [np.nan if a is None else a for a in s["age_max_s"]], lw=0.6, label="max")
    ax.axhline(limits.max_age_s, color="grey", ls=":", lw=0.8, label="bound (p99)")
    ax.axvspan(0, limits.warmup_s, color="0.9")
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel(run["age_label"])
    ax.legend(fontsize=7)


def write_plot(path: Path, runs: dict[str, dict], limits: dict[str, Limits]) -> None:
    """One row per scenario: memory and age per half second, dotted: the limits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 2, figsize=(11, 3.2 * len(runs)), squeeze=False)
    for row, (name, run) in zip(axes, runs.items(), strict=True):
        _memory(row[0], run, limits[name])
        _age(row[1], run, limits[name])
        verdict = "passed" if run["verdict"]["passed"] else "FAILED"
        row[0].set_title(f"{name}: {run['load']} ({verdict})", fontsize=9, loc="left")
    fig.tight_layout()
    with write_then_rename(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
