"""The outputs of `lgcvd-eval`: report.json (settings, data, metric networks, notes, and per model
aggregates and per-frame curves), summary.md (a markdown table, also printed) and one per-frame
PNG per metric. `evaluate.py` runs the protocol and hands its results here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import plural
from lgcvd_runtime.files import write_then_rename

from . import __version__
from .eval_protocol import Candidate, FrameRange, Result
from .metrics import plot_per_frame, write_report
from .metrics.aggregate import aggregate, curves, paired_difference
from .metrics.fvd import few_clips_warning, fvd_label

REPORT, SUMMARY = "report.json", "summary.md"
FVD_SKIPPED = "FVD skipped"  # how a note saying why there is no FVD starts
NAMES = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}
DIGITS = {"psnr": 2, "ssim": 3, "lpips": 3}
ARROWS = {"psnr": "↑", "ssim": "↑", "lpips": "↓"}
NUMBERING = "video frames numbered from 1, given frames included, range inclusive"


def build_report(
    settings: dict, info: dict, candidates: list[Candidate], results: list[Result]
) -> dict:
    """report.json: settings, data, metric networks, notes, and per model aggregates and curves.

    Aggregates are given for all predicted frames and for the chosen --frame-range; per-frame
    curves cover all predicted frames ("best" picks each clip's sample on the chosen range).
    """
    p, n = settings["p"], settings["n"]
    clips, samples = info["data"]["clips"], settings["samples"]
    chosen = FrameRange(**settings["frame_range"])
    ranges = [FrameRange(p + 1, p + n)] + ([chosen] if chosen != FrameRange(p + 1, p + n) else [])
    models = {}
    for cand, res in zip(candidates, results, strict=True):
        models[cand.label] = {
            "kind": cand.kind,
            "path": cand.path,
            "new_frames_per_window": cand.new_frames,
            **({"plan": cand.plan.record()} if cand.plan is not None else {}),
            "fvd": res.fvd,
            "fvd_clips": None if res.fvd is None else {"real": clips, "fake": clips * samples},
            "aggregates": {r.label: aggregate(res.per_frame, r.predicted(p)) for r in ranges},
            "per_frame": curves(res.per_frame, chosen.predicted(p)),
            "wall_s": round(res.wall_s, 3),
            "predict_s": round(res.predict_s, 3),
        }
    return {
        "lgcvd_version": __version__,
        "settings": settings,
        **info,
        "per_frame_numbers": list(range(p + 1, p + n + 1)),
        "models": models,
    }


def _plans(report: dict) -> str:
    """The sampler plans of the summary's first line: one for all models, or each model's."""
    plans = {label: m["plan"]["name"] for label, m in report["models"].items() if "plan" in m}
    if len(set(plans.values())) > 1:
        return "plans (" + "; ".join(f"{label}: {plan}" for label, plan in plans.items()) + ")"
    s = report["settings"]
    return next(iter(plans.values()), f"{s['sampler']} {s['steps']} steps")


def summary_table(report: dict) -> str:
    """Markdown: per model the chosen range's best-of-S (and mean) of each metric, and FVD."""
    s, d = report["settings"], report["data"]
    chosen = FrameRange(**s["frame_range"])
    first = next(iter(report["models"].values()))
    metrics = list(first["aggregates"][chosen.label]["best"])
    both = " best / mean" if s["samples"] > 1 else ""
    head = [f"{NAMES[m]} {ARROWS[m]}{both}" for m in metrics] + ["FVD ↓"]
    lines = [
        f"lgcvd-eval: {d['source']}, {plural(d['clips'], 'clip')}, p={s['p']}, n={s['n']}, "
        f"{plural(s['samples'], 'sample')} per clip, {_plans(report)}, "
        f"seed {s['seed']}; "
        f"{chosen.label} ({NUMBERING})",
        "",
        "| model | " + " | ".join(head) + " |",
        "|---|" + "---:|" * len(head),
    ]
    for label, model in report["models"].items():
        agg = model["aggregates"][chosen.label]
        cells = [_cell(agg, metric, s["samples"]) for metric in metrics]
        cells.append("—" if model["fvd"] is None else fvd_label(model))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    base = report["models"].get("copy-last", {}).get("aggregates", {}).get(chosen.label)
    for label, model in report["models"].items():  # paired over the clips, one sample each
        if base is None or label == "copy-last" or s["samples"] > 1:
            continue
        agg = model["aggregates"][chosen.label]["per_clip"]["best"]
        diffs = [(m, *paired_difference(agg[m], base["per_clip"]["best"][m])) for m in metrics]
        lines.append(
            f"\n{label} − copy last (± paired standard error over {plural(d['clips'], 'clip')}): "
            + ", ".join(
                f"{NAMES[m]} {v:+.{DIGITS[m] + 1}f} ± {e:.{DIGITS[m] + 1}f}" for m, v, e in diffs
            )
        )
    fvds = any(m["fvd"] is not None for m in report["models"].values())
    if fvds and (warning := few_clips_warning(d["clips"])):
        lines += ["", warning]
    why = [note for note in report.get("notes", []) if note.startswith(FVD_SKIPPED)]
    if why and not fvds:  # the "—" explained, as report.json's notes say it
        lines += ["", *(f"FVD —: {note.removeprefix('FVD ')}" for note in why)]
    return "\n".join(lines) + "\n"


def _cell(agg: dict, metric: str, samples: int) -> str:
    best = f"{agg['best'][metric]['mean']:.{DIGITS[metric]}f}"
    if samples == 1:
        return best
    return f"{best} / {agg['mean'][metric]['mean']:.{DIGITS[metric]}f}"


def write_outputs(out: Path, report: dict, force: bool) -> str:
    """The PNGs, summary.md and report.json (last); returns the summary text."""
    p = report["settings"]["p"]
    samples = report["settings"]["samples"]
    for metric in next(iter(report["models"].values()))["per_frame"]["best"]:
        # NaN for the given frames, so the x axis is the video frame number
        curves_ = {
            _legend(label, m): np.concatenate([np.full(p, np.nan), m["per_frame"]["best"][metric]])
            for label, m in report["models"].items()
        }
        ylabel = f"{NAMES[metric]}, best of {samples} per clip"
        plot_per_frame(out / f"per_frame_{metric}.png", curves_, ylabel, force=force)
    text = summary_table(report)
    with write_then_rename(out / SUMMARY, force) as tmp:
        tmp.write_text(text)
    write_report(out / REPORT, report, force=force)
    return text


def _legend(label: str, model: dict) -> str:
    """A model's name in plots, with its FVD and N where computed."""
    return label if model["fvd"] is None else f"{label}, FVD {fvd_label(model)}"
