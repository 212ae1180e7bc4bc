"""`lgcvd-run bench`: how fast a loaded bundle runs on its backend.

Times the two graphs on their own (one context call per window, one denoiser call per step),
the check that a denoiser output is finite (run on every call), then whole windows through the
pipeline (the context call, every step, conditioning and sampler arithmetic), on random inputs
of the manifest's shapes. Reports median and 90th percentile over
repeats, after one warm-up call each, plus the process's peak resident memory. The plan timed is
the model's (`api.Model.plan`: the options, else the bundle's, else the default), said with its
source. `--compare` adds rows, each a model loaded beside the first (`parse_compare`) and timed
after it in the same process, so the memory reported is the whole run's, never one model's.
`live_age` pushes frames into a model's live stream on the wall clock and reads its newest
forecast's age, what a control loop sees. Knows no engine.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.api import Model
from lgcvd_runtime.backends.graph_io import concrete_shape
from lgcvd_runtime.cli.options import (
    count_option,
    load_model,
    model_options,
    positive_option,
    score_every_option,
)
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.pipeline import check_finite
from lgcvd_runtime.samplers import SAMPLERS
from lgcvd_runtime.schedule import SPACINGS

PLAN_SOURCES = {"options": "as given", "bundle": "the bundle's plan", "default": "the default"}


@dataclass(frozen=True)
class BenchResult:
    bundle: str  # the bundle folder timed
    backend: str
    sampler: str
    steps: int
    plan: str  # where sampler and steps came from: "options", "bundle" or "default"
    timesteps: list[int]  # the original indices the denoiser sees, ascending
    samples: int  # batch of every call
    repeats: int
    context_ms: dict  # {"median": ..., "p90": ...} per context-graph call
    denoiser_ms: dict  # per denoiser-graph call
    finite_check_ms: dict  # the NaN / Inf check of one denoiser output
    window_ms: dict  # per window: 1 context call + `steps` denoiser calls + numpy work
    frames_per_second: float  # new frames (all samples) per second, from the median window
    peak_rss_mb: float | None  # whole process so far, from getrusage (None where unsupported)
    live: dict | None = None  # `live_age`, where asked for

    def to_dict(self) -> dict:
        return asdict(self)


def _spread(values: Sequence[float]) -> dict:
    """{"median": ..., "p90": ...} of `values` (None for none)."""
    if not values:
        return {"median": None, "p90": None}
    return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90))}


def _latency_ms(call: Callable[[], object], repeats: int) -> dict:
    call()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1e3)
    return _spread(times)


def peak_rss_mb() -> float | None:
    """Peak resident set size of this process in MiB (ru_maxrss is KiB on Linux)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_bench(model: Model, samples: int = 1, repeats: int = 10, windows: int = 3) -> BenchResult:
    """Benchmark `model` (already loaded) at batch `samples`."""
    rng = np.random.default_rng(0)
    graphs, spec, backend = model.manifest.graphs, model.manifest.model, model.backend
    x_spec, _, cond_spec = graphs["denoiser"].inputs[:3]
    prev = rng.uniform(-1, 1, concrete_shape(x_spec, samples)).astype(np.float32)  # same shape
    context = backend.encode(prev)
    x_t = rng.standard_normal(concrete_shape(x_spec, samples), dtype=np.float32)
    cond = rng.uniform(0, 1, concrete_shape(cond_spec, samples)).astype(np.float32)
    t = np.full((samples,), model.manifest.schedule.T // 2, dtype=np.float32)
    given = rng.integers(0, 256, (spec.cond_slots, model.size, model.size, 3), dtype=np.uint8)
    out = backend.denoise(x_t, t, cond, context)
    finite_ms = _latency_ms(lambda: check_finite((out,), "denoiser", "", backend.name), 100)
    window_ms = _latency_ms(lambda: list(model.predict(given, spec.new_frames, samples)), windows)
    settings = model.pipeline.settings
    return BenchResult(
        bundle=str(model.bundle),
        backend=backend.name,
        sampler=settings.sampler,
        steps=settings.plan.steps,
        plan=model.plan.source,
        timesteps=[int(t) for t in settings.plan.timesteps],
        samples=samples,
        repeats=repeats,
        context_ms=_latency_ms(lambda: backend.encode(prev), repeats),
        denoiser_ms=_latency_ms(lambda: backend.denoise(x_t, t, cond, context), repeats),
        finite_check_ms=finite_ms,
        window_ms=window_ms,
        frames_per_second=samples * spec.new_frames / (window_ms["median"] / 1e3),
        peak_rss_mb=peak_rss_mb(),
    )


def format_result(r: BenchResult) -> str:
    """The human-readable report of `lgcvd-run bench`."""

    def row(name: str, ms: dict) -> str:
        return f"  {name:<16} median {ms['median']:9.2f} ms   p90 {ms['p90']:9.2f} ms"

    memory = "n/a" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f} MiB (whole process)"
    return "\n".join(
        [
            f"backend {r.backend}, sampler {r.sampler}, {r.steps} steps ({PLAN_SOURCES[r.plan]}), "
            f"batch {r.samples}",
            row("context call", r.context_ms),
            row("denoiser call", r.denoiser_ms),
            f"  {'finite check':<16} median {1e3 * r.finite_check_ms['median']:9.1f} us   "
            f"({100 * r.finite_check_ms['median'] / r.denoiser_ms['median']:.3f}% of a "
            "denoiser call)",
            row("window", r.window_ms),
            f"  frames per second {r.frames_per_second:.2f}",
            f"  peak memory       {memory}",
        ]
    )


