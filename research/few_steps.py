"""Quality against denoiser calls per window, training-free: one `lgcvd-eval` run per sampling
plan on the same clips with the same noise seed, then every plan paired against a reference plan
(default dpmpp 10) over the clips, with the paired standard error.

    python research/few_steps.py --model lgcvd_runtime/assets/default.lgcvd \\
        --data data/pushsim_test.npy --clips 64 --out runs/few_steps \\
        --plan ddim:1 --plan ddim:2 --plan ddim:4 --plan dpmpp:4 --plan dpmpp:10 --plan ddpm:50 \\
        --plan ddim:4:trailing --plan ddpm:4:log-snr

A plan is SAMPLER:STEPS on the even grid (t = 0 .. T-1), or SAMPLER:STEPS:SPACING on another grid
of `schedule.spaced_timesteps` (lgcvd-eval --spacing). Each plan's `lgcvd-eval` report
stays in OUT/SAMPLER-STEPS[-SPACING]/ (a finished one is reused, so an interrupted study continues
where it stopped); the table goes to OUT/table.md and stdout. FVD
is computed only with --fvd (it needs 256 clips to mean much: docs/results.md); the I3D features
of the real and copy-last clips are kept in OUT/i3d-cache and computed once per study. Metrics,
frames and pairing are lgcvd-eval's (`lgcvd_train.eval_protocol`); this script only loops.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from lgcvd_runtime.cli.chassis import Command
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import write_then_rename
from lgcvd_runtime.schedule import SPACINGS
from lgcvd_train.eval_protocol import PROTOCOL
from lgcvd_train.metrics.aggregate import paired_difference

METRICS = ("psnr", "ssim", "lpips")
EVEN = "even"  # the grid of plans that name none
Plan = tuple[str, int, str]  # sampler, steps, spacing


def parse_plan(text: str) -> Plan:
    """ "ddim:4" -> ("ddim", 4, "even"), "ddim:4:trailing" -> ("ddim", 4, "trailing"); a bad
    plan is a one-line error."""
    parts = text.split(":") + ([EVEN] if text.count(":") == 1 else [])
    sampler, steps, spacing = parts if len(parts) == 3 else ("", "", "")
    if not steps.isdigit() or int(steps) < 1 or spacing not in SPACINGS:
        raise LgcvdError(
            f"plan {text!r} is not SAMPLER:STEPS[:SPACING] with SPACING one of "
            f"{', '.join(SPACINGS)}; write e.g. ddim:4 or ddim:4:trailing"
        )
    return sampler, int(steps), spacing


def label(plan: Plan) -> str:
    return " ".join(str(p) for p in plan if p != EVEN)


def run_plan(plan: Plan, opts: dict, out: Path) -> dict:
    """The lgcvd-eval report of one plan (run now unless its OUT/FOLDER/report.json exists)."""
    sampler, steps, _ = plan
    folder = out / label(plan).replace(" ", "-")
    report = folder / "report.json"
    if not report.is_file():
        first, last = PROTOCOL.scored.first, PROTOCOL.scored.last
        command = [
            str(Path(sys.executable).parent / "lgcvd-eval"), "--model", f"model={opts['model']}",
            "--data", opts["data"], "--spacing", plan[2],
            "--clips", str(opts["clips"]), "-p", str(PROTOCOL.p),
            "-n", str(PROTOCOL.n), "--frame-range", str(first), str(last), "--sampler", sampler,
            "--steps", str(steps), "--seed", str(opts["seed"]), "--out", str(folder), "--force",
            "--quiet",
        ]  # fmt: skip
        command += ["--threads", str(opts["threads"])] if opts["threads"] else []
        command += ["--feature-cache", str(out / "i3d-cache")] if opts["fvd"] else ["--no-fvd"]
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            raise LgcvdError(f"lgcvd-eval failed for {label(plan)}; see its message above")
    return json.loads(report.read_text())


def per_clip(report: dict, who: str = "model") -> dict[str, list[float]]:
    return report["models"][who]["aggregates"][PROTOCOL.scored.label]["per_clip"]["best"]


def table(plans: list[Plan], reports: dict, reference: Plan) -> str:
    base = per_clip(reports[reference])
    head = "| plan | calls | " + " | ".join(f"{m} − ref" for m in METRICS) + " | FVD |"
    lines = [head, "|---|---:|" + "---:|" * (len(METRICS) + 1)]
    for plan in plans:
        rows = per_clip(reports[plan])
        cells = [
            f"{v:+.4f} ± {e:.4f}" for v, e in (paired_difference(rows[m], base[m]) for m in METRICS)
        ]
        fvd = reports[plan]["models"]["model"]["fvd"]
        fvd_cell = "—" if fvd is None else f"{fvd:.0f}"
        lines.append(f"| {label(plan)} | {plan[1]} | " + " | ".join(cells) + f" | {fvd_cell} |")
    copy = per_clip(reports[reference], "copy-last")
    means = ", ".join(f"{m} {sum(copy[m]) / len(copy[m]):.4f}" for m in METRICS)
    ref = ", ".join(f"{m} {sum(base[m]) / len(base[m]):.4f}" for m in METRICS)
    lines += ["", f"reference {label(reference)}: {ref}; copy-last: {means}"]
    return "\n".join(lines) + "\n"


@click.command(cls=Command, stopped="{word}; finished plans are kept in --out")
@click.option("--model", required=True, help="Bundle NAME.lgcvd to study.")
@click.option("--data", required=True, help="Held-out clips (.npy), as lgcvd-eval --data.")
@click.option("--clips", type=click.IntRange(2), default=64, show_default=True, help="Clips.")
@click.option(
    "--plan", "plans", multiple=True, required=True, help="SAMPLER:STEPS[:SPACING], repeatable."
)
@click.option("--reference", default="dpmpp:10", show_default=True, help="Plan to pair against.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed of every plan.")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads of each run.")
@click.option("--fvd", is_flag=True, help="Also FVD (slow; meaningful at 256 clips).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Study folder.")
def main(model, data, clips, plans, reference, seed, threads, fvd, out):
    """Pair every --plan against --reference on the same clips and noise."""
    chosen = [parse_plan(p) for p in plans]
    ref = parse_plan(reference)
    opts = {"model": model, "data": data, "clips": clips, "seed": seed, "threads": threads}
    opts["fvd"] = fvd
    out.mkdir(parents=True, exist_ok=True)
    reports = {plan: run_plan(plan, opts, out) for plan in dict.fromkeys([ref, *chosen])}
    text = table(chosen, reports, ref)
    with write_then_rename(out / "table.md") as tmp:
        tmp.write_text(text)
    click.echo(text)


if __name__ == "__main__":
    main()
