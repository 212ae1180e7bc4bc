"""`lgcvd-run calibrate`: record a bundle's input-score calibration, and score clips against it.

    lgcvd-run calibrate model.lgcvd --data held_out.npy           # record (--force: replace)
    lgcvd-run calibrate model.lgcvd --data videos/                # or a video, or a bag (--topic)
    lgcvd-run calibrate model.lgcvd test.npy clip.mkv videos/ --starts 0,40,80   # measure

`--data` holds held-out clips of the training distribution, read as `media.recordings` says: a
.npy/.npz array (N×T×H×W×3 uint8, any frame size), a video, a folder of videos or a bag's camera
(--topic), fitted to the model's square as the bundle's framing says; their scores' percentiles
go into the bundle's manifest (key "ood"), rewritten atomically; the graphs and their hashes
are untouched (lgcvd-export --calibrate does the same at export). INPUTs are scored and counted
against the bundle's calibration, to measure false alarms and detection: an array gives the
first frames of each clip at every (N-1)-th frame (as calibration reads it), a video or bag (or
each one in a folder) the clips at --starts, read as predict reads them (`media.source`). The
score is `ood`; the numbers it gave are in docs/ood.md. No torch is imported here.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.bundle import Manifest, load_manifest, write_manifest
from lgcvd_runtime.cli.chassis import Command
from lgcvd_runtime.cli.options import TOPIC
from lgcvd_runtime.errors import LgcvdError, OutputExistsError
from lgcvd_runtime.media.arrays import is_array, load_videos, recorded_command
from lgcvd_runtime.media.bags import is_bag
from lgcvd_runtime.media.recordings import recordings
from lgcvd_runtime.media.source import read_clip
from lgcvd_runtime.ood import (
    CALIBRATION_GIVEN,
    THRESHOLD,
    Calibration,
    calibration_clips,
    calibration_inputs,
    calibration_starts,
    scores_of_clips,
)
from lgcvd_runtime.ood import calibrate as calibration_of


def add_calibration(
    bundle: Path, data: Path, topic: str | None, force: bool, threads: int | None
) -> dict:
    """Calibrate `bundle` on the clips of `data` (a bag's camera `topic`) and record it in its
    manifest. -> the record."""
    manifest = load_manifest(bundle)  # refuses a bundle whose graphs do not match their hashes
    if manifest.ood is not None and not force:
        raise OutputExistsError(
            f"{bundle} is already calibrated (ood score {manifest.ood.get('score')}); "
            "pass --force to replace it"
        )
    clips = calibration_clips(data, manifest, topic, lambda line: click.echo(line, err=True))
    record = calibration_of(bundle, manifest, clips, str(data), recorded_command(data), threads)
    record = {**record, **({"topic": topic} if topic is not None else {})}
    write_manifest(bundle, dataclasses.replace(manifest, ood=record))
    return record


def _files(inputs: tuple[Path, ...]) -> list[Path]:
    """The INPUTs, each folder replaced by the videos and bags in it (`recordings`)."""
    return [f for p in inputs for f in recordings(p)]


def _clips(
    path: Path, manifest: Manifest, starts: tuple[int, ...], topic: str | None
) -> tuple[list[str], np.ndarray]:
    """(names, inputs (C, given, size, size, 3) uint8) of an array file (laid out as for
    calibration) or of a video or bag (clips from `starts`, read as predict reads them)."""
    size, n = manifest.model.image_size, manifest.model.frames
    if is_array(path):
        videos = np.asarray(load_videos(path))
        firsts = calibration_starts(videos.shape[1], n)
        names = [f"{path.name}[{i}]@{s}" for i in range(len(videos)) for s in firsts]
        return names, calibration_inputs(videos, n)
    camera = topic if is_bag(path) else None
    clips = [
        read_clip(
            path,
            camera,
            start=s,
            count=CALIBRATION_GIVEN,
            need=CALIBRATION_GIVEN,
            size=size,
            period_ns=manifest.framing.period_ns,
            framing=manifest.framing,
        ).frames
        for s in starts
    ]
    return [f"{path.name}@{s}" for s in starts], np.stack(clips)


def score_inputs(
    bundle: Path, inputs, starts, topic: str | None, threads: int | None
) -> tuple[float, dict]:
    """(the calibrated threshold, {input: {clip name: score}}) for every clip of `inputs`."""
    manifest = load_manifest(bundle)
    calibration = Calibration.of(manifest)
    if calibration is None:
        raise LgcvdError(f"{bundle} has no calibration for this score; pass --data CLIPS first")
    backend = load_backend("onnxruntime", bundle, manifest, None, threads)
    result = {}
    try:
        for path in _files(inputs):
            names, clips = _clips(path, manifest, starts, topic)
            scores = scores_of_clips(backend, manifest, clips)
            result[str(path)] = dict(zip(names, scores.round(3).tolist(), strict=True))
    finally:
        backend.close()
    return calibration.threshold, result


def _starts(text: str) -> tuple[int, ...]:
    try:
        starts = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not comma-separated frame numbers") from None
    if min(starts) < 0:
        raise click.BadParameter(f"{text!r} names a frame below 0")
    return starts


@click.command(cls=Command, stopped="{word}; the bundle was not changed")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    help="Held-out clips of the training distribution: a .npy/.npz video array, a video, a "
    "folder of videos or a bag (--topic); record their score percentiles in BUNDLE.",
)
@TOPIC
@click.option("--force", is_flag=True, help="Replace an existing calibration.")
@click.option(
    "--starts",
    default="0",
    show_default=True,
    help="Comma-separated first frames of the clips scored from each video or bag INPUT.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime threads.")
@click.option("--json", "as_json", is_flag=True, help="Print every INPUT score as JSON.")
def calibrate(bundle: Path, inputs, data, topic, force: bool, starts: str, threads, as_json: bool):
    """Record BUNDLE's input-score calibration on --data clips, and/or score INPUTs (arrays,
    videos, bags, folders of them) and count those beyond it."""
    if data is None and not inputs:
        raise click.UsageError("pass --data CLIPS to calibrate, or INPUTs to score, or both")
    first = _starts(starts)
    if data is not None:
        record = add_calibration(bundle, data, topic, force, threads)
        click.echo(f"{bundle}: ood {json.dumps(record)}")
    if not inputs:
        return
    threshold, result = score_inputs(bundle, inputs, first, topic, threads)
    if as_json:
        click.echo(json.dumps({"threshold": threshold, "scores": result}, indent=1))
        return
    for path, scores in result.items():
        values = np.array(list(scores.values()))
        flagged = int((values > threshold).sum())
        click.echo(
            f"{path}: {flagged}/{len(values)} above the {THRESHOLD}th percentile "
            f"{threshold:.2f}; scores min {values.min():.2f} median "
            f"{np.median(values):.2f} max {values.max():.2f}"
        )
