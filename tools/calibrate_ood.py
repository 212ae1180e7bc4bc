"""Calibrate and check a bundle's input score, the model's own "should I be trusted" signal.

`calibrate` adds the score's percentiles over held-out clips of the training distribution to an
already exported bundle (no checkpoint needed; lgcvd-export --calibrate does the same at export),
rewriting only the manifest's "ood" key, atomically; the graphs and their hashes are untouched.
`score` prints the score of clips (arrays: the first frames of every clip; videos: clips read at
--starts) and the share above the calibrated 99th percentile, to measure false alarms and
detection. The score itself is lgcvd_runtime.ood; the numbers it gave: docs/ood.md.

    python tools/calibrate_ood.py calibrate lgcvd_runtime/assets/default.lgcvd \\
        --data /work/data/pushsim_calib.npy
    python tools/calibrate_ood.py score lgcvd_runtime/assets/default.lgcvd \\
        /work/data/pushsim_test.npy ../shared/data/bair-real/clip0.mkv --starts 0,40,80
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.bundle import Manifest, load_manifest, write_manifest
from lgcvd_runtime.errors import LgcvdError, OutputExistsError
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.ood import (
    CALIBRATION_GIVEN,
    THRESHOLD,
    Calibration,
    calibrate,
    calibration_inputs,
    calibration_starts,
    scores_of_clips,
)
from lgcvd_train.data.arrays import ARRAY_SUFFIXES, load_videos, recorded_command


def add_calibration(bundle: Path, data: Path, force: bool, threads: int | None = None) -> dict:
    """Calibrate `bundle` on the clips in `data` and record it in its manifest. -> the record."""
    manifest = load_manifest(bundle)  # refuses a bundle whose graphs do not match their hashes
    if manifest.ood is not None and not force:
        raise OutputExistsError(
            f"{bundle} is already calibrated (ood score {manifest.ood.get('score')}); "
            "pass --force to replace it"
        )
    clips = load_videos(data)
    record = calibrate(bundle, manifest, clips, str(data), recorded_command(data), threads)
    write_manifest(bundle, dataclasses.replace(manifest, ood=record))
    return record


def _clips(path: Path, manifest: Manifest, starts: tuple[int, ...]) -> tuple[list[str], np.ndarray]:
    """(names, inputs (C, given, size, size, 3) uint8) of an array file (laid out as for
    calibration) or of a video (clips from `starts`)."""
    size, n = manifest.model.image_size, manifest.model.frames
    if path.suffix in ARRAY_SUFFIXES:
        videos = np.asarray(load_videos(path))
        firsts = calibration_starts(videos.shape[1], n)
        names = [f"{path.name}[{i}]@{s}" for i in range(len(videos)) for s in firsts]
        return names, calibration_inputs(videos, n)
    clips = [read_frames(path, start=s, count=CALIBRATION_GIVEN, size=size) for s in starts]
    return [f"{path.name}@{s}" for s in starts], np.stack(clips)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Calibrate a bundle's input score and measure its false alarms and detection."""


@main.command("calibrate")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="Held-out clips of the training distribution at the model's size (.npy/.npz).",
)
@click.option("--force", is_flag=True, help="Replace an existing calibration.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime threads.")
def calibrate_command(bundle: Path, data: Path, force: bool, threads: int | None) -> None:
    """Record the score's percentiles over DATA in BUNDLE's manifest."""
    try:
        record = add_calibration(bundle, data, force, threads)
    except LgcvdError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{bundle}: ood {json.dumps(record)}")


@main.command("score")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--starts",
    default="0",
    show_default=True,
    help="Comma-separated first frames of the clips read from each video input.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime threads.")
@click.option("--json", "as_json", is_flag=True, help="Print every score as JSON.")
def score_command(bundle: Path, inputs, starts: str, threads: int | None, as_json: bool) -> None:
    """Score the clips of INPUTS (arrays or videos) and count those beyond the calibration."""
    try:
        manifest = load_manifest(bundle)
        calibration = Calibration.of(manifest)
        if calibration is None:
            raise LgcvdError(f"{bundle} has no calibration for this score; run calibrate first")
        backend = load_backend("onnxruntime", bundle, manifest, None, threads)
        first = tuple(int(s) for s in starts.split(","))
        result = {}
        try:
            for path in inputs:
                names, clips = _clips(path, manifest, first)
                scores = scores_of_clips(backend, manifest, clips)
                result[str(path)] = dict(zip(names, scores.round(3).tolist(), strict=True))
        finally:
            backend.close()
    except LgcvdError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps({"threshold": calibration.threshold, "scores": result}, indent=1))
        return
    for path, scores in result.items():
        values = np.array(list(scores.values()))
        flagged = int((values > calibration.threshold).sum())
        click.echo(
            f"{path}: {flagged}/{len(values)} above the {THRESHOLD}th percentile "
            f"{calibration.threshold:.2f}; scores min {values.min():.2f} median "
            f"{np.median(values):.2f} max {values.max():.2f}"
        )


if __name__ == "__main__":
    main()