SPEC_FORMS = (
    "BUNDLE, SAMPLER:STEPS[:SPACING] or BUNDLE:SAMPLER:STEPS[:SPACING], e.g. dpmpp:10 or "
    "ddpm:2:trailing"
)


def parse_compare(spec: str) -> dict:
    """A --compare SPEC -> the load options its row takes in place of the first row's: BUNDLE
    (its own plan), SAMPLER:STEPS[:SPACING] (the first row's bundle at that plan) or
    BUNDLE:SAMPLER:STEPS[:SPACING], read from the right: a last part that is a spacing ends a
    plan; before it, two parts that are a sampler and a whole number are the plan; where only
    one of them is, the SPEC is refused, else the whole SPEC is a bundle path."""
    parts = ["", *spec.split(":")]
    spacing = parts.pop() if parts[-1] in SPACINGS and len(parts) > 2 else None
    *head, sampler, steps = parts
    if spacing is None and not (sampler in SAMPLERS or (steps.isascii() and steps.isdigit())):
        if not spec:
            raise LgcvdError(f"--compare got an empty SPEC; give {SPEC_FORMS}")
        return {"bundle": Path(spec), "sampler": None, "steps": None, "spacing": None}
    if sampler not in SAMPLERS:
        raise LgcvdError(
            f"--compare {spec}: {sampler!r} is not a sampler ({', '.join(SAMPLERS)}); "
            f"give {SPEC_FORMS}"
        )
    if not (steps.isascii() and steps.isdigit()):
        raise LgcvdError(
            f"--compare {spec}: steps {steps!r} is not a whole number; give {SPEC_FORMS}"
        )
    plan = {"sampler": sampler, "steps": int(steps), "spacing": spacing}
    bundle = ":".join(head[1:])
    return {"bundle": Path(bundle), **plan} if bundle else plan


def live_age(
    model: Model,
    hz: float,
    seconds: float,
    frames: np.ndarray | None = None,
    score_every: int = 1,
    p: int = 2,
    n: int | None = None,
) -> dict:
    """Push `frames` (default: random ones of the model's size) in turn into `model.live` (p
    given frames, n made (None: one window), one camera, the input scored as `score_every` says) at `hz` on the wall clock
    for `seconds`, reading `latest()` after each push: how long a push takes, the ages of the
    forecasts read (ms from a forecast's newest given frame to the read), how many forecasts
    were read, and the frames the stream skipped (no forecast used them) or thinned (off the
    model's period)."""
    if not math.isfinite(hz * seconds):
        raise LgcvdError(f"--live {hz} for {seconds} s never ends; give finite numbers")
    pushes = max(1, round(hz * seconds))
    if frames is None:
        frames = np.random.default_rng(0).integers(0, 256, (8, model.size, model.size, 3), np.uint8)
    ages, seen, push_ms = [], set(), []
    with model.live(p, n, camera_period_s=1 / hz, score_every=score_every) as stream:
        begin = time.monotonic()
        for k in range(pushes):
            time.sleep(max(0.0, begin + k / hz - time.monotonic()))
            start = time.perf_counter()
            stream.push(frames[k % len(frames)])
            push_ms.append((time.perf_counter() - start) * 1e3)
            forecast = stream.latest()
            if forecast is not None:
                ages.append(forecast.age * 1e3)
                seen.add(forecast.frame_index)
        skipped, thinned = stream.skipped, stream.thinned
    return {
        "hz": hz,
        "seconds": seconds,
        "pushes": pushes,
        "score_every": score_every,
        "push_ms": _spread(push_ms),
        "forecasts": len(seen),
        "age_ms": _spread(ages),
        "skipped": skipped,
        "thinned": thinned,
    }


