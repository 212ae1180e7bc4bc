"""The option sets `lgcvd-run` commands share, each declared once: loading a model
(`model_options`, with `sampler_options` also used by `lgcvd-run info`, `lgcvd-serve
triton-repo` and `lgcvd-eval`), writing a result (`output_options`) and fitting frames to the
model's square (`framing_options`, also used by `lgcvd-train`) and a bag's camera (`TOPIC`,
also `lgcvd-train`'s and `lgcvd-eval`'s); and the shapes every lgcvd command line's options
take (`count_option`, `positive_option`, `choice_option`, `path_option`, `switch_option`), declared once so
that each option is one declaration with its default shown. Defaults are read from
where they live: the sampler plan from `plans.py` (--sampler, --steps and --spacing default to
None: the bundle's plan, else `plans.DEFAULT_PLAN`, `plans.choose`), the backends from `backends`. Errors
and signals are the chassis's (`chassis.py`). No engine package or torch is imported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from pathlib import Path

import click

from lgcvd_runtime import api
from lgcvd_runtime.backends import CHOICES
from lgcvd_runtime.framing import FITS
from lgcvd_runtime.plans import DEFAULT_PLAN, FAST_PLAN
from lgcvd_runtime.samplers import SAMPLERS
from lgcvd_runtime.schedule import SPACINGS

MAX_FPS = 1000.0  # Matroska stores times in milliseconds: faster rates are not kept


def count_option(
    *names: str, default: int | None, help: str, least: int = 1, most: int | None = None, **extra
):
    """A whole number from `least` (to `most`, if given), its default shown."""
    kind = click.IntRange(least, most)
    return click.option(*names, type=kind, default=default, show_default=True, help=help, **extra)


def positive_option(
    *names: str, default: float | None, help: str, show_default: bool = True, **extra
):
    """A number > 0 (`extra`: e.g. a callback refusing inf), its default shown unless told not."""
    kind = click.FloatRange(0, min_open=True)
    return click.option(
        *names, type=kind, default=default, show_default=show_default, help=help, **extra
    )


def choice_option(*names: str, choices: Sequence[str], default: str | None, help: str, **extra):
    """One of `choices`, its default shown."""
    kind = click.Choice(list(choices))
    return click.option(*names, type=kind, default=default, show_default=True, help=help, **extra)


def path_option(*names: str, help: str, **extra):
    """A file or folder given as a `Path` (`extra`: default, required...); no default shown."""
    return click.option(*names, type=click.Path(path_type=Path), help=help, **extra)


def switch_option(names: str, *more: str, default: bool, help: str):
    """An on/off pair `--x/--no-x`, its default shown."""
    return click.option(names, *more, default=default, show_default=True, help=help)


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
            help=f"Seed for all noise, a whole number 0 <= seed < 2**63 {seed_help}.",
        ),
        count_option(
            "--threads",
            default=None,
            help="CPU threads for onnxruntime (default: one per physical core).",
        ),
    ]


def sampler_options(what: str = "", whose: str = "the bundle's"):
    """--sampler and --steps, not given: None (`plans.choose`); `what` ends the sampler's help
    for this command, e.g. " the server uses"; `whose` names the plan that applies first."""
    return lambda command: _apply(sampler_option_list(what, whose), command)


def sampler_option_list(what: str = "", whose: str = "the bundle's") -> list:
    """The options of `sampler_options`."""
    default, fast = DEFAULT_PLAN, FAST_PLAN
    return [
        click.option(
            "--sampler",
            type=click.Choice(SAMPLERS),
            default=None,
            help=f"Reverse-diffusion sampler{what} [default: {whose} plan, else "
            f"{default.sampler} {default.steps}]. A distilled model records its plan (sampler, "
            f"steps, timesteps); other models run {default.sampler} with {default.steps} steps "
            f"on the {default.spacing} grid, within 10 % of 50 even ddpm steps' FVD (--steps 50, "
            f"the former default; 100 is the paper's); {fast.sampler} with {fast.steps} steps is "
            "faster still, with the same per-frame quality and a worse FVD. Measurements: "
            "docs/results.md, a fast default.",
        ),
        count_option(
            "--steps",
            default=None,
            help=f"Denoising steps per window [default: {whose} plan, else {default.steps}].",
        ),
        click.option(
            "--spacing",
            type=click.Choice(SPACINGS),
            default=None,
            help=f"Grid of the steps' timesteps [default: {whose} plan, else "
            f"{default.spacing} for {default.steps} steps, even for other counts]: even runs from "
            "t = 0; trailing ends above it, so few steps all count; log-snr is uniform in log "
            "signal-to-noise. Measurements: docs/results.md, few calls per window.",
        ),
    ]


score_every_option = count_option(  # lgcvd-run live's and lgcvd-ros2's
    "--score-every",
    "score_every",
    default=1,
    least=0,
    help="Score the input (is it like the training data?) on each camera's first forecast, then "
    "every K-th (0: only each camera's first): a score costs ~0.4% of a 50-step forecast but "
    "~50% of a 1-step one.",
)


def output_options(command):
    """-o, --samples, --force, --fps, --every, --quiet: what to write and how."""
    options = [
        click.option(
            "-o",
            "--output",
            type=click.Path(path_type=Path),  # a folder: a rosbag2 output (--force replaces it)
            default=None,
            help="Output: .mp4 (to share), .mkv (lossless: use it to measure), .gif (to look "
            "at) or .png (a labelled grid of the frames).",
        ),
        count_option(
            "--samples",
            default=1,
            help="Samples to draw (one batch); side by side in a video, one row each in a .png.",
        ),
        click.option("--force", is_flag=True, help="Overwrite the output if it exists."),
        click.option(
            "--fps",
            type=click.FloatRange(min=0, min_open=True, max=MAX_FPS),
            default=None,
            help="Output frame rate, frames per second (default: the input's, else 10).",
        ),
        count_option(
            "--every",
            default=1,
            help="In a .png grid, show every K-th made frame (given frames always).",
        ),
        click.option("--quiet", is_flag=True, help="No progress or notes on stderr."),
    ]
    return _apply(options, command)


class Roi(click.ParamType):
    """X,Y,W,H: a region of the camera's frame in its pixels (left, top, width, height)."""

    name = "X,Y,W,H"

    def convert(self, value, param, ctx) -> tuple[int, int, int, int]:
        if isinstance(value, tuple):
            return value
        try:
            x, y, w, h = (int(part) for part in value.split(","))
        except ValueError:
            self.fail(
                f"{value!r} is not X,Y,W,H: four whole numbers, e.g. 0,120,1280,600", param, ctx
            )
        if x < 0 or y < 0 or w < 1 or h < 1:
            self.fail(f"{value!r}: X and Y must be >= 0, W and H >= 1", param, ctx)
        return x, y, w, h


