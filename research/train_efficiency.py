"""Training efficiency per speed or loss option (issue 18 item 1): train one model per variant
(the recipe before the study, then each change alone or several joined with "+") on the same data and seed,
then print its throughput and the quality it reached.

Throughput, a few fine-tuning steps of the shipped model per variant:

    .venv/bin/python research/train_efficiency.py --data /work/data/pushsim_calib.npy \\
        --test-data /work/data/pushsim_test.npy --steps 30

Quality at equal CPU time, each variant trained from scratch for the same process CPU time
(all of its threads, torch.compile's work included), one thread each, two variants at a time,
then scored on held-out clips: the one-step x0 error (`research/x0_error.py`) at t = 300 and its
mean over t, and SSIM over frames 3-28 of one sample per clip (`lgcvd-eval`,
DPM-Solver++ 10 steps):

    .venv/bin/python research/train_efficiency.py --data /work/data/pushsim_train.npy \\
        --test-data /work/data/pushsim_test.npy --from-scratch --cpu-seconds 600 \\
        --threads 1 --parallel 2 --lr 3e-4 --ssim-clips 16

Each variant trains in its own process (this script with --worker), so a compiled graph or a
thread pool of one variant never speeds up or slows down another. A budget of CPU time, not
wall time, keeps the comparison fair when other work shares the machine; clips per wall second
are printed as well, and a prefetch thread can only win on the second. min-snr's loss is
weighted, so its loss is not comparable with the others'; its x0 error and SSIM are.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "lgcvd_runtime" / "assets" / "default.lgcvd"
# The recipe before issue 18's study (unweighted loss, torch's default Adam); the defaults now
# are its winners, "min-snr+adam-fused". A foreach Adam was studied too and then dropped.
BASELINE = {"loss_weighting": "none", "adam": "default"}
VARIANTS = {  # name -> TrainConfig fields changed from the baseline ("residual": the model's)
    "baseline": {},
    "min-snr": {"loss_weighting": "min-snr"},
    "adam-fused": {"adam": "fused"},
    "channels-last": {"channels_last": True},
    "compile": {"compile": True},
    "prefetch": {"prefetch": True},
    "residual": {"residual": True},
}
X0_T = 300  # the fixed timestep of the reported x0 error
RECIPE_TASKS = "prediction=0.6,unconditional=0.2,interpolation=0.1,random=0.1"  # step 1's mixture
SSIM_RANGE = ("3", "28")


def changes(variant: str) -> dict:
    """TrainConfig fields of a variant: one name of VARIANTS, or several joined with '+'."""
    fields = dict(BASELINE)
    for name in variant.split("+"):
        if name not in VARIANTS:
            raise click.ClickException(
                f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} (join with '+')"
            )
        fields.update(VARIANTS[name])
    return fields


def train_variant(variant: str, job: dict, run_dir: Path) -> dict:
    """Train one variant in this process, for job['steps'] steps or until the process has used
    job['cpu_seconds'] of CPU time; per-step wall times and losses."""
    from dataclasses import replace

    import torch

    from lgcvd_train.config import preset
    from lgcvd_train.continuation import follow_source
    from lgcvd_train.data import load_dataset
    from lgcvd_train.train_options import TRAIN, parse_task_weights
    from lgcvd_train.trainer import Trainer

    torch.set_num_threads(job["threads"])
    budget = job["cpu_seconds"]
    steps = job["steps"] if budget is None else 10**9  # a budget run stops on time
    fields = changes(variant)
    residual = fields.pop("residual", False)
    tcfg = TRAIN.with_(
        steps=steps,
        batch_size=job["batch"],
        seed=job["seed"],
        lr=job["lr"],
        save_every=10**9,
        task_weights=parse_task_weights(job["tasks"]),
        **fields,
    )
    init_from = job["init_from"]
    mcfg = replace(preset("base"), residual=residual)
    if init_from is not None:
        given = {"residual": True} if residual else {}
        mcfg, tcfg = follow_source(mcfg, tcfg, given, Path(init_from))
    videos = load_dataset(
        job["data"], mcfg.image_size, seed=job["seed"], min_frames=tcfg.clip_frames
    )
    trainer = Trainer(
        mcfg,
        tcfg,
        videos,
        run_dir,
        {"data": job["data"]},
        progress=False,
        init_from=None if init_from is None else Path(init_from),
    )
    times, losses = [], []
    cpu0 = time.process_time()
    try:
        while trainer.step < steps and (budget is None or time.process_time() - cpu0 < budget):
            t0 = time.perf_counter()
            losses.append(trainer.train_step()["loss"])
            times.append(time.perf_counter() - t0)
    finally:
        trainer.batches.close()
    cpu = time.process_time() - cpu0
    trainer.save()
    return {"variant": variant, "times": times, "losses": losses, "cpu": cpu}


def x0_errors(run_dir: Path, test_data: str) -> dict[int, float]:
    """t -> |x0_hat - x0| from research/x0_error.py's table."""
    out = subprocess.run(
        [sys.executable, str(REPO / "research" / "x0_error.py"), str(run_dir), "--data", test_data],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        cells = line.split()
        if len(cells) == 4 and cells[0].isdigit():
            rows[int(cells[0])] = float(cells[1])
    if X0_T not in rows:
        raise click.ClickException(f"research/x0_error.py printed no row for t={X0_T}:\n{out}")
    return rows


def ssim(run_dir: Path, test_data: str, clips: int, seed: int) -> float:
    """Mean SSIM over frames 3-28 of one sample per held-out clip (2 given frames)."""
    out = run_dir / "eval"
    subprocess.run(
        [
            str(Path(sys.executable).with_name("lgcvd-eval")), "--model", f"model={run_dir}",
            "--data", test_data, "--clips", str(clips), "-p", "2", "-n", "28",
            "--frame-range", *SSIM_RANGE, "--sampler", "dpmpp", "--steps", "10",
            "--seed", str(seed), "--no-fvd", "--no-lpips", "--quiet", "--out", str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    label = f"frames {SSIM_RANGE[0]}-{SSIM_RANGE[1]}"
    return report["models"]["model"]["aggregates"][label]["best"]["ssim"]["mean"]


def worker_command(name: str, run: Path, job: dict) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--worker",
        name,
        "--run-dir",
        str(run),
        "--data",
        job["data"],
        "--job",
        json.dumps(job),
    ]


def row(name: str, rec: dict, job: dict, wall: float, run: Path, test_data, ssim_clips) -> str:
    """One markdown row of the table."""
    per_step = statistics.median(rec["times"][job["warmup"] :])
    cells = [name, str(len(rec["times"])), f"{job['batch'] / per_step:.2f}"]
    cells.append(f"{job['batch'] * len(rec['times']) / rec['cpu']:.2f}")
    cells.append(f"{statistics.mean(rec['losses'][-50:]):.4f}")
    if test_data:
        errs = x0_errors(run, test_data)
        cells += [f"{errs[X0_T]:.4f}", f"{statistics.mean(errs.values()):.4f}"]
    else:
        cells += ["-", "-"]
    cells.append(f"{ssim(run, test_data, ssim_clips, job['seed']):.4f}" if ssim_clips else "-")
    cells += [f"{rec['cpu']:.0f}", f"{wall:.0f}"]
    return "| " + " | ".join(cells) + " |"


@click.command()
@click.option("--data", required=True, help="Training clips (.npy/.npz, folder, or generator).")
@click.option("--test-data", default=None, help="Held-out clips for x0 error and SSIM.")
@click.option(
    "--init-from",
    type=click.Path(exists=True, path_type=Path),
    default=BUNDLE,
    show_default=True,
    help="Model to fine-tune (ignored with --from-scratch).",
)
@click.option("--from-scratch", is_flag=True, help="Train the base preset from random weights.")
@click.option("--steps", type=click.IntRange(2), default=30, show_default=True)
@click.option(
    "--cpu-seconds",
    type=click.FloatRange(1),
    default=None,
    help="Train each variant for this much process CPU time instead of --steps.",
)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help="First steps left out of the clips/s median.",
)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--task-weights", default=RECIPE_TASKS, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--parallel", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--ssim-clips", type=click.IntRange(0), default=0, show_default=True, help="0: no SSIM."
)
@click.option(
    "--variants",
    default=",".join(VARIANTS),
    show_default=True,
    help="Comma-separated variants to run; join changes with '+' (min-snr+adam-fused).",
)
@click.option("--worker", hidden=True, default=None)
@click.option("--run-dir", hidden=True, type=click.Path(path_type=Path), default=None)
@click.option("--job", hidden=True, default=None)
def main(
    data, test_data, init_from, from_scratch, steps, cpu_seconds, warmup, batch_size, lr,
    task_weights, seed, threads, parallel, ssim_clips, variants, worker, run_dir, job,
):  # fmt: skip
    """Print steps, clips/s, loss, held-out x0 error and SSIM per training variant."""
    if worker is not None:  # one variant, in a process of its own
        click.echo(json.dumps(train_variant(worker, json.loads(job), run_dir)))
        return
    names = [v.strip() for v in variants.split(",") if v.strip()]
    for name in names:
        changes(name)
    if cpu_seconds is None and warmup >= steps:
        raise click.ClickException(f"--warmup {warmup} leaves no step of --steps {steps} to time")
    if ssim_clips and not test_data:
        raise click.ClickException("--ssim-clips needs --test-data")
    job = {
        "data": data,
        "init_from": None if from_scratch else str(init_from),
        "steps": steps,
        "cpu_seconds": cpu_seconds,
        "batch": batch_size,
        "lr": lr,
        "tasks": task_weights,
        "seed": seed,
        "threads": threads,
        "warmup": warmup,
    }
    click.echo(
        "| variant | steps | clips/s (median step) | clips per CPU s | loss (last 50) | "
        f"x0 error t={X0_T} | x0 error mean over t | SSIM 3-28 | CPU s | wall s |"
    )
    click.echo("|---|---|---|---|---|---|---|---|---|---|")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for first in range(0, len(names), parallel):
            group = names[first : first + parallel]
            t0 = time.perf_counter()
            procs = {
                name: subprocess.Popen(
                    worker_command(name, Path(tmp) / name, job),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=env,
                )
                for name in group
            }
            for name, proc in procs.items():
                out, err = proc.communicate()
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    tail = (err.strip().splitlines() or ["(no output)"])[-1]
                    click.echo(f"| {name} | failed: {tail} |")
                    continue
                rec = json.loads(out.strip().splitlines()[-1])
                click.echo(row(name, rec, job, wall, Path(tmp) / name, test_data, ssim_clips))


if __name__ == "__main__":
    main()
