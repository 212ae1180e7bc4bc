"""`lgcvd-run`: predict, interpolate or generate video with an exported bundle; info, bench, demo.

Each command opens its output first (a bad or existing target fails before the model loads),
loads the bundle once (`api.load`), and fills a `Timeline` window by window; the output follows
it (`outputs.py`: a video written as frames become final, appearing by rename only when
complete, a labelled .png grid, or a robot log of the forecast). INPUT is a video or a bag
(`cli.inputs`): a model that records its frame period takes INPUT's frames by time at that
period. Progress with the window count and the time left goes to
stderr, only on a terminal. Errors end in one line; Ctrl-C and SIGTERM leave no output
(`chassis.Group`). No engine package or torch is imported here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime import api
from lgcvd_runtime.backends import CHOICES
from lgcvd_runtime.cli.bench import bench
from lgcvd_runtime.cli.calibrate import calibrate
from lgcvd_runtime.cli.chassis import Group
from lgcvd_runtime.cli.info import describe
from lgcvd_runtime.cli.inputs import (
    DEFAULT_FPS,
    SOURCE,
    bag_output,
    describe_bag,
    forecast_stamps,
    input_fit,
    input_fps,
    period_ns,
    read_input,
    stem,
    truth_of,
)
from lgcvd_runtime.cli.live import live
from lgcvd_runtime.cli.options import (
    TOPIC,
    choice_option,
    count_option,
    framing_options,
    load_model,
    model_options,
    output_options,
    path_option,
    sampler_options,
)
from lgcvd_runtime.cli.outputs import BagOutput, Output, Truth, VideoOutput, is_bag_target
from lgcvd_runtime.cli.progress import Progress
from lgcvd_runtime.cli.remote import Served, server_options, window_spec
from lgcvd_runtime.errors import LgcvdError, VideoError, plural
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import CROP
from lgcvd_runtime.media.video import iter_frames
from lgcvd_runtime.plans import DEFAULT_PLAN
from lgcvd_runtime.timeline import Timeline, interpolation_known


def _truth(path: Path, start: int, count: int, size: int, framing: Framing = CROP) -> Truth:
    """Up to `count` input frames from `start` (T, size, size, 3), black after the input ends."""
    frames = np.zeros((count, size, size, 3), dtype=np.uint8)
    read = 0
    frames_in = iter_frames(path, start=start, size=size, framing=framing)
    for read, frame in enumerate(frames_in, start=1):
        frames[read - 1] = frame
        if read == count:
            break
    return Truth(frames, read)


def _run(model, windows, timeline: Timeline, outputs, quiet: bool) -> None:
    """Write `windows` into `timeline` and every output following it, with progress (for a
    local model). `outputs`: (output, truth or None) pairs."""
    local = not isinstance(model, Served)
    plans = len(timeline.plans()) if local else 0
    progress = Progress(
        model.pipeline.settings.plan.steps if local else 0, plans, quiet or not local
    )
    if local:
        model.on_step = progress.step
    score = None
    try:
        for output, truth in outputs:
            output.follow(timeline, truth)
        for window in windows:
            timeline.write(window.start, window.frames)
            score = window.input_score
            for output, _ in outputs:
                output.update()
    finally:
        progress.close()
    if warning := model.input_warning(score):  # also with --quiet and --server: no mere note
        click.echo(warning, err=True)


def _produce(output: Path, target, quiet, load, make, server=None) -> None:
    """Open `target` (the output's `with` block), load the model (or connect to `server`),
    `make(model, out)` -> (timeline, windows, truth), write."""
    with target as out:
        if server is not None:
            model = Served(server, load["seed"], quiet)
        else:
            model = load_model(quiet=quiet, **load)
        timeline, windows, truth = make(model, out)
        _run(model, windows, timeline, [(out, truth)], quiet)
    if not quiet:
        click.echo(f"wrote {output} ({plural(timeline.length, 'frame')})")


def _framing(model, fit: str | None, roi, quiet: bool) -> Framing:
    """How INPUT's frames are fitted: the model's framing (a served model's is unknown: crop),
    with --fit and --roi over it and a note where they differ from it."""
    own = getattr(model, "framing", CROP)
    wanted = replace(own, fit=fit or own.fit, roi=roi or own.roi)
    if wanted != own:
        model.framing = wanted
        if not quiet:
            click.echo(
                f"note: fitting frames by --fit {wanted.fit} --roi {_roi(wanted)}, not as the "
                f"model was trained (--fit {own.fit} --roi {_roi(own)})",
                err=True,
            )
    return wanted


def _roi(framing: Framing) -> str:
    return "whole frame" if framing.roi is None else ",".join(map(str, framing.roi))


def _samples(frames: np.ndarray, samples: int) -> np.ndarray:
    """(T, H, W, 3) -> (S, T, H, W, 3), the same frames for every sample."""
    return np.broadcast_to(frames, (samples, *frames.shape))


@click.group(cls=Group, stopped="{word}; no output was written")
@click.version_option(package_name="lgcvd")
def main() -> None:
    """Run LGC-VD video diffusion bundles without torch (numpy + onnxruntime / TensorRT)."""


_INPUT = click.argument("input_path", metavar="INPUT", type=SOURCE)
_START = count_option(
    "--start", least=0, default=0, help="Index of the first frame taken from INPUT."
)
_SIDE_BY_SIDE = click.option(
    "--side-by-side",
    is_flag=True,
    help="Show INPUT's own frames (ground truth): left of the samples (panels labelled above "
    "in .mp4 and .gif; .mkv holds the bare panels, to measure on), or a row of the grid.",
)


@main.command()
@_INPUT
@count_option("-n", "n", default=28, help="Frames to predict.")
@count_option("-p", "p", default=2, help="Given frames, read from INPUT at --start.")
@_START
@TOPIC
@_SIDE_BY_SIDE
@click.option(
    "--with-input",
    is_flag=True,
    help="With a robot-log output: copy INPUT's camera topic into it, to play beside the forecast.",
)
@framing_options(new_model=False)
@server_options
@output_options
@model_options
def predict(
    input_path,
    n,
    p,
    start,
    topic,
    side_by_side,
    with_input,
    fit,
    roi,
    server,
    output,
    samples,
    force,
    fps,
    every,
    quiet,
    **load,
):
    """Predict the N frames that follow P given frames of INPUT (a video, or a bag's camera
    topic). Writes the P given frames then the N predicted ones (default output:
    INPUT-prediction.mp4 in the current folder); -o NAME.mcap or a folder: a robot log of the
    predicted frames, stamped at the times they show."""
    output = output or Path(f"{stem(input_path)}-prediction.mp4")
    period = period_ns(load["bundle"], server)
    if is_bag_target(output):
        target = bag_output(output, input_path, side_by_side, every, fps, with_input, force)
    elif with_input:
        raise LgcvdError(f"--with-input applies to a robot-log output, not to {output}: drop it")
    else:
        target = Output(output, input_fps(input_path, fps, period), force, every, "prediction")

    def make(model, out):
        framing = _framing(model, fit, roi, quiet)
        count = p + n if side_by_side else p
        clip = read_input(input_path, topic, start, count, p, model.size, period, framing, quiet)
        given, times = clip.frames[:p], clip.stamps[:p]  # (p, H, W, 3), (p,) ns
        if isinstance(out, BagOutput):
            out.at(*forecast_stamps(input_path, topic, times, n, period, model.size, framing))
        elif isinstance(out, VideoOutput):
            out.record_fit(input_fit(input_path, topic, model.size, framing))
        truth = truth_of(clip, p + n) if side_by_side else None
        timeline = Timeline.prediction(_samples(given, samples), n, window_spec(model))
        return timeline, model.predict(given, n, samples, times=times / 1e9), truth

    _produce(output, target, quiet, load, make, server)


@main.command()
@_INPUT
@count_option(
    "--gaps",
    default=1,
    help="Gaps to fill: keyframes are G+1 frames of INPUT, N-1 apart (N = window).",
)
@_START
@TOPIC
@_SIDE_BY_SIDE
@framing_options(new_model=False)
@output_options
@model_options
def interpolate(
    input_path,
    gaps,
    start,
    topic,
    side_by_side,
    fit,
    roi,
    output,
    samples,
    force,
    fps,
    every,
    quiet,
    **load,
):
    """Fill the N-2 frames between keyframes of INPUT (a video, or a bag's camera topic) taken
    every N-1 frames from --start (N = the model's window; 8 for the paper's models). Writes
    the whole filled sequence."""
    period = period_ns(load["bundle"], None)
    output = output or Path(f"{stem(input_path)}-interpolation.mp4")
    target = Output(output, input_fps(input_path, fps, period), force, every, "filled")

    def make(model, out):
        keys = np.array(interpolation_known(gaps, model.manifest.model.frames))
        framing = _framing(model, fit, roi, quiet)
        count = len(keys)
        clip = read_input(
            input_path, topic, start, count, count, model.size, period, framing, quiet
        )
        frames = clip.frames
        if isinstance(out, VideoOutput):
            out.record_fit(input_fit(input_path, topic, model.size, framing))
        timeline = Timeline.interpolation(_samples(frames[keys], samples), model.manifest.model)
        truth = Truth(frames, len(frames)) if side_by_side else None
        windows = model.interpolate(frames[keys], samples, times=clip.stamps[keys] / 1e9)
        return timeline, windows, truth

    _produce(output, target, quiet, load, make)


@main.command()
@count_option("-n", "n", default=30, help="Frames to generate.")
@output_options
@model_options
def generate(n, output, samples, force, fps, every, quiet, **load):
    """Generate N frames from noise alone (default output: generation.mp4)."""

    def make(model, out):
        shape = (samples, model.size, model.size, 3)
        timeline = Timeline.generation(shape, n, model.manifest.model, dtype=np.uint8)
        return timeline, model.generate(n, samples), None

    output = output or Path("generation.mp4")
    fps = DEFAULT_FPS if fps is None else fps
    _produce(output, Output(output, fps, force, every, "generated"), quiet, load, make)


@main.command()
@click.argument("bag", required=False, type=click.Path(path_type=Path))
@path_option("--model", "bundle", help="Bundle folder NAME.lgcvd (default: the shipped model).")
@sampler_options(" whose plan to show")
@click.option(
    "--provenance",
    is_flag=True,
    help="Print the whole provenance record (training history, nested), not its summary.",
)
def info(bag, bundle, sampler, steps, spacing, provenance):
    """Describe a bundle: the sampling plan, its frame period, its input score, the backends
    usable here, and where it came from; given BAG, the bag's image topics instead."""
    if bag is not None:
        click.echo(describe_bag(bag))
        return
    path = bundle if bundle is not None else api.default_bundle()
    click.echo(describe(path, sampler, steps, provenance, spacing))


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo_out"),
    show_default=True,
    help="Folder for the results.",
)
@choice_option("--backend", choices=CHOICES, default="auto", help="Inference engine.")
@count_option("--every", default=1, help="Show every K-th predicted frame in the PNG grid.")
@click.option("--force", is_flag=True, help="Overwrite earlier results in the folder.")
@click.option("--quiet", is_flag=True, help="No progress or notes on stderr.")
def demo(out_dir, backend, every, force, quiet):
    """Predict 28 frames from the first 2 frames of the shipped demo clip with the shipped
    model; writes OUT/prediction.mp4 and OUT/prediction.png (rows: given, truth, prediction)."""
    clip = api.ASSETS / "demo.mkv"
    if not clip.is_file():
        raise VideoError(f"demo clip {clip} is missing; reinstall lgcvd with its assets")
    out_dir.mkdir(parents=True, exist_ok=True)
    video, picture = out_dir / "prediction.mp4", out_dir / "prediction.png"
    p, n = 2, 28
    with (
        Output(video, DEFAULT_FPS, force) as movie,
        Output(picture, DEFAULT_FPS, force, every, "prediction") as grid,
    ):
        plan = DEFAULT_PLAN
        model = load_model(None, backend, plan.sampler, plan.steps, 0, None, quiet, plan.spacing)
        truth = _truth(clip, 0, p + n, model.size)
        timeline = Timeline.prediction(truth.frames[None, :p], n, model.manifest.model)
        windows = model.predict(truth.frames[:p], n, 1)
        _run(model, windows, timeline, [(movie, None), (grid, truth)], quiet)
    if not quiet:
        click.echo(f"wrote {video} and {picture} (rows: given frames, ground truth, prediction)")


main.add_command(bench)
main.add_command(calibrate)
main.add_command(live)
