"""Export presets from random-init checkpoints and time onnxruntime (CPU) against torch eager.

For each preset: a random-init checkpoint (its zero-initialised output layers re-drawn, so every
block contributes), fp32 and fp16 bundles through `export_bundle` (parity gate included), graph
sizes, and the median time of one denoiser call at batch 1. Everything lives in a temporary
folder that is deleted at the end.

    .venv/bin/python tools/bench_export.py --preset small --preset paper-bair64
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch
from lgcvd_export import ExportOptions, export_bundle
from lgcvd_export.cli import DEFAULT_REAL_FRAMES

from lgcvd_runtime.bundle import load_manifest
from lgcvd_train.benchmarks import median_ms, random_checkpoint
from lgcvd_train.checkpoint import load_model
from lgcvd_train.model import LGCVD


def denoiser_inputs(model: LGCVD) -> list[np.ndarray]:
    cfg, rng = model.cfg, np.random.default_rng(0)
    s = cfg.image_size
    prev = rng.uniform(-1, 1, (1, 3 * cfg.frames, s, s)).astype(np.float32)
    with torch.no_grad():
        ctx = [c.numpy() for c in model.context(torch.from_numpy(prev))]
    x_t = rng.standard_normal(prev.shape).astype(np.float32)
    cond = rng.uniform(-1, 1, (1, 4 * cfg.cond_slots, s, s)).astype(np.float32)
    return [x_t, np.array([500.0], np.float32), cond, *ctx]


def bench_preset(name: str, work: Path, repeats: int) -> list[str]:
    ckpt_path = random_checkpoint(name, work / name)
    model, ckpt = load_model(ckpt_path)
    inputs = denoiser_inputs(model)
    with torch.no_grad():
        t_in = [torch.from_numpy(a) for a in inputs]
        torch_ms = median_ms(lambda: model.denoise(*t_in[:3], tuple(t_in[3:])), repeats)
    rows = []
    for precision in ("fp32", "fp16"):
        out = work / f"{name}-{precision}.lgcvd"
        opts = ExportOptions(precision=precision, real_frames=DEFAULT_REAL_FRAMES)
        start = time.perf_counter()
        export_bundle(model, ckpt, ckpt_path, out, opts, echo=lambda _: None)
        seconds = time.perf_counter() - start
        manifest = load_manifest(out)
        sizes = {g: (out / s.file).stat().st_size / 1e6 for g, s in manifest.graphs.items()}
        sess = ort.InferenceSession(str(out / "denoiser.onnx"), providers=["CPUExecutionProvider"])
        feeds = dict(zip([i.name for i in sess.get_inputs()], inputs, strict=True))
        ort_ms = median_ms(lambda s=sess, f=feeds: s.run(None, f), repeats)
        rows.append(
            f"{name:<13} {precision:<5} {sizes.get('context', 0):>8.1f} {sizes['denoiser']:>9.1f} "
            f"{manifest.provenance['parity_max_rel_err']:>10.2e} {seconds:>8.1f} "
            f"{ort_ms:>8.1f} {torch_ms:>8.1f}"
        )
        (out / "denoiser.onnx").unlink()  # keep /tmp small while the next export runs
    return rows


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--preset",
    "presets",
    multiple=True,
    default=("small", "paper-bair64"),
    show_default=True,
    help="Model preset to export (repeatable).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Timed denoiser calls per backend (median reported).",
)
@click.option(
    "--threads",
    type=click.IntRange(1),
    default=2,
    show_default=True,
    help="torch intra-op threads (onnxruntime uses its default).",
)
def main(presets: tuple[str, ...], repeats: int, threads: int) -> None:
    """Print graph sizes, parity and batch-1 denoiser time (onnxruntime CPU vs torch eager)."""
    torch.set_num_threads(threads)
    header = (
        f"{'preset':<13} {'prec':<5} {'ctx MB':>8} {'den. MB':>9} {'max rel.err':>10} "
        f"{'export s':>8} {'ort ms':>8} {'torch ms':>8}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lgcvd-bench-") as tmp:
        for name in presets:
            rows += bench_preset(name, Path(tmp), repeats)
    click.echo("\n".join([header, *rows]))


if __name__ == "__main__":
    main()
