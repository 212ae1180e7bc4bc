"""The paper's Table 5 ablation (§4.4): its four variants, as lgcvd-train switches, and the
table of each variant's mean over seeds ± their spread, built from lgcvd-eval reports.

`research/table5.py` trains and evaluates the runs; this file only names the variants, fixes the
evaluation protocol's frames and writes the table. Knows report.json; runs nothing.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from lgcvd_train.eval_protocol import PROTOCOL, copy_last
from lgcvd_train.eval_report import ARROWS, DIGITS, NAMES
from lgcvd_train.metrics.fvd import few_clips_warning, fvd_label


@dataclass(frozen=True)
class Variant:
    name: str  # folder name
    label: str  # table row
    flags: tuple[str, ...]  # lgcvd-train ablation switches


VARIANTS = (
    Variant("baseline", "baseline", ("--no-two-stage", "--no-context")),
    Variant("two-stage", "+ two-stage training", ("--no-context",)),
    Variant("encoder", "+ sequence encoder", ("--no-two-stage",)),
    Variant("full", "full (both)", ()),
)

P, N, FRAMES = PROTOCOL.p, PROTOCOL.n, PROTOCOL.scored  # 2 given, 28 predicted, 3-28 scored
METRICS = tuple(NAMES)  # psnr, ssim, lpips


def spread(values: list[float]) -> float | None:
    """Half the difference of two seeds' values, the standard deviation of more, None for one."""
    if len(values) == 2:
        return abs(values[0] - values[1]) / 2
    return statistics.stdev(values) if len(values) > 2 else None


def cell(values: list[float], digits: int) -> str:
    text = f"{statistics.fmean(values):.{digits}f}"
    s = spread(values)
    return text if s is None else f"{text} ± {s:.{digits}f}"


def scores(model: dict) -> dict[str, float]:
    """A report model's best-of-S means over the protocol's frames, and its FVD."""
    best = model["aggregates"][FRAMES.label]["best"]
    return {**{m: best[m]["mean"] for m in METRICS}, "fvd": model["fvd"]}


def table_text(recipe: str, test_data: str, reports: dict) -> str:
    """The Table 5 markdown: per variant the mean over seeds ± their spread, copy-last, and per
    run. `recipe` describes the training ("`base` preset, 4,000 steps ..."); `reports` maps runs
    (objects with `.variant` and `.seed`) to their lgcvd-eval report.json."""
    digits = {**DIGITS, "fvd": 1}  # fvd_label's digits
    first = next(iter(reports.values()))
    seeds = sorted({run.seed for run in reports})
    fvds = first["models"][copy_last().label]["fvd"] is not None
    columns = [*METRICS, "fvd"] if fvds else list(METRICS)
    head = [f"{NAMES.get(m, 'FVD')} {ARROWS.get(m, '↓')}" for m in columns]
    spreads = {1: "One seed: no spread.", 2: "± is half the difference between the two seeds."}
    lines = [
        "# Table 5 ablation (research/table5.py)",
        "",
        f"{recipe}, seeds {', '.join(map(str, seeds))}. Evaluated on the first "
        f"{first['data']['clips']} clips of {test_data}: {P} given frames, {N} predicted, "
        f"one sample, {first['settings']['sampler']} {first['settings']['steps']} steps, seed "
        f"{first['settings']['seed']}; {FRAMES.label}, mean over clips. "
        + spreads.get(len(seeds), f"± is the standard deviation over the {len(seeds)} seeds."),
        "",
        "| variant | flags | " + " | ".join(head) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    base = scores(first["models"][copy_last().label])
    row = [f"{base[m]:.{digits[m]}f}" for m in columns]
    lines.append("| copy last frame | — | " + " | ".join(row) + " |")
    for variant in VARIANTS:
        mine = [(run, r) for run, r in reports.items() if run.variant == variant]
        if not mine:
            continue
        per_seed = [scores(r["models"][variant.name]) for _, r in mine]
        row = [cell([s[m] for s in per_seed], digits[m]) for m in columns]
        flags = f"`{' '.join(variant.flags)}`" if variant.flags else "—"
        lines.append(f"| {variant.label} | {flags} | " + " | ".join(row) + " |")
    lines += ["", "Per run:", "", "| run | " + " | ".join(head) + " |"]
    lines.append("|---|" + "---:|" * len(columns))
    for run, r in reports.items():
        model = r["models"][run.variant.name]
        s = scores(model)
        row = [f"{s[m]:.{digits[m]}f}" for m in METRICS] + ([fvd_label(model)] if fvds else [])
        lines.append(f"| {run.variant.label}, seed {run.seed} | " + " | ".join(row) + " |")
    if fvds and (warning := few_clips_warning(first["data"]["clips"])):
        lines += ["", warning]
    return "\n".join(lines) + "\n"
