"""What every `lgcvd-run` command shares: the click group that turns errors and signals into
one line and an exit code, and the option sets for loading a model and writing a result.

User errors (`LgcvdError`) end in one line on stderr and exit 1. Ctrl-C exits 130 and SIGTERM
(systemd, `docker stop`, ROS launch) 143, both through the same KeyboardInterrupt clean-up, so no
output or temporary file is left (`signals.py`). No engine package or torch is imported here.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import click

from lgcvd_runtime import api
from lgcvd_runtime.backends import CHOICES
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.samplers import SAMPLERS
from lgcvd_runtime.signals import exit_code, sigterm_as_interrupt, stop_word


class Group(click.Group):
    """Runs a command with SIGTERM raised as an interrupt; maps LgcvdError to a one-line click
    error and an interrupt to its exit code (130 Ctrl-C, 143 SIGTERM)."""

    def invoke(self, ctx: click.Context):
        try:
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except LgcvdError as err:
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt as err:
            what = stop_word(err)
            click.echo(f"{what}; no output was written", err=True)
            raise click.exceptions.Exit(exit_code(err)) from None


def _apply(options, command):
    return reduce(lambda f, option: option(f), reversed(options), command)


def model_options(command):
    """--model, --backend, --sampler, --steps, --seed, --threads: how to load and sample."""
    return _apply(model_option_list(), command)


def model_option_list(seed: int | None = None) -> list:
    """The options of `model_options`; a `seed` makes runs repeatable by default (evaluations)."""
    seed_help = "(default: random)" if seed is None else f"[default: {seed}]"
    return [
        click.option(
            "--model",
            "bundle",
            type=click.Path(path_type=Path),
            default=None,
            help="Bundle folder NAME.lgcvd made by lgcvd-export (default: the shipped model).",
        ),
        click.option(
            "--backend",
            type=click.Choice(CHOICES),
            default="auto",
            show_default=True,
            help="Inference engine; auto picks the fastest usable one and says which.",
        ),
        click.option(
            "--sampler",
            type=click.Choice(SAMPLERS),
            default=api.DEFAULT_SAMPLER,
            help="Reverse-diffusion sampler. Default: ddpm with 50 steps, which matched the "
            "paper's 100-step ddpm; dpmpp with 10 steps is over 4x faster, with the same "
            "per-frame quality and a worse FVD. Measurements: docs/results.md, sampler study.",
        ),
        click.option(
            "--steps",
            type=click.IntRange(min=1),
            default=api.DEFAULT_STEPS,
            show_default=True,
            help="Denoising steps per window.",
        ),
        click.option(
            "--seed",
            type=int,
            default=seed,
            help=f"Seed for all noise, a whole number >= 0 {seed_help}.",
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="CPU threads for onnxruntime (default: one per physical core).",
        ),
    ]


def output_options(command):
    """-o, --samples, --force, --fps, --every, --quiet: what to write and how."""
    options = [
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Output: .mp4 (to share), .mkv (lossless: use it to measure), .gif (to look "
            "at) or .png (a labelled grid of the frames).",
        ),
        click.option(
            "--samples",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Samples to draw (one batch); side by side in a video, one row each in a .png.",
        ),
        click.option("--force", is_flag=True, help="Overwrite the output if it exists."),
        click.option(
            "--fps",
            type=float,
            default=None,
            help="Output frame rate, frames per second (default: the input's, else 10).",
        ),
        click.option(
            "--every",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="In a .png grid, show every K-th made frame (given frames always).",
        ),
        click.option("--quiet", is_flag=True, help="No progress or notes on stderr."),
    ]
    return _apply(options, command)


def load_model(bundle, backend, sampler, steps, seed, threads, quiet) -> api.Model:
    """`api.load` with the model options; notes (the backend auto chose) to stderr unless quiet."""
    log = None if quiet else (lambda line: click.echo(line, err=True))
    return api.load(
        bundle, backend=backend, sampler=sampler, steps=steps, seed=seed, log=log, threads=threads
    )
