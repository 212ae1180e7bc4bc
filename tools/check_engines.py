"""Compare a bundle's native TensorRT engines with onnxruntime (CPU) on random inputs (GPU only).

Uses the runtime's own backends, so it checks exactly what `lgcvd-run --backend tensorrt` runs:
engines are loaded from the bundle's `engines/` folder (built there by `lgcvd-export --tensorrt`,
or built now if missing or stale), strongly typed, on TensorRT 10 or 11; buffers are pycuda's
(the runtime's TensorRT backend). The denoiser runs twice, enqueued and replayed as a CUDA graph,
and both are compared. Relative error = max|trt - ort| / max|ort|, per output tensor, largest
reported.

    .venv/bin/python tools/check_engines.py bair.lgcvd
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.backends.trt_backend import TrtBackend
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.chassis import Command

# TensorRT runs fp32 graphs with TF32 matmuls/convolutions by default, hence not 1e-4; int8
# kernels round differently from onnxruntime's CPU ones (unverified here: see docs/precision.md).
TOLERANCE = {"fp32": 5e-3, "fp16": 2e-2, "int8": 5e-2}


def rel_err(got, want) -> float:
    return max(
        float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-12))
        for g, w in zip(got, want, strict=True)
    )


def random_call(manifest, batch: int, rng) -> tuple[np.ndarray, ...]:
    """(prev, x_t, t, cond) for one batch size, shapes from the manifest."""
    spec = manifest.model
    s = spec.image_size
    prev, x_t = rng.uniform(-1, 1, (2, batch, spec.window_channels, s, s)).astype(np.float32)
    t = rng.integers(0, manifest.schedule.T, batch).astype(np.float32)
    cond = rng.uniform(-1, 1, (batch, spec.cond_channels, s, s)).astype(np.float32)
    return prev, x_t, t, cond


@click.command(cls=Command)
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
def main(bundle: Path, seed: int) -> None:
    """Run BUNDLE's TensorRT engines and onnxruntime on the same inputs; exit 1 on a mismatch."""
    manifest = load_manifest(bundle)
    trt = load_backend("tensorrt", bundle, manifest, log=click.echo)
    graphed = TrtBackend(bundle, manifest, cuda_graph=True)
    ref = load_backend("onnxruntime", bundle, manifest)
    tol, rng, worst = TOLERANCE[manifest.precision], np.random.default_rng(seed), 0.0
    for batch in sorted({1, manifest.max_batch}):
        prev, x_t, t, cond = random_call(manifest, batch, rng)
        ctx_trt, ctx_ref = trt.encode(prev), ref.encode(prev)
        out_trt = trt.denoise(x_t, t, cond, ctx_ref)
        out_ref = ref.denoise(x_t, t, cond, ctx_ref)
        out_graph = graphed.denoise(x_t, t, cond, ctx_ref)
        errs = (
            rel_err(ctx_trt, ctx_ref) if ctx_ref else 0.0,
            rel_err([out_trt], [out_ref]),
            rel_err([out_graph], [out_ref]),
        )
        click.echo(
            f"batch {batch}: context {errs[0]:.2e}, denoiser {errs[1]:.2e}, "
            f"denoiser as CUDA graph {errs[2]:.2e} (limit {tol:.0e})"
        )
        worst = max(worst, *errs)
    if not worst <= tol:
        raise click.ClickException(f"TensorRT engines differ from onnxruntime by {worst:.2e}")
    click.echo("engines match onnxruntime")


if __name__ == "__main__":
    main()
