"""Predictions of several bundles of one model against one of them, same clips, same seed.

Each bundle's graphs run the runtime's `Pipeline` on onnxruntime (CPU), in batches of 8 clips,
with the same noise (DPM-Solver++ by default); the predicted frames of each are compared with
the reference bundle's (PSNR / SSIM, mean over clips and frames), and each with the real frames.
Frames: the first `--frames` predicted ones (26: video frames 3-28 with p = 2).

    .venv/bin/python research/precision_agreement.py --data /work/data/pushsim_test.npy \\
        fp32=B/default-fp32.lgcvd fp16=B/default-fp16.lgcvd int8=B/default-int8.lgcvd
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from lgcvd_export.int8_gate import mean_scores
from lgcvd_export.parity import Sessions
from lgcvd_export.quantize import GraphRunner, predict
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.conditioning import to_model
from lgcvd_runtime.schedule import respace
from lgcvd_train.data.arrays import load_videos


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundles", nargs=-1, required=True)
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Video array.")
@click.option("--clips", type=click.IntRange(1), default=64, show_default=True, help="Clips.")
@click.option("-p", type=click.IntRange(1), default=2, show_default=True, help="Given frames.")
@click.option("-n", type=click.IntRange(1), default=28, show_default=True, help="Predicted.")
@click.option("--frames", type=click.IntRange(1), default=26, show_default=True, help="Scored.")
@click.option("--sampler", default="dpmpp", show_default=True, help="Sampler.")
@click.option("--steps", type=click.IntRange(1), default=10, show_default=True, help="Steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed.")
def main(bundles, data, clips, p, n, frames, sampler, steps, seed) -> None:
    """Compare LABEL=BUNDLE predictions with the first one's (the reference)."""
    videos = to_model(load_videos(data)[:clips, : p + n])
    out = {}
    for item in bundles:
        label, path = item.split("=", 1)
        manifest = load_manifest(Path(path))
        runner = GraphRunner(Sessions(Path(path), list(manifest.graphs)))
        plan = respace(manifest.schedule, steps)
        parts = [
            predict(runner, manifest.model, plan, sampler, videos[i : i + 8], p, n, seed)
            for i in range(0, len(videos), 8)
        ]
        out[label] = np.concatenate(parts)[:, :frames]
    ref, real = next(iter(out)), videos[:, p : p + frames]
    for label, pred in out.items():
        if label != ref:
            click.echo(f"{label} vs {ref}: PSNR %.2f dB, SSIM %.4f" % mean_scores(pred, out[ref]))
    for label, pred in out.items():
        click.echo(f"{label} vs real frames: PSNR %.2f dB, SSIM %.4f" % mean_scores(pred, real))


if __name__ == "__main__":
    main()
