"""`lgcvd-run bench`: how fast a loaded bundle runs on its backend.

Times the two graphs on their own (one context call per window, one denoiser call per step),
the check that a denoiser output is finite (run on every call), then whole windows through the
pipeline (the context call, every step, conditioning and sampler arithmetic), on random inputs
of the manifest's shapes. Reports median and 90th percentile over
repeats, after one warm-up call each, plus the process's peak resident memory. The plan timed is
the model's (`api.Model.plan`: the options, else the bundle's, else the default), said with its
source. Knows no engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from lgcvd_runtime.api import Model
from lgcvd_runtime.backends.graph_io import concrete_shape
from lgcvd_runtime.pipeline import check_finite

PLAN_SOURCES = {"options": "as given", "bundle": "the bundle's plan", "default": "the default"}


@dataclass(frozen=True)
class BenchResult:
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
    peak_rss_mb: float | None  # whole process, from getrusage (None where unsupported)

    def to_dict(self) -> dict:
        return asdict(self)


def _latency_ms(call: Callable[[], object], repeats: int) -> dict:
    call()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        call()
        times.append((time.perf_counter() - begin) * 1e3)
    return {"median": float(np.median(times)), "p90": float(np.percentile(times, 90))}


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
