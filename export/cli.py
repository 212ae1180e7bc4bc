"""`lgcvd-export`: a training checkpoint -> a model bundle NAME.lgcvd (design.md "Bundle").

Loads the EMA weights, exports the context and denoiser graphs, optionally converts them to fp16
and builds TensorRT engines, and writes the bundle only if the parity gate passes. Errors are one
line and leave nothing behind; so do Ctrl-C (exit 130) and SIGTERM (exit 143). Torch and onnx are
imported only once the command runs, so a runtime-only install gets a one-line "install the train
extra" instead of a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import refuse_existing
from lgcvd_runtime.signals import Terminated, exit_code, sigterm_as_interrupt
from lgcvd_train.cli import file_in_the_way
from lgcvd_train.extra import train_extra

from .options import ExportOptions

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
    "--max-batch",
    type=click.IntRange(1),
    default=ExportOptions.max_batch,
    show_default=True,
    help="Largest batch.",
)
@click.option(
    "--opset",
    type=click.IntRange(13, 21),
    default=ExportOptions.opset,
    show_default=True,
    help="ONNX opset.",
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
def main(
    checkpoint: Path,
    output: Path,
    fp16: bool,
    tensorrt: bool,
    max_batch: int,
    opset: int,
    force: bool,
    real_frames: Path,
) -> None:
    """Export CHECKPOINT (a run directory or its checkpoint.safetensors) as a bundle."""
    with train_extra("lgcvd-export"):
        from lgcvd_train.checkpoint import load_model

        from .bundle_writer import export_bundle
        from .trt_build import require_tensorrt
    opts = ExportOptions(
        precision="fp16" if fp16 else "fp32",
        max_batch=max_batch,
        opset=opset,
        tensorrt=tensorrt,
        force=force,
        real_frames=real_frames,
    )
    if (blocker := file_in_the_way(output.parent)) is not None:
        raise click.ClickException(
            f"{blocker} is a file, not a directory; pass -o a bundle path inside a directory"
        )
    before = _identity(output)
    try:
        with sigterm_as_interrupt():
            refuse_existing(output, force)
            if tensorrt:
                require_tensorrt()
            model, ckpt = load_model(checkpoint, ema=True)
            if not real_frames.is_file():
                click.echo(f"{real_frames} not found: the parity gate uses random frames only")
            export_bundle(model, ckpt, checkpoint, output, opts, echo=click.echo)
    except LgcvdError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:  # a full disk, a lost mount: the temporary bundle is gone already
        raise click.ClickException(
            f"{output}: cannot write the bundle ({e}); no bundle written"
        ) from None
    except KeyboardInterrupt as e:
        how = "terminated" if isinstance(e, Terminated) else "interrupted"
        if _identity(output) not in (None, before):  # the stop came as the bundle was renamed
            click.echo(f"{how} after writing {output}", err=True)
        else:
            click.echo(f"{how}; no bundle written to {output}", err=True)
        sys.exit(exit_code(e))
    click.echo(f"wrote {output} ({opts.precision}, max batch {max_batch})")


def _identity(path: Path) -> int | None:
    """The inode of `path` (a finished bundle is renamed into place: a new inode), or None."""
    try:
        return path.stat().st_ino
    except OSError:
        return None
