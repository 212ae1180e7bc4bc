"""`lgcvd-export`: a training checkpoint -> a model bundle NAME.lgcvd (docs/design.md, Bundle).

Loads the EMA weights, exports the context and denoiser graphs, optionally converts them to fp16
or quantizes them to int8 (then also gated end to end against the fp32 graphs) and builds
TensorRT engines, and writes the bundle only if the gates pass. Errors are one line and leave
nothing behind; so do Ctrl-C (exit 130) and SIGTERM (exit 143), through the command-line
chassis (`lgcvd_runtime.cli.chassis`); a stop once the bundle is in place says so and exits 0.
Torch and onnx are imported only once the command runs, so a runtime-only install gets a
one-line "install the train extra" instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path

import click

from lgcvd_runtime.cli.chassis import HELP, Command, Finished, when_stopped
from lgcvd_runtime.cli.options import count_option
from lgcvd_runtime.errors import DataError
from lgcvd_runtime.files import file_in_the_way, refuse_existing
from lgcvd_train.extra import train_extra

from .options import ExportOptions, GateTolerance


@click.command(cls=Command, context_settings=HELP)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="Bundle to write."
)
@click.option("--fp16", is_flag=True, help="fp16 weights and arithmetic (norms, softmax in fp32).")
@click.option(
    "--int8",
    is_flag=True,
    help="int8 Q/DQ graphs, calibrated along sampler trajectories on real clips and gated end "
    "to end against the fp32 export (for TensorRT; on this CPU see docs/precision.md).",
)
@click.option(
    "--calib-frames",
    type=click.Path(path_type=Path),
    help="int8 calibration clips (.npy/.npz video array, e.g. the training clips) "
    "[default: --real-frames].",
)
@click.option(
    "--gate-frames",
    type=click.Path(path_type=Path),
    help="Held-out real clips for the int8 end-to-end gate [default: --real-frames].",
)
@count_option("--gate-clips", default=ExportOptions.gate_clips, help="Clips per gate.")
@click.option(
    "--gate-min-psnr",
    type=float,
    default=GateTolerance.min_psnr,
    show_default=True,
    help="int8 gate: least PSNR (dB) of int8 predictions against the fp32 ones.",
)
@click.option(
    "--gate-min-ssim",
    type=float,
    default=GateTolerance.min_ssim,
    show_default=True,
    help="int8 gate: least SSIM of int8 predictions against the fp32 ones.",
)
@click.option("--tensorrt", is_flag=True, help="Also build this machine's TensorRT engines.")
@click.option(
    "--cuda-graph",
    is_flag=True,
    help="With --tensorrt: check CUDA-graph replay of the denoiser and make it the bundle's default.",
)
@count_option("--max-batch", default=ExportOptions.max_batch, help="Largest batch.")
@count_option("--opset", least=13, most=21, default=ExportOptions.opset, help="ONNX opset.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option(
    "--real-frames",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Real clips for the parity gate: a .npy/.npz video array like lgcvd-train's, such as "
    "held-out clips of the run's data [default: random frames only].",
)
@click.option(
    "--calibrate",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Held-out clips of the training distribution (a .npy/.npz video array, a video, a "
    "folder of videos or a bag): record the input score's percentiles, for lgcvd-run's "
    "out-of-distribution warning (docs/ood.md) [default: the run's own data].",
)
@click.option(
    "--calibrate-topic",
    default=None,
    help="Camera topic of the bag that calibrates (--calibrate's, else the run's data; "
    "default: each bag's only image topic).",
)
def main(
    checkpoint: Path,
    output: Path,
    fp16: bool,
    int8: bool,
    calib_frames: Path | None,
    gate_frames: Path | None,
    gate_clips: int,
    gate_min_psnr: float,
    gate_min_ssim: float,
    tensorrt: bool,
    cuda_graph: bool,
    max_batch: int,
    opset: int,
    force: bool,
    real_frames: Path | None,
    calibrate: Path | None,
    calibrate_topic: str | None,
) -> None:
    """Export CHECKPOINT (a run directory or its checkpoint.safetensors) as a bundle."""
    before = _identity(output)

    def stopped(word: str) -> str:
        if _identity(output) not in (None, before):  # the stop came once the bundle was in place
            return Finished(f"{word} after writing {output}; the bundle is complete")
        return f"{word}; no bundle written to {output}"

    when_stopped(stopped)
    if fp16 and int8:
        raise click.UsageError("--fp16 and --int8 exclude each other; choose one precision")
    if cuda_graph and not tensorrt:
        raise click.UsageError("--cuda-graph needs --tensorrt (it checks this machine's engines)")
    with train_extra("lgcvd-export"):
        from lgcvd_train.checkpoint import load_model

        from .bundle_writer import export_bundle
        from .trt_build import require_tensorrt
    opts = ExportOptions(
        precision="int8" if int8 else "fp16" if fp16 else "fp32",
        max_batch=max_batch,
        opset=opset,
        tensorrt=tensorrt,
        force=force,
        real_frames=real_frames,
        cuda_graph=cuda_graph,
        calib_frames=calib_frames,
        gate_frames=gate_frames,
        gate_clips=gate_clips,
        gate=GateTolerance(gate_min_psnr, gate_min_ssim),
        calibrate=calibrate,
        calibrate_topic=calibrate_topic,
    )
    if (blocker := file_in_the_way(output.parent)) is not None:
        raise click.ClickException(
            f"{blocker} is a file, not a directory; pass -o a bundle path inside a directory"
        )
    try:
        refuse_existing(output, force)
        if tensorrt:
            require_tensorrt()
        model, ckpt = load_model(checkpoint, ema=True)
        if real_frames is None:
            click.echo("no --real-frames: the parity gate uses random frames only")
        elif not real_frames.is_file():
            raise DataError(f"{real_frames} does not exist; pass --real-frames an existing array")
        export_bundle(model, ckpt, checkpoint, output, opts, echo=click.echo)
    except OSError as e:  # a full disk, a lost mount: the temporary bundle is gone already
        raise click.ClickException(
            f"{output}: cannot write the bundle ({e}); no bundle written"
        ) from None
    click.echo(f"wrote {output} ({opts.precision}, max batch {max_batch})")


def _identity(path: Path) -> int | None:
    """The inode of `path` (a finished bundle is renamed into place: a new inode), or None."""
    try:
        return path.stat().st_ino
    except OSError:
        return None
