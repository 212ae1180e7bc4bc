"""`lgcvd-run`: predict, interpolate or generate video with an exported bundle; info, bench, demo.

Each command loads the bundle once (`api.load`), runs windows and writes every finished window
to the output as soon as all frames before it exist (`video.VideoWriter`: the file appears, by
rename, only when complete). Several samples are written side by side in one video, left to
right; `--side-by-side` puts the input's own frames (ground truth) left of them. Progress goes to
stderr, only on a terminal. User errors (`LgcvdError`) end in one line and exit 1; Ctrl-C exits
130 and leaves no output. No engine package or torch is imported here.
"""

from __future__ import annotations

import json
import sys
from functools import reduce
from pathlib import Path

import click
import numpy as np

from . import api
from .backends import CHOICES, availability
from .bench import format_result, run_bench
from .bundle import load_manifest
from .errors import LgcvdError, VideoError
from .samplers import SAMPLERS
from .schedule import respace
from .video import VideoWriter, iter_frames, probe, read_frames, side_by_side, write_strip

DEFAULT_FPS = 10.0


class _Group(click.Group):
    """Turns user errors into one-line click errors and Ctrl-C into exit code 130."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except LgcvdError as err:
            raise click.ClickException(str(err)) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted; no output was written", err=True)
            raise click.exceptions.Exit(130) from None


def _model_options(command):
    """--model, --backend, --sampler, --steps, --seed, --threads: how to load and sample."""
    options = [
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
            "--seed", type=int, default=None, help="Seed for all noise (default: random)."
        ),
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="CPU threads for onnxruntime (default: one per physical core).",
        ),
    ]
    return reduce(lambda f, option: option(f), reversed(options), command)


def _output_options(command):
    """-o, --samples, --force, --fps, --quiet: what to write and how."""
    options = [
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Output video: .mp4, .mkv (lossless), .gif or .png (one strip of all frames).",
        ),
        click.option(
            "--samples",
            type=click.IntRange(min=1),
            default=1,
            show_default=True,
            help="Samples to draw (one batch); written side by side, left to right.",
        ),
        click.option("--force", is_flag=True, help="Overwrite the output if it exists."),
        click.option(
            "--fps",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Output frame rate (default: the input's, else 10).",
        ),
        click.option("--quiet", is_flag=True, help="No progress or notes on stderr."),
    ]
    return reduce(lambda f, option: option(f), reversed(options), command)


def _load(bundle, backend, sampler, steps, seed, threads, quiet) -> api.Model:
    log = None if quiet else (lambda line: click.echo(line, err=True))
    return api.load(
        bundle, backend=backend, sampler=sampler, steps=steps, seed=seed, log=log, threads=threads
    )


class _Progress:
    """'window 2: step 7/20' on stderr, rewritten in place; silent off a terminal or if quiet."""

    def __init__(self, steps: int, quiet: bool):
        self.steps, self.window = steps, 0
        self.enabled = not quiet and sys.stderr.isatty()

    def step(self, i: int) -> None:
        if not self.enabled:
            return
        self.window += i == 1
        click.echo(f"\rwindow {self.window}: step {i}/{self.steps}", err=True, nl=False)

    def close(self) -> None:
        if self.enabled and self.window:
            click.echo("", err=True)


class _Assembler:
    """Fills the output video (S, T, H, W, 3) window by window; writes each frame as soon as it
    and every frame before it are known. Samples, and the ground truth if given, side by side."""

    def __init__(self, writer: VideoWriter, video: np.ndarray, known: list[bool], truth=None):
        self.writer, self.video, self.known, self.truth = writer, video, list(known), truth
        self.written = 0
        self._flush()

    def add(self, window: api.PredictedWindow) -> None:
        stop = window.start + window.frames.shape[1]
        self.video[:, window.start : stop] = window.frames
        self.known[window.start : stop] = [True] * (stop - window.start)
        self._flush()

    def _flush(self) -> None:
        end = self.known.index(False) if False in self.known else len(self.known)
        if end > self.written:
            panels = list(self.video[:, self.written : end])  # S x (F, H, W, 3)
            if self.truth is not None:
                panels.insert(0, self.truth[self.written : end])
            self.writer.write(reduce(side_by_side, panels))
            self.written = end


def _truth(path: Path, start: int, count: int, size: int) -> np.ndarray:
    """Up to `count` input frames from `start` (T, size, size, 3), black after the input ends."""
    frames = []
    for frame in iter_frames(path, start=start, size=size):
        frames.append(frame)
        if len(frames) == count:
            break
    truth = np.zeros((count, size, size, 3), dtype=np.uint8)
    truth[: len(frames)] = frames
    return truth


def _run(model, windows, video, known, output, fps, force, truth, quiet) -> None:
    """Write `windows` into `output` through an _Assembler, with progress."""
    progress = _Progress(model.pipeline.settings.plan.steps, quiet)
    model.on_step = progress.step
    try:
        with VideoWriter(output, fps, force=force) as writer:
            assembler = _Assembler(writer, video, known, truth)
            for window in windows:
                assembler.add(window)
    finally:
        progress.close()
    if not quiet:
        click.echo(f"wrote {output} ({video.shape[1]} frames)")


def _input_fps(path: Path, fps: float | None) -> float:
    return fps or probe(path).fps or DEFAULT_FPS


@click.group(cls=_Group)
@click.version_option(package_name="lgcvd")
def main() -> None:
    """Run LGC-VD video diffusion bundles without torch (numpy + onnxruntime / TensorRT)."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "-n", "n", type=click.IntRange(min=1), default=28, show_default=True, help="Frames to predict."
)
@click.option(
    "-p",
    "p",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Given frames, read from INPUT at --start.",
)
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Index of the first given frame in INPUT.",
)
@click.option(
    "--side-by-side",
    is_flag=True,
    help="Show INPUT's own frames (ground truth) left of the prediction.",
)
@_output_options
@_model_options
def predict(input_path, n, p, start, side_by_side, output, samples, force, fps, quiet, **load):
    """Predict the N frames that follow P given frames of INPUT. Writes the P given frames then
    the N predicted ones (default output: INPUT-prediction.mp4 in the current folder)."""
    fps = _input_fps(input_path, fps)
    output = output or Path(f"{input_path.stem}-prediction.mp4")
    model = _load(quiet=quiet, **load)
    given = read_frames(input_path, start=start, count=p, size=model.size)  # (p, H, W, 3)
    truth = _truth(input_path, start, p + n, model.size) if side_by_side else None
    video = np.zeros((samples, p + n, model.size, model.size, 3), dtype=np.uint8)
    video[:, :p] = given
    windows = model.predict(given, n, samples)
    _run(model, windows, video, [True] * p + [False] * n, output, fps, force, truth, quiet)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option(
    "--gaps",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gaps to fill: keyframes are G+1 frames of INPUT, N-1 apart (N = window).",
)
@click.option(
    "--start",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Index of the first keyframe in INPUT.",
)
@click.option(
    "--side-by-side",
    is_flag=True,
    help="Show INPUT's own frames (ground truth) left of the result.",
)
@_output_options
@_model_options
def interpolate(input_path, gaps, start, side_by_side, output, samples, force, fps, quiet, **load):
    """Fill the N-2 frames between keyframes of INPUT taken every N-1 frames from --start
    (N = the model's window; 8 for the paper's models). Writes the whole filled sequence."""
    fps = _input_fps(input_path, fps)
    output = output or Path(f"{input_path.stem}-interpolation.mp4")
    model = _load(quiet=quiet, **load)
    step = model.manifest.model.frames - 1
    length = gaps * step + 1
    frames = read_frames(input_path, start=start, count=length, size=model.size)
    video = np.zeros((samples, length, model.size, model.size, 3), dtype=np.uint8)
    video[:, ::step] = frames[::step]
    known = [i % step == 0 for i in range(length)]
    windows = model.interpolate(frames[::step], samples)
    _run(model, windows, video, known, output, fps, force, frames if side_by_side else None, quiet)


