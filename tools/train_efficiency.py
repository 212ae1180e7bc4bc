"""Training throughput per speed or loss option (issue 18 item 1): fine-tune one model for a few
steps per variant (today's recipe, then each change alone) on the same data and seed, and print
clips/s (median over the steps after warm-up), the mean training loss and, optionally, the
held-out one-step x0 error of the result (`tools/x0_error.py`, run as a separate program).

    .venv/bin/python tools/train_efficiency.py --data /work/data/pushsim_calib.npy \\
        --test-data /work/data/pushsim_test.npy --steps 30

Each variant trains in its own process (this script with --worker), so a compiled graph or a
thread pool of one variant never speeds up or slows down the next. A throughput study: the
losses after a few steps are not quality at equal time. min-snr's loss is weighted, so it is not
comparable with the others; its x0 error is.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "lgcvd_runtime" / "assets" / "default.lgcvd"
VARIANTS = {  # name -> TrainConfig fields changed from today's recipe
    "baseline": {},
    "min-snr": {"loss_weighting": "min-snr"},
    "adam-foreach": {"adam": "foreach"},
    "adam-fused": {"adam": "fused"},
    "channels-last": {"channels_last": True},
    "compile": {"compile": True},
    "prefetch": {"prefetch": True},
}
X0_T = 300  # the fixed timestep of the reported x0 error


def train_variant(
    variant: str, init_from: Path, data: str, steps: int, batch: int, seed: int, run_dir: Path
) -> dict:
    """Train one variant in this process; per-step wall times and losses."""
    from lgcvd_train.cli import TRAIN
    from lgcvd_train.config import preset
    from lgcvd_train.continuation import follow_source
    from lgcvd_train.data import load_dataset
    from lgcvd_train.trainer import Trainer

    tcfg = TRAIN.with_(
        steps=steps, batch_size=batch, seed=seed, save_every=10**9, **VARIANTS[variant]
    )
    mcfg, tcfg = follow_source(preset("base"), tcfg, {}, init_from)
    videos = load_dataset(data, mcfg.image_size, seed=seed, min_frames=tcfg.clip_frames)
    trainer = Trainer(
        mcfg, tcfg, videos, run_dir, {"data": data}, progress=False, init_from=init_from
    )
    times, losses = [], []
    try:
        while trainer.step < steps:
            t0 = time.perf_counter()
            losses.append(trainer.train_step()["loss"])
            times.append(time.perf_counter() - t0)
    finally:
        trainer.batches.close()
    trainer.save()
    return {"variant": variant, "times": times, "losses": losses}


def x0_error(run_dir: Path, test_data: str) -> float:
    """|x0_hat - x0| at t = X0_T from tools/x0_error.py's table."""
    out = subprocess.run(
        [sys.executable, str(REPO / "tools" / "x0_error.py"), str(run_dir), "--data", test_data],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        cells = line.split()
        if len(cells) == 4 and cells[0] == str(X0_T):
            return float(cells[1])
    raise click.ClickException(f"tools/x0_error.py printed no row for t={X0_T}:\n{out}")


@click.command()
@click.option("--data", required=True, help="Training clips (.npy/.npz, folder, or generator).")
@click.option("--test-data", default=None, help="Held-out clips for the x0 error (optional).")
@click.option(
    "--init-from",
    type=click.Path(exists=True, path_type=Path),
    default=BUNDLE,
    show_default=True,
    help="Model to fine-tune.",
)
@click.option("--steps", type=click.IntRange(2), default=30, show_default=True)
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    help="First steps left out of the clips/s median.",
)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True)
@click.option(
    "--variants",
    default=",".join(VARIANTS),
    show_default=True,
    help="Comma-separated variants to run.",
)
@click.option("--worker", hidden=True, default=None)
@click.option("--run-dir", hidden=True, type=click.Path(path_type=Path), default=None)
def main(data, test_data, init_from, steps, warmup, batch_size, seed, variants, worker, run_dir):
    """Print clips/s, training loss and held-out x0 error per training variant."""
    if worker is not None:  # one variant, in a process of its own
        click.echo(
            json.dumps(train_variant(worker, init_from, data, steps, batch_size, seed, run_dir))
        )
        return
    names = [v.strip() for v in variants.split(",") if v.strip()]
    if unknown := [v for v in names if v not in VARIANTS]:
        raise click.ClickException(
            f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}"
        )
    if warmup >= steps:
        raise click.ClickException(f"--warmup {warmup} leaves no step of --steps {steps} to time")
    click.echo(
        f"| variant | clips/s (median, steps {warmup + 1}-{steps}) | s/step | "
        f"loss (mean, all steps) | x0 error t={X0_T} | wall s |"
    )
    click.echo("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            run = Path(tmp) / name
            t0 = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    name,
                    "--run-dir",
                    str(run),
                    "--data",
                    data,
                    "--init-from",
                    str(init_from),
                    "--steps",
                    str(steps),
                    "--batch-size",
                    str(batch_size),
                    "--seed",
                    str(seed),
                ],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                click.echo(f"| {name} | failed: {tail} | | | | {wall:.0f} |")
                continue
            rec = json.loads(done.stdout.strip().splitlines()[-1])
            per_step = statistics.median(rec["times"][warmup:])
            err = f"{x0_error(run, test_data):.4f}" if test_data else "-"
            click.echo(
                f"| {name} | {batch_size / per_step:.2f} | {per_step:.3f} | "
                f"{statistics.mean(rec['losses']):.4f} | {err} | {wall:.0f} |"
            )


if __name__ == "__main__":
    main()
