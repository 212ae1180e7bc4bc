"""Export presets from random-init checkpoints and time onnxruntime (CPU) against torch eager.

For each preset: a random-init checkpoint (its zero-initialised output layers re-drawn, so every
block contributes), fp32 and fp16 bundles through `export_bundle` (parity gate included), graph
sizes, and the median time of one denoiser call at batch 1. Everything lives in a temporary
folder that is deleted at the end.

    .venv/bin/python tools/bench_export.py --preset small --preset paper-bair64

With --checkpoint and --int8-choice, instead: for a trained checkpoint, each choice of ops kept
in float (`lgcvd_export.quantize.FLOAT_OPS`) is quantized from one fp32 export with the same
calibration, and its per-call parity (worst relative error against torch, the export's parity
checks) and batch-1 context / denoiser call times (median) are printed beside fp32's.

    .venv/bin/python tools/bench_export.py --checkpoint RUN --int8-choice none \
        --int8-choice weighted-io --calib-frames CLIPS.npy --real-frames CLIPS.npy
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import onnxruntime as ort
import torch

from benchlib import median_ms, random_checkpoint
from lgcvd_export import ExportOptions, export_bundle, int8_gate, parity
from lgcvd_export.graphs import export_model
from lgcvd_export.quantize import FLOAT_OPS
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.options import count_option
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


def bench_preset(name: str, work: Path, repeats: int, real_frames: Path | None) -> list[str]:
    ckpt_path = random_checkpoint(name, work / name)
    model, ckpt = load_model(ckpt_path)
    inputs = denoiser_inputs(model)
    with torch.no_grad():
        t_in = [torch.from_numpy(a) for a in inputs]
        torch_ms = median_ms(lambda: model.denoise(*t_in[:3], tuple(t_in[3:])), repeats)
    rows = []
    for precision in ("fp32", "fp16"):
        out = work / f"{name}-{precision}.lgcvd"
        opts = ExportOptions(precision=precision, real_frames=real_frames)
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


def call_ms(directory: Path, inputs: list[np.ndarray], prev: np.ndarray, repeats: int):
    """Median ms of one context and one denoiser call at batch 1 (onnxruntime CPU)."""
    times = []
    for graph, feed in (("context", [prev]), ("denoiser", inputs)):
        sess = ort.InferenceSession(
            str(directory / f"{graph}.onnx"), providers=["CPUExecutionProvider"]
        )
        feeds = dict(zip([i.name for i in sess.get_inputs()], feed, strict=True))
        times.append(median_ms(lambda s=sess, f=feeds: s.run(None, f), repeats))
    return times


def bench_int8(checkpoint: Path, choices, calib: Path, real: Path, work: Path, repeats: int):
    model, ckpt = load_model(checkpoint)
    inputs = denoiser_inputs(model)
    prev = np.random.default_rng(1).uniform(-1, 1, inputs[0].shape).astype(np.float32)
    fp32 = work / "fp32"
    fp32.mkdir()
    export_model(model, fp32, 17)
    checks = parity.check_parity(model, fp32, "fp32", ckpt.schedule, real)
    rows = [("fp32", max(c.rel_err for c in checks), *call_ms(fp32, inputs, prev, repeats))]
    names = ["context", "denoiser"]
    for choice in choices:
        out = work / choice
        out.mkdir()
        for name in names:
            shutil.copy(fp32 / f"{name}.onnx", out / f"{name}.onnx")
        start = time.perf_counter()
        moved = int8_gate.quantize_graphs(
            out, names, model.cfg.layout(), ckpt.schedule, calib, 8, choice
        )
        seconds = time.perf_counter() - start
        shutil.rmtree(moved)
        checks = parity.check_parity(model, out, "int8", ckpt.schedule, real)
        worst = {g: max(c.rel_err for c in checks if c.graph == g) for g in names}
        rows.append((choice, worst, *call_ms(out, inputs, prev, repeats), seconds))
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
@count_option("--repeats", default=10, help="Timed denoiser calls per backend (median reported).")
@count_option("--threads", default=2, help="torch intra-op threads (onnxruntime uses its default).")
@click.option(
    "--checkpoint", type=click.Path(path_type=Path), help="Trained run for --int8-choice."
)
@click.option(
    "--int8-choice",
    "choices",
    multiple=True,
    type=click.Choice(sorted(FLOAT_OPS)),
    help="With --checkpoint: compare these int8 choices of ops kept in float (repeatable).",
)
@click.option("--calib-frames", type=click.Path(path_type=Path), help="int8 calibration clips.")
@click.option(
    "--real-frames",
    type=click.Path(path_type=Path),
    default=None,
    help="Real clips for the parity checks [default: random frames only].",
)
def main(presets, repeats, threads, checkpoint, choices, calib_frames, real_frames) -> None:
    """Print graph sizes, parity and batch-1 denoiser time (onnxruntime CPU vs torch eager)."""
    torch.set_num_threads(threads)
    if checkpoint is not None:
        with tempfile.TemporaryDirectory(prefix="lgcvd-int8-") as tmp:
            rows = bench_int8(checkpoint, choices, calib_frames, real_frames, Path(tmp), repeats)
        click.echo(
            f"{'choice':<12} {'ctx rel.err':>11} {'den. rel.err':>12} {'ctx ms':>7} {'den. ms':>8} {'quant. s':>8}"
        )
        for name, worst, ctx_ms, den_ms, *secs in rows:
            w = worst if isinstance(worst, dict) else {"context": worst, "denoiser": worst}
            q = f"{secs[0]:8.0f}" if secs else f"{'-':>8}"
            click.echo(
                f"{name:<12} {w['context']:11.2e} {w['denoiser']:12.2e} {ctx_ms:7.1f} {den_ms:8.1f} {q}"
            )
        return
    header = (
        f"{'preset':<13} {'prec':<5} {'ctx MB':>8} {'den. MB':>9} {'max rel.err':>10} "
        f"{'export s':>8} {'ort ms':>8} {'torch ms':>8}"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lgcvd-bench-") as tmp:
        for name in presets:
            rows += bench_preset(name, Path(tmp), repeats, real_frames)
    click.echo("\n".join([header, *rows]))


if __name__ == "__main__":
    main()
