"""Whole-pipeline speed: the torch-free runtime against the torch reference sampler.

Both run the same model (a checkpoint, or a random-init preset), the same sampler settings and
the same seed on the same given frames, one after the other in one process: `lgcvd_runtime.load`
on the exported bundle (onnxruntime, CPU) and `reference_pipeline` (torch eager). Prints the
median wall time of a full prediction for each, their ratio and the largest difference between
the two predictions.

    .venv/bin/python tools/bench_pipeline.py --preset small -n 12 --steps 20
    .venv/bin/python tools/bench_pipeline.py --checkpoint runs/default -n 28
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
import torch

import lgcvd_runtime
from benchlib import median_ms, random_checkpoint, sampler_option
from lgcvd_export import ExportOptions, export_bundle
from lgcvd_runtime.cli.options import count_option
from lgcvd_runtime.conditioning import to_model, to_uint8
from lgcvd_runtime.pipeline import row_generators
from lgcvd_runtime.timeline import Timeline
from lgcvd_train.checkpoint import load_model
from lgcvd_train.torch_backend import reference_pipeline


@click.command()
@click.option(
    "--preset",
    "preset_name",
    default="small",
    show_default=True,
    help="Random-init preset to use when no --checkpoint is given.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory or checkpoint file (EMA weights).",
)
@count_option("-n", "n", default=12, help="Frames to predict from 2 given frames.")
@sampler_option("Sampler of both sides.")
@count_option("--steps", default=20, help="Denoising steps per window.")
@count_option("--samples", default=1, help="Samples per prediction (one batch).")
@count_option("--repeats", default=3, help="Timed predictions per side.")
@count_option("--threads", default=2, help="Threads for torch and onnxruntime alike.")
def main(preset_name, checkpoint, n, sampler, steps, samples, repeats, threads):
    """Time the runtime and the torch reference on the same prediction."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_file = checkpoint or random_checkpoint(preset_name, Path(tmp) / "run")
        model, ckpt = load_model(ckpt_file)
        bundle = Path(tmp) / "model.lgcvd"
        export_bundle(model, ckpt, ckpt_file, bundle, ExportOptions(), echo=lambda line: None)
        size = model.cfg.image_size
        given = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)

        runtime = lgcvd_runtime.load(
            bundle, backend="onnxruntime", sampler=sampler, steps=steps, threads=threads
        )
        torch_ref = reference_pipeline(model, sampler, steps, schedule=ckpt.schedule)

        def run_runtime():
            timeline = Timeline.prediction(np.repeat(given[None], samples, 0), n, torch_ref.spec)
            for w in runtime.predict(given, n, samples, seed=0):
                timeline.write(w.start, w.frames)
            return timeline.video

        def run_torch():
            timeline = Timeline.prediction(
                np.repeat(to_model(given)[None], samples, 0), n, torch_ref.spec
            )
            for _ in torch_ref.fill(timeline, row_generators(0, samples)):
                pass
            return to_uint8(timeline.video)

        out_rt, out_pt = run_runtime(), run_torch()  # also the warm-up calls
        t_rt = median_ms(run_runtime, repeats) / 1000
        t_pt = median_ms(run_torch, repeats) / 1000
    diff = int(np.abs(out_rt.astype(int) - out_pt.astype(int)).max())
    name = checkpoint or preset_name
    click.echo(
        f"model {name}: predict {n} frames from 2, {sampler} {steps} steps, "
        f"{samples} sample(s), {threads} thread(s), median of {repeats}"
    )
    click.echo(f"runtime (onnxruntime CPU) {t_rt:7.2f} s   {samples * n / t_rt:6.2f} frames/s")
    click.echo(f"torch reference (eager)   {t_pt:7.2f} s   {samples * n / t_pt:6.2f} frames/s")
    click.echo(f"speed-up {t_pt / t_rt:.2f}x; largest pixel difference {diff} (uint8)")


if __name__ == "__main__":
    main()
