"""The live scenario's process under test: the library's live stream (`model.live`) fed by
`--cameras` cameras at `--rate` Hz from real videos, for `--seconds`; every `--interval` s it
prints one JSON line (the forecast ages seen since the last line, and running counts) for
tools/soak.py, which reads this process's memory, threads and fds from /proc meanwhile.

Each camera plays one clip in a loop, its frames enlarged `--upscale` times (nearest
neighbour), as a camera gives more pixels than the model takes; each push is a fresh copy, as
a camera's driver hands over a new buffer. `--leak` keeps every pushed frame: the defect the
soak test must catch. Uses only the library's public API (`load`, `live`, `push`, `latest`,
`skipped`, `Forecast.frame_time`); knows nothing of the harness.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import numpy as np

import lgcvd_runtime
from lgcvd_runtime.errors import LgcvdError, first_line
from lgcvd_runtime.media.video import read_frames


class Tally:
    """What the load saw: ages since the last report, forecasts, errors (the first's line)."""

    def __init__(self) -> None:
        self.ages: list[float] = []
        self.newest: dict[int, int] = {}  # camera -> frame index of its newest forecast seen
        self.forecasts = 0  # forecasts seen (a set of them all would itself grow)
        self.errors = 0
        self.first_error: str | None = None

    def error(self, err: Exception) -> None:
        self.errors += 1
        self.first_error = self.first_error or first_line(err)

    def report(self, t: float, skipped: int) -> None:
        line = {"t": t, "ages": self.ages, "done": self.forecasts, "errors": self.errors}
        line.update(skipped=skipped, first_error=self.first_error)
        print(json.dumps(line), flush=True)
        self.ages = []


def camera_frames(videos: list[Path], cameras: int, upscale: int) -> list[np.ndarray]:
    """One looped clip per camera, (F, H·upscale, W·upscale, 3) uint8, read once."""
    clips = [read_frames(v) for v in videos]
    return [clips[c % len(clips)].repeat(upscale, 1).repeat(upscale, 2) for c in range(cameras)]


def tick(live, frames: list[np.ndarray], i: int, tally: Tally, held: list | None) -> None:
    """Push every camera's frame i (a fresh copy) and read every camera's latest forecast."""
    for c, clip in enumerate(frames):
        frame = clip[i % len(clip)].copy()
        if held is not None:
            held.append(frame)
        try:
            live.push(frame, camera=c)
            forecast = live.latest(c)
        except LgcvdError as err:  # a forecast that failed is reported once, then goes on
            tally.error(err)
            continue
        if forecast is not None:
            tally.ages.append(time.monotonic() - forecast.frame_time)
            tally.forecasts += tally.newest.get(c) != forecast.frame_index
            tally.newest[c] = forecast.frame_index


@click.command()
@click.option("--bundle", required=True, type=click.Path(path_type=Path), help="Bundle to run.")
@click.option("--sampler", default="dpmpp", show_default=True, help="Sampler of the model.")
@click.option("--steps", type=int, default=2, show_default=True, help="Sampler steps.")
@click.option("--threads", type=int, default=1, show_default=True, help="onnxruntime threads.")
@click.option("--cameras", type=int, default=2, show_default=True, help="Cameras pushed.")
@click.option("--rate", type=float, default=10.0, show_default=True, help="Pushes per second.")
@click.option("--seconds", type=float, required=True, help="How long to push.")
@click.option("--interval", type=float, default=0.5, show_default=True, help="Report period.")
@click.option("--upscale", type=int, default=4, show_default=True, help="Frame enlargement.")
@click.option("--video", "videos", multiple=True, type=click.Path(path_type=Path), required=True)
@click.option("--leak", is_flag=True, help="Keep every pushed frame (the soak test's defect).")
def main(bundle, sampler, steps, threads, cameras, rate, seconds, interval, upscale, videos, leak):
    """Feed the live stream for SECONDS and report on stdout (module header)."""
    frames = camera_frames(list(videos), cameras, upscale)
    model = lgcvd_runtime.load(bundle, "onnxruntime", sampler, steps, threads=threads)
    tally, held = Tally(), [] if leak else None
    every = max(1, round(interval * rate))
    with model.live(p=2, n=6, cameras=cameras, seed=0) as live:
        start = time.monotonic()
        for i in range(int(seconds * rate)):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            tick(live, frames, i, tally, held)
            if (i + 1) % every == 0:
                tally.report(time.monotonic() - start, live.skipped)
    model.close()


if __name__ == "__main__":
    sys.exit(main())
