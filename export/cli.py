"""`lgcvd-export`: a training checkpoint -> a model bundle NAME.lgcvd (design.md "Bundle").

Loads the EMA weights, exports the context and denoiser graphs, optionally converts them to fp16
and builds TensorRT engines, and writes the bundle only if the parity gate passes. Errors are one
line and leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import click

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import refuse_existing
from lgcvd_train.checkpoint import load_model

from .bundle_writer import ExportOptions, export_bundle
from .trt_build import require_tensorrt

# The four real BAIR clips of the project's shared data, when run from a source checkout.
DEFAULT_REAL_FRAMES = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real" / "bair_real_clips.npz"
)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Bundle to write."
)
@click.option("--fp16", is_flag=True, help="fp16 weights and arithmetic (norms, softmax in fp32).")
@click.option("--tensorrt", is_flag=True, help="Also build this machine's TensorRT engines.")
@click.option(
    "--max-batch", type=click.IntRange(1), default=8, show_default=True, help="Largest batch."
)
@click.option(
    "--opset", type=click.IntRange(13, 21), default=17, show_default=True, help="ONNX opset."
)
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option(
    "--real-frames",
    type=click.Path(path_type=Path),
    default=DEFAULT_REAL_FRAMES,
    show_default=True,
    help="Real clips for the parity gate: the real BAIR npz, or a .npy/.npz video array like "
    "lgcvd-train's (random frames only if the file is absent).",
)
@click.option(
    "--calibrate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Held-out clips of the training distribution (.npy/.npz at the model's size): record "
    "the input score's percentiles, for lgcvd-run's out-of-distribution warning (docs/ood.md).",
)
def main(
    checkpoint: Path,
    output: Path,
    fp16: bool,
    tensorrt: bool,
    max_batch: int,
    opset: int,
    force: bool,
    real_frames: Path,
    calibrate: Path | None,
) -> None:
    """Export CHECKPOINT (a run directory or its checkpoint.safetensors) as a bundle."""
    opts = ExportOptions(
        precision="fp16" if fp16 else "fp32",
        max_batch=max_batch,
        opset=opset,
        tensorrt=tensorrt,
        force=force,
        real_frames=real_frames,
        calibrate=calibrate,
    )
    try:
        refuse_existing(output, force)
        if tensorrt:
            require_tensorrt()
        model, ckpt = load_model(checkpoint, ema=True)
        if not real_frames.is_file():
            click.echo(f"{real_frames} not found: the parity gate uses random frames only")
        export_bundle(model, ckpt, checkpoint, output, opts, echo=click.echo)
    except LgcvdError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {output} ({opts.precision}, max batch {max_batch})")
