"""Several cameras in one process: batched against sequential calls, and the live stream.

One run, all numbers as ratios on the same machine and bundle (the shipped model by default):
  - for C cameras (1, 2, 4, 8): one `model.predict` call on the list of C clips (one batch per
    denoiser call, chunked at the bundle's max batch) against C sequential single-camera calls;
    windows per second and forecast latency (batched: every camera's forecast is ready when the
    call ends; sequential: mean over cameras and the last camera's);
  - the live stream (`model.live`) fed at a fixed rate (10 Hz) by `lgcvd-run bench --live`'s
    own `live_age`: time a `push` takes and the age of `latest()` at each tick (median, p90),
    with the forecasts seen and the frames skipped.
Clips are the shipped demo clip at staggered starts. Say in what you report that a machine shared
with other work runs slower.

    .venv/bin/python tools/bench_cameras.py --sampler dpmpp --steps 10
"""

from __future__ import annotations

import time

import click
import numpy as np

import lgcvd_runtime
from lgcvd_runtime import api
from lgcvd_runtime.cli.bench import live_age
from lgcvd_runtime.cli.options import model_options, positive_option
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.plans import plan_name


def _clips(frames: np.ndarray, cameras: int, p: int) -> list[np.ndarray]:
    """`cameras` clips of p frames each, from staggered starts of one video."""
    step = max(1, (len(frames) - p) // max(1, cameras))
    return [frames[(c * step) % (len(frames) - p + 1) :][:p] for c in range(cameras)]


def _run(model, clips, n: int, seeds) -> tuple[float, int]:
    """Seconds one forecast call takes, and its windows."""
    begin = time.perf_counter()
    windows = sum(1 for _ in model.predict(clips, n, seed=seeds))
    return time.perf_counter() - begin, windows


def bench_cameras(model, frames, counts, p: int, n: int) -> list[dict]:
    _, windows = _run(model, _clips(frames, 1, p), n, 0)  # warm-up
    rows = []
    for c in counts:
        clips = _clips(frames, c, p)
        batched, _ = _run(model, clips, n, list(range(c)))
        alone = [_run(model, clip, n, s)[0] for s, clip in enumerate(clips)]
        sequential = sum(alone)
        rows.append(
            {
                "cameras": c,
                "windows": windows,
                "batched_windows_per_s": c * windows / batched,
                "sequential_windows_per_s": c * windows / sequential,
                "batched_latency_s": batched,
                "sequential_mean_latency_s": float(np.mean(np.cumsum(alone))),
                "sequential_last_latency_s": sequential,
            }
        )
    return rows


@click.command()
@model_options
@click.option(
    "--cameras",
    "counts",
    default="1,2,4,8",
    show_default=True,
    help="Camera counts to compare, comma-separated.",
)
@click.option(
    "-n",
    "n",
    type=click.IntRange(min=1),
    default=None,
    help="Frames to forecast (default: one window of new frames).",
)
@positive_option("--rate", default=10.0, help="Live stream push rate in Hz.")
@positive_option("--seconds", default=20.0, help="How long to feed the live stream.")
def main(bundle, backend, sampler, steps, spacing, seed, threads, counts, n, rate, seconds):
    """Windows per second and latency, C cameras batched vs sequential; the live stream."""
    model = lgcvd_runtime.load(
        bundle,
        backend=backend,
        sampler=sampler,
        steps=steps,
        spacing=spacing,
        threads=threads,
        seed=0 if seed is None else seed,
    )
    spec = model.manifest.model
    p, n = spec.cond_slots, n or spec.new_frames
    frames = read_frames(api.ASSETS / "demo.mkv", size=model.size)
    counts = [int(c) for c in counts.split(",")]
    rows = bench_cameras(model, frames, counts, p, n)
    live = live_age(model, rate, seconds, frames, p=p, n=n)
    click.echo(
        f"{model.backend.name}, {plan_name(model.plan.plan)}, max batch {model.manifest.max_batch}, "
        f"p={p}, n={n} ({rows[0]['windows']} window(s) per forecast)"
    )
    click.echo(
        "cameras | windows/s batched | sequential | ratio | latency batched | "
        "sequential mean / last"
    )
    for r in rows:
        click.echo(
            f"{r['cameras']:7d} | {r['batched_windows_per_s']:17.3f} | "
            f"{r['sequential_windows_per_s']:10.3f} | "
            f"{r['batched_windows_per_s'] / r['sequential_windows_per_s']:5.2f} | "
            f"{r['batched_latency_s']:13.2f} s | {r['sequential_mean_latency_s']:.2f} s / "
            f"{r['sequential_last_latency_s']:.2f} s"
        )
    age, push = live["age_ms"], live["push_ms"]
    ages = (
        "n/a"
        if age["median"] is None
        else f"median {age['median']:.0f} ms, p90 {age['p90']:.0f} ms"
    )
    click.echo(
        f"live stream at {rate:g} Hz for {seconds:g} s ({live['pushes']} frames): push median "
        f"{push['median']:.3f} ms, p90 {push['p90']:.3f} ms; age of latest() {ages}; "
        f"{live['forecasts']} forecasts seen, {live['skipped']} frames skipped"
    )


if __name__ == "__main__":
    main()