def windows_of(repeats: int) -> int:
    """Windows timed per row: a third as many as the graphs' calls, at least 2."""
    return max(2, repeats // 3)


def bench_rows(models: Sequence[Model], samples: int, repeats: int, live=None) -> list:
    """`run_bench` of each model in turn (`windows_of` windows), a list of `BenchResult`;
    `live`: the options (hz, seconds, score_every) of a `live_age` run after each timing."""
    rows = []
    for model in models:
        row = run_bench(model, samples, repeats, windows=windows_of(repeats))
        if live is not None:
            row = replace(row, live=live_age(model, **live), peak_rss_mb=peak_rss_mb())
        rows.append(row)
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[BenchResult]) -> str:
    """One line per row of a run with --compare or --live (its speed-up: the first row's
    window over its own), then what the numbers are."""
    first, live = rows[0], rows[0].live is not None
    head = f"{'bundle':<20} {'sampler':<9} {'steps':>5}  {'plan':<17} {'window ms':>9} {'p90':>8}"
    head += f" {'frames/s':>9} {'speed-up':>8}"
    lines = [head + (f"  {'age ms':>8} {'p90':>8} {'forecasts':>9} {'skipped':>7}" if live else "")]
    for r in rows:
        window, speed_up = r.window_ms, first.window_ms["median"] / r.window_ms["median"]
        line = f"{Path(r.bundle).name:<20} {r.sampler:<9} {r.steps:>5}  {PLAN_SOURCES[r.plan]:<17}"
        line += f" {_ms(window['median']):>9} {_ms(window['p90']):>8}"
        line += f" {r.frames_per_second:>9.2f} {speed_up:>7.2f}x"
        if r.live is not None:
            age = r.live["age_ms"]
            line += f"  {_ms(age['median']):>8} {_ms(age['p90']):>8}"
            line += f" {r.live['forecasts']:>9} {r.live['skipped']:>7}"
        lines.append(line)
    lines.append(
        f"backend {', '.join(dict.fromkeys(r.backend for r in rows))}, batch {first.samples}; "
        f"window: median and p90 of {windows_of(first.repeats)} windows after a warm-up"
    )
    if live:
        lines.append(
            f"age: from a forecast's newest given frame to latest(), read at each push of "
            f"{first.live['hz']:g} Hz for {first.live['seconds']:g} s; forecasts: those read"
        )
    memory = "n/a" if rows[-1].peak_rss_mb is None else f"{rows[-1].peak_rss_mb:.0f} MiB"
    lines.append(f"peak memory {memory}: the whole run's (every row, one process), no one model's")
    return "\n".join(lines)


@click.command()
@model_options
@count_option("--samples", default=1, help="Batch size of every call.")
@count_option(
    "--repeats",
    default=10,
    help="Timed calls per graph (windows: a third as many, at least 2).",
)
@click.option(
    "--compare",
    "specs",
    multiple=True,
    metavar="SPEC",
    help="Also time another row, after --model's, in the same run (repeatable, in order): "
    "BUNDLE (another bundle at its own plan, e.g. a distilled student's), SAMPLER:STEPS "
    "(--model at that plan) or BUNDLE:SAMPLER:STEPS. --sampler, --steps and --spacing are the "
    "first row's only.",
)
@positive_option(
    "--live",
    "live_hz",
    metavar="HZ",
    default=None,
    show_default=False,
    help="Also push frames into each row's live stream (p 2, one camera) at HZ for "
    "--live-seconds, reading latest() at each push: its forecast's age (from the newest given "
    "frame), the forecasts read, the frames skipped.",
)
@positive_option("--live-seconds", default=10.0, help="How long each row's --live run lasts.")
@score_every_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the result as JSON on stdout: one object, or with --compare a list of them, "
    "one per row in order.",
)
def bench(samples, repeats, specs, live_hz, live_seconds, score_every, as_json, **load):
    """Latency of the context and denoiser graphs, per window, frames per second, peak memory;
    with --compare, a row per model, and with --live, each live stream's forecast age."""
    changes = [parse_compare(spec) for spec in specs]  # every SPEC's form before any load
    with ExitStack() as stack:
        models = [stack.enter_context(load_model(quiet=as_json, **load))]
        for spec, change in zip(specs, changes, strict=True):
            try:
                models.append(stack.enter_context(load_model(quiet=as_json, **load | change)))
            except LgcvdError as err:
                named = str(err) if str(err).startswith(spec) else f"{spec}: {err}"
                raise LgcvdError(f"--compare {named}") from None
        pace = {"hz": live_hz, "seconds": live_seconds, "score_every": score_every}
        pace = None if live_hz is None else pace
        rows = bench_rows(models, samples, repeats, pace)
    if as_json:
        report = [r.to_dict() for r in rows] if specs else rows[0].to_dict()
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(format_table(rows) if specs or pace else format_result(rows[0]))
