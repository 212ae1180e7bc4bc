"""The input score's calibration at export, on clips of the run's own data (docs/ood.md).

A bundle is calibrated for the model it holds: a fine-tuned model gets its own calibration, never
its --init-from source's. The clips come from what the checkpoint's provenance records of its
data: a generator's clips after the ones the run trained on (same seed: held out, from the same
distribution), or up to `CLIPS` of the clips of an array file, a folder of videos or a robot log
that is still where the run read it (those runs have no held-out split, so the record says
"held_out": false). Where none can be had, the export says so in one line with the command that
calibrates the bundle later. lgcvd-export --calibrate DATA takes given held-out clips instead,
read as lgcvd-run calibrate --data reads them (`lgcvd_runtime.media.recordings`: an array of any
frame size, a video, a folder of videos, a bag's camera --calibrate-topic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgcvd_runtime.bundle import Manifest
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.media.arrays import recorded_command
from lgcvd_runtime.ood import calibrate, calibration_clips
from lgcvd_train.checkpoint import Checkpoint
from lgcvd_train.data import DATA_GENERATORS, GENERATED_FRAMES, load_dataset

CLIPS = 128  # as many as the shipped default bundle's calibration (docs/ood.md)


class Uncalibrated(LgcvdError):
    """The run's own clips cannot be had; the message says why."""


@dataclass(frozen=True)
class RunClips:
    clips: list[np.ndarray]  # each (T, H, W, 3) uint8 at the model's size
    data: str  # what they are, for the manifest's record
    command: str | None  # the command that made the data, where the run recorded it
    held_out: bool


def run_clips(ckpt: Checkpoint, topic: str | None = None) -> RunClips:
    """Clips of the run's own data (module header; `topic`: its bags' camera); Uncalibrated
    where there are none."""
    trained = ckpt.state.get("provenance", {})
    source, size = trained.get("data"), ckpt.model_config.image_size
    if source is None:
        raise Uncalibrated("the checkpoint records no training data")
    if source in DATA_GENERATORS:
        seen, seed = trained.get("num_videos"), trained.get("data_seed")
        if seen is None or seed is None:
            raise Uncalibrated(f"the checkpoint records no count or seed of its {source} clips")
        clips = DATA_GENERATORS[source](CLIPS, GENERATED_FRAMES, size, seed, first_index=seen)
        what = f"{source} seed {seed}, clips {seen}..{seen + CLIPS - 1}"
        return RunClips(list(clips), what, None, True)
    if not Path(source).exists():
        raise Uncalibrated(f"its training data {source} is not here")
    min_frames = ckpt.train_config.clip_frames
    videos = load_dataset(source, size, min_frames=min_frames, framing=ckpt.framing, topic=topic)
    picked = np.unique(np.linspace(0, len(videos) - 1, min(CLIPS, len(videos))).round())
    clips = [videos[int(i)] for i in picked]  # spread over the whole set
    return RunClips(clips, source, trained.get("data_command"), False)


def calibrate_on_run(
    directory: Path,
    manifest: Manifest,
    ckpt: Checkpoint,
    name: Path,
    echo: Callable[[str], None],
    topic: str | None = None,
) -> dict | None:
    """The "ood" record of the bundle in `directory` (to be `name`) on the run's own clips (its
    bags' camera `topic`), or None after saying in one line why it stays uncalibrated and how to
    calibrate it."""
    try:
        run = run_clips(ckpt, topic)
        record = calibrate(
            directory, manifest, run.clips, run.data, run.command, None, run.held_out
        )
    except LgcvdError as e:  # no data here, or too few clips for a 99th percentile
        echo(
            f"{name} is uncalibrated ({e}); calibrate it with: "
            f"lgcvd-run calibrate {name} --data CLIPS"
        )
        return None
    kind = "held-out" if run.held_out else "training"
    echo(
        f"ood score calibrated on {len(run.clips)} {kind} clips of {run.data}: {record['percentiles']}"
    )
    return record


def calibrate_on_given(
    directory: Path,
    manifest: Manifest,
    data: Path,
    topic: str | None,
    echo: Callable[[str], None],
) -> dict:
    """The "ood" record of the bundle in `directory` on the held-out clips of `data` (a bag's
    camera `topic`), read as lgcvd-run calibrate --data reads them."""
    clips = calibration_clips(data, manifest, topic, echo)
    record = calibrate(directory, manifest, clips, str(data), recorded_command(data))
    echo(f"ood score calibrated on {len(clips)} clips: {record['percentiles']}")
    return {**record, **({"topic": topic} if topic is not None else {})}