def framing_options(new_model: bool):
    """--fit and --roi: how frames become the model's square. `new_model`: they are recorded in
    the model (lgcvd-train, defaults crop and the whole frame); else they override the model's."""
    default = "(default: the model's)" if not new_model else "[default: crop]"
    options = [
        click.option(
            "--fit",
            type=click.Choice(FITS),
            default="crop" if new_model else None,
            help="How a frame of another shape becomes the model's square: crop its centre "
            "(a 16:9 frame loses 44% of its width), pad it with grey (keeps the whole view) or "
            f"stretch it {default}.",
        ),
        click.option(
            "--roi",
            type=Roi(),
            default=None,
            help="Use only this region of each frame, X,Y,W,H in the camera's pixels, before "
            f"--fit {'(default: the whole frame)' if new_model else default}.",
        ),
    ]
    return lambda command: _apply(options, command)


TOPIC = click.option(
    "--topic",
    default=None,
    help="Camera topic of a bag input (a rosbag2 folder, .mcap or .bag; default: each bag's "
    "only image topic).",
)


def load_model(bundle, backend, sampler, steps, seed, threads, quiet, spacing=None) -> api.Model:
    """`api.load` with the model options; notes (the backend auto chose) to stderr unless quiet,
    and the warning that the options override a distilled model's plan, once, even if quiet."""
    log = None if quiet else (lambda line: click.echo(line, err=True))
    return api.load(
        bundle,
        backend=backend,
        sampler=sampler,
        steps=steps,
        seed=seed,
        log=log,
        threads=threads,
        warn=lambda line: click.echo(line, err=True),
        spacing=spacing,
    )