@main.command()
@click.option(
    "-n", "n", type=click.IntRange(min=1), default=30, show_default=True, help="Frames to generate."
)
@_output_options
@_model_options
def generate(n, output, samples, force, fps, quiet, **load):
    """Generate N frames from noise alone (default output: generation.mp4)."""
    output = output or Path("generation.mp4")
    model = _load(quiet=quiet, **load)
    video = np.zeros((samples, n, model.size, model.size, 3), dtype=np.uint8)
    windows = model.generate(n, samples)
    _run(model, windows, video, [False] * n, output, fps or DEFAULT_FPS, force, None, quiet)


@main.command()
@click.option(
    "--model",
    "bundle",
    type=click.Path(path_type=Path),
    default=None,
    help="Bundle folder NAME.lgcvd (default: the shipped model).",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default=api.DEFAULT_SAMPLER,
    show_default=True,
    help="Sampler whose plan to show.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=api.DEFAULT_STEPS,
    show_default=True,
    help="Steps of the plan to show.",
)
def info(bundle, sampler, steps):
    """Describe a bundle, the sampling plan and the backends usable on this machine."""
    path = bundle if bundle is not None else api.default_bundle()
    m = load_manifest(path)
    spec = m.model
    lines = [
        f"bundle      {path} (format version {m.format_version}, {m.precision}, "
        f"max batch {m.max_batch})",
        f"frames      {spec.image_size}x{spec.image_size}, {spec.channels} channels; window "
        f"N={spec.frames}, K={spec.cond_slots} condition slots, {spec.new_frames} new frames",
        f"model       {spec.parameterization}-prediction; schedule {m.schedule.type}, "
        f"T={m.schedule.T}",
    ]
    for name, graph in m.graphs.items():
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in graph.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in graph.outputs)
        lines.append(f"graph       {name}: {graph.file} ({ins}) -> ({outs})")
    lines += [f"provenance  {k}: {v}" for k, v in m.provenance.items()]
    plan = respace(m.schedule, min(steps, m.schedule.T))
    lines.append(f"sampling    {sampler}, {plan.describe()}")
    for name, reason in availability().items():
        lines.append(f"backend     {name}: {'available' if reason is None else reason}")
    click.echo("\n".join(lines))


