"""The option sets `lgcvd-run` commands share, each declared once: loading a model
(`model_options`, with `sampler_options` also used by `lgcvd-run info`, `lgcvd-serve
triton-repo` and `lgcvd-eval`) and writing a result (`output_options`). Defaults are read from
where they live: the sampler plan from `plans.py`, the backends from `backends`. Errors and
signals are the chassis's (`chassis.py`). No engine package or torch is imported here.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import click

from lgcvd_runtime import api
from lgcvd_runtime.backends import CHOICES
from lgcvd_runtime.plans import DEFAULT_PLAN, FAST_PLAN
from lgcvd_runtime.samplers import SAMPLERS

MAX_FPS = 1000.0  # Matroska stores times in milliseconds: faster rates are not kept


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
        *sampler_option_list(),
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


def sampler_options(what: str = ""):
    """--sampler and --steps, defaults from `plans.DEFAULT_PLAN`; `what` ends the sampler's
    help for this command, e.g. " the server uses"."""
    return lambda command: _apply(sampler_option_list(what), command)


def sampler_option_list(what: str = "") -> list:
    """The options of `sampler_options`."""
    default, fast = DEFAULT_PLAN, FAST_PLAN
    return [
        click.option(
            "--sampler",
            type=click.Choice(SAMPLERS),
            default=default.sampler,
            help=f"Reverse-diffusion sampler{what}. Default: {default.sampler} with "
            f"{default.steps} steps, which matched the paper's 100-step ddpm; {fast.sampler} with "
            f"{fast.steps} steps is over 4x faster, with the same per-frame quality and a worse "
            "FVD. Measurements: docs/results.md, sampler study.",
        ),
        click.option(
            "--steps",
            type=click.IntRange(min=1),
            default=default.steps,
            show_default=True,
            help="Denoising steps per window.",
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
            type=click.FloatRange(min=0, min_open=True, max=MAX_FPS),
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
