"""A privileged oracle for pushsim prediction: how well can one sampled future score at best?

Pushsim's arm moves through random waypoints (lgcvd_train/data/pushsim.py), so the given frames
do not fix the future, and a sample that puts the arm somewhere else can score below copying
the last frame even if the model is perfect. For each clip i of a dataset rendered by
`make_dataset.py pushsim --seed S`, this re-renders clip i with the same scene and the same arm
moves through the last given frame (the move under way then included, its waypoint and speed),
every later waypoint drawn from one of K other random streams (`pushsim.render_futures`). Each
is a draw of the future given the whole physical state, which a model that sees only the given
frames cannot know better. Scored over a frame range with the evaluation's own metrics
(eval_protocol.clip_metrics, aggregate): copy-last; the oracle's one sample (the mean over its
K futures, the expected score of one draw); its best of K; the per-pixel mean of the K futures
(a "mean predictor"). Deltas against copy-last come with their paired standard error over clips.
PSNR counts an exact frame as 48.13 dB (one grey level off everywhere), not infinity.

`--knows frames` asks what the given frames alone allow: every arm move, the one under way
included, is drawn from each of the K streams, and only the `--keep` futures whose given frames
lie nearest the clip's are scored (`matched_futures`, rejection sampling with a shrinking
tolerance: a draw of the future given the frames, approximately, that sharpens as K grows). It
still knows the scene's objects and physics exactly, which the frames show only in part.

    OMP_NUM_THREADS=1 python research/oracle_future.py /work/data/pushsim_test.npy --seed 1 \\
        --futures 2 --out oracle.json
    OMP_NUM_THREADS=1 python research/oracle_future.py /work/data/pushsim_test.npy --seed 1 \\
        --knows frames --futures 64 --keep 1 --out oracle_frames.json

First, clip i re-rendered with its own stream must match the data (its maximum pixel difference
is reported); a clip that does not is refused (wrong --seed, or not a pushsim set). This file
knows the evaluation protocol and pushsim; it knows nothing about models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import refuse_existing, write_then_rename
from lgcvd_train.data import pushsim
from lgcvd_train.data.arrays import load_videos
from lgcvd_train.eval_protocol import (
    aggregate,
    clip_metrics,
    copy_last,
    curves,
    frame_range,
    paired_difference,
)
from lgcvd_train.evaluate import DIGITS, NAMES
from lgcvd_train.metrics import load_lpips

# An exact frame has infinite PSNR, and the oracle's first frames are exact (the move under way
# is kept): it counts as the PSNR of a one-grey-level error everywhere, 20 log10(255) dB.
PSNR_CAP = 20 * np.log10(255.0)
# A clip whose given frames differ from their re-render by more than this mean |difference|
# (grey levels) is not the clip the seed renders: refused.
MISMATCH = 1.0
KNOWS = ("state", "frames")  # what the oracle knows of the clip: its physical state, or frames
ROWS = ("copy-last", "oracle, one sample", "oracle, best of K", "mean of K futures")


class OracleError(LgcvdError):
    """Settings or data the oracle cannot work with."""


def future_generators(seed: int, index: int, future_seed: int, k: int) -> list:
    """K random streams for clip `index`'s alternative futures, none of them the clip's own
    (a spawn key keeps them apart from default_rng([seed, index]) and from each other)."""
    return [
        np.random.default_rng(np.random.SeedSequence([seed, index], spawn_key=(future_seed, j)))
        for j in range(k)
    ]


def oracle_clip(video: np.ndarray, seed: int, index: int, given: int, futures: list) -> tuple:
    """Re-render clip `index`: (its own stream (T, H, W, 3), the futures (K, T, H, W, 3)) uint8."""
    frames, size = video.shape[0], video.shape[1]
    clips = pushsim.render_futures(seed, index, frames, size, given, [None, *futures])
    return clips[0].video, np.stack([c.video for c in clips[1:]])


def matched_futures(
    video: np.ndarray, seed: int, index: int, given: int, streams: Callable[[], list], keep: int
) -> tuple[np.ndarray, np.ndarray]:
    """The frames-only oracle's futures of clip `index`: every arm move, the first included, is
    drawn from each of the K streams (the scene stays the clip's), and the `keep` futures whose
    first `given` frames lie closest to the clip's (mean |difference|) are rendered in full.
    Keeping the nearest of many prior draws approximates a draw from the posterior given the
    frames (rejection sampling with a shrinking tolerance). -> (the K distances in grey levels,
    the kept futures (keep, T, H, W, 3) uint8). `streams()` returns the K fresh streams."""
    frames, size = video.shape[0], video.shape[1]
    starts = pushsim.render_futures(seed, index, given, size, 0, streams())
    gaps = np.array([np.abs(c.video.astype(np.int16) - video[:given]).mean() for c in starts])
    nearest = np.argsort(gaps, kind="stable")[:keep]
    fresh = streams()  # the same streams again, unused
    kept = pushsim.render_futures(seed, index, frames, size, 0, [fresh[j] for j in nearest])
    return gaps, np.stack([c.video for c in kept])


def first_difference(a: np.ndarray, b: np.ndarray) -> int | None:
    """The first frame index where two (T, H, W, 3) videos differ, None if they never do."""
    differs = (a != b).reshape(len(a), -1).any(axis=1)
    return int(differs.argmax()) if differs.any() else None


def check_rerender(video: np.ndarray, again: np.ndarray, index: int, given: int, data, seed: int):
    """Raise OracleError unless the re-render matches the clip in the given frames."""
    gap = np.abs(video[:given].astype(np.int16) - again[:given]).mean()
    if gap > MISMATCH:
        raise OracleError(
            f"clip {index} of {data} is not clip {index} of pushsim --seed {seed} (its given "
            f"frames differ from the re-render by {gap:.1f} grey levels on average); pass the "
            "--seed the data was made with (make_dataset.py --seed)"
        )


def predictions(video: np.ndarray, futures: np.ndarray, given: int, baseline) -> dict:
    """What each predictor says for frames given.. of one clip: name -> (S, n, H, W, 3) uint8."""
    fakes = futures[:, given:]  # (K, n, H, W, 3)
    return {
        "copy-last": baseline.predict(video[:given], len(video) - given, 1),
        "oracle": fakes,
        "mean": np.round(fakes.mean(axis=0, keepdims=True)).astype(np.uint8),
    }


def paired(per_clip: np.ndarray, base: np.ndarray) -> dict:
    """Mean and std over clips, and the mean difference to `base` with its standard error."""
    delta, se = paired_difference(per_clip, base)
    return {
        "mean": float(per_clip.mean()),
        "std": float(per_clip.std()),
        "delta": delta,
        "delta_se": None if np.isnan(se) else se,
    }


def summarise(per_frame: dict[str, dict], frames: slice) -> dict[str, dict]:
    """-> row -> metric -> {mean, std, delta, delta_se, per_clip}; per_frame: predictor ->
    metric -> (C, S, n), predictors "copy-last", "oracle", "mean"."""
    agg = {name: aggregate(values, frames)["per_clip"] for name, values in per_frame.items()}
    per_clip = {
        ROWS[0]: agg["copy-last"]["mean"],
        ROWS[1]: agg["oracle"]["mean"],
        ROWS[2]: agg["oracle"]["best"],
        ROWS[3]: agg["mean"]["mean"],
    }
    base = per_clip[ROWS[0]]
    return {
        row: {
            m: {**paired(v, base[m]), "per_clip": v.round(5).tolist()} for m, v in metrics.items()
        }
        for row, metrics in per_clip.items()
    }


def markdown(rows: dict[str, dict]) -> str:
    """The table: each metric's mean over clips, and its difference to copy-last ± paired SE."""
    metrics = list(NAMES)
    head = [NAMES[m] for m in metrics] + [f"Δ{NAMES[m]} ± SE" for m in metrics]
    lines = ["| predictor | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for row, values in rows.items():
        cells = [f"{values[m]['mean']:.{DIGITS[m] + 1}f}" for m in metrics]
        for m in metrics:
            d, se = values[m]["delta"], values[m]["delta_se"]
            digits = DIGITS[m] + 1
            cells.append("—" if row == ROWS[0] else f"{d:+.{digits}f} ± {se or 0:.{digits}f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(
    data: Path,
    seed: int,
    clips: int | None,
    k: int,
    future_seed: int,
    given: int,
    span,
    knows: str = "state",
    keep: int = 1,
):
    """Render, check and score every clip. -> the report (JSON-ready)."""
    videos = load_videos(data)
    count, total = len(videos), videos.shape[1]
    if clips is not None and clips > count:
        raise OracleError(
            f"--clips is {clips} but {data} holds {count} clips; pass --clips {count}"
        )
    if not 1 <= given < total:
        raise OracleError(
            f"--given is {given} but the clips have {total} frames; pass 1..{total - 1}"
        )
    if knows == "frames" and keep > k:
        raise OracleError(f"--keep is {keep} but --futures is {k}; keep at most {k}")
    chosen = frame_range(given, total - given, span)
    lpips, baseline = load_lpips(), copy_last()
    per_frame: dict[str, dict[str, list]] = {"copy-last": {}, "oracle": {}, "mean": {}}
    worst, departures = 0, []
    nearest, typical = [], []  # frames-only: the kept futures' and all K futures' distances
    for i in tqdm(range(clips or count), desc="oracle", unit="clip"):
        video = np.asarray(videos[i])
        streams = partial(future_generators, seed, i, future_seed, k)  # fresh K streams per call
        if knows == "state":
            again, futures = oracle_clip(video, seed, i, given, streams())
        else:
            own = pushsim.render_futures(seed, i, total, video.shape[1], given, [None])
            again = own[0].video
            gaps, futures = matched_futures(video, seed, i, given, streams, keep)
            nearest.append(np.sort(gaps)[:keep].mean())
            typical.append(np.median(gaps))
        check_rerender(video, again, i, given, data, seed)
        worst = max(worst, int(np.abs(video.astype(np.int16) - again).max()))
        departures += [first_difference(again, f) for f in futures]
        for name, fake in predictions(video, futures, given, baseline).items():
            scores = clip_metrics(video[given:], fake, lpips)  # metric -> (S, n)
            scores["psnr"] = np.minimum(scores["psnr"], PSNR_CAP)
            for metric, values in scores.items():
                per_frame[name].setdefault(metric, []).append(values)
    stacked = {name: {m: np.stack(v) for m, v in d.items()} for name, d in per_frame.items()}
    parted = [t + 1 for t in departures if t is not None]  # frame numbers from 1
    return {
        "data": str(data),
        "seed": seed,
        "clips": clips or count,
        "futures": k,
        "future_seed": future_seed,
        "given": given,
        "knows": knows,
        **(
            {}
            if knows == "state"
            else {
                "kept": keep,
                "given_frames_gap": {  # mean |difference| to the clip's given frames, grey levels
                    "kept": float(np.mean(nearest)),
                    "median_of_all": float(np.mean(typical)),
                },
            }
        ),
        "frames": chosen.label,
        "rerender_max_abs_diff": worst,
        "psnr_cap_db": PSNR_CAP,
        "first_departing_frame": {
            "mean": float(np.mean(parted)) if parted else None,
            "min": min(parted, default=None),
            "never": len(departures) - len(parted),
            "of": len(departures),
        },
        "rows": summarise(stacked, chosen.predicted(given)),
        "curves": {  # per predicted frame (from frame given+1), mean over clips and samples
            name: {
                m: v.round(5).tolist()
                for m, v in curves(d, chosen.predicted(given))["mean"].items()
            }
            for name, d in stacked.items()
        },
    }


@click.command()
@click.argument("data", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--seed", type=int, required=True,
              help="The seed DATA was rendered with (make_dataset.py pushsim --seed).")  # fmt: skip
@click.option("--clips", type=click.IntRange(min=1), default=None,
              help="Score the first N clips (default: all).")  # fmt: skip
@click.option("--futures", "k", type=click.IntRange(min=1), default=2, show_default=True,
              help="Alternative futures K per clip.")  # fmt: skip
@click.option("--future-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the futures' random streams.")  # fmt: skip
@click.option("--given", type=click.IntRange(min=1), default=2, show_default=True,
              help="Given frames p; the arm's moves are kept while they are shown.")  # fmt: skip
@click.option("--knows", type=click.Choice(KNOWS), default="state", show_default=True,
              help="state: the move under way is kept (a ceiling); frames: every move is "
              "drawn anew and the futures nearest the given frames are kept.")  # fmt: skip
@click.option("--keep", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --knows frames: futures kept (and scored) of the K drawn.")  # fmt: skip
@click.option("--frame-range", "span", type=(int, int), default=(3, 28), show_default=True,
              help="Scored frames A B (numbered from 1, given frames included, inclusive).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report (with per-clip values) as JSON here.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def main(data, seed, clips, k, future_seed, given, knows, keep, span, out, force) -> None:
    """Score copy-last against oracle futures of the pushsim clips in DATA."""
    try:
        if out is not None:
            refuse_existing(out, force)
        report = run(data, seed, clips, k, future_seed, given, span, knows, keep)
        if out is not None:
            with write_then_rename(out, force) as tmp:
                tmp.write_text(json.dumps(report, indent=1))
    except LgcvdError as error:
        raise click.ClickException(str(error)) from None
    left = report["first_departing_frame"]
    mean = "-" if left["mean"] is None else f"{left['mean']:.1f}"
    click.echo(
        f"{report['clips']} clips of {data}, {k} futures each, {report['frames']}; re-rendered "
        f"clips differ from the data by at most {report['rerender_max_abs_diff']} grey levels; "
        f"futures leave the clip at frame {mean} on average (first {left['min']}; "
        f"{left['never']} of {left['of']} never do)"
    )
    if knows == "frames":
        gap = report["given_frames_gap"]
        click.echo(
            f"kept the {keep} of {k} futures nearest each clip's given frames: "
            f"{gap['kept']:.3f} grey levels from them on average (median future: "
            f"{gap['median_of_all']:.3f})"
        )
    click.echo(markdown(report["rows"]))
    if out is not None:
        click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