@main.command()
@_model_options
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Batch size of every call.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Timed calls per graph (windows: a third as many, at least 2).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def bench(samples, repeats, as_json, **load):
    """Latency of the context and denoiser graphs, per window, frames per second, peak memory."""
    model = _load(quiet=as_json, **load)
    result = run_bench(model, samples, repeats, windows=max(2, repeats // 3))
    click.echo(json.dumps(result.to_dict(), indent=2) if as_json else format_result(result))


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo_out"),
    show_default=True,
    help="Folder for the results.",
)
@click.option(
    "--backend",
    type=click.Choice(CHOICES),
    default="auto",
    show_default=True,
    help="Inference engine.",
)
@click.option(
    "--every",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Show every K-th frame of truth and prediction in the PNG strip.",
)
@click.option("--force", is_flag=True, help="Overwrite earlier results in the folder.")
@click.option("--quiet", is_flag=True, help="No progress or notes on stderr.")
def demo(out_dir, backend, every, force, quiet):
    """Predict 28 frames from the first 2 frames of the shipped demo clip with the shipped
    model; writes OUT/prediction.mp4 and OUT/prediction.png (rows: given, truth, prediction)."""
    clip = api.ASSETS / "demo.mkv"
    if not clip.is_file():
        raise VideoError(f"demo clip {clip} is missing; reinstall lgcvd with its assets")
    model = _load(None, backend, api.DEFAULT_SAMPLER, api.DEFAULT_STEPS, 0, None, quiet)
    p, n = 2, 28
    truth = _truth(clip, 0, p + n, model.size)
    out_dir.mkdir(parents=True, exist_ok=True)
    video = np.zeros((1, p + n, model.size, model.size, 3), dtype=np.uint8)
    video[:, :p] = truth[:p]
    windows = model.predict(truth[:p], n, 1)
    known = [True] * p + [False] * n
    _run(model, windows, video, known, out_dir / "prediction.mp4", DEFAULT_FPS, force, None, quiet)
    strip = out_dir / "prediction.png"
    write_strip(strip, [truth[:p], truth[p::every], video[0, p::every]], force=force)
    if not quiet:
        click.echo(f"wrote {strip} (rows: given frames, ground truth, prediction)")
