"""Render a built-in generator ("shapes", "mnist", "pushsim") to a video array file.

    python tools/make_dataset.py pushsim -n 1000 -o data/pushsim_train.npz --seed 0 --workers 2

Clips are rendered in chunks (several processes with --workers); clip i depends only on the
seed and i, so the file is the same for any number of workers. Output: uint8 N×T×H×W×3 in
`.npz` (key "videos") or `.npy` (written as it is rendered; use it for very large sets).
"""

from __future__ import annotations

from collections.abc import Iterator
from multiprocessing import Pool
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from lgcvd_runtime.cli.chassis import Command
from lgcvd_train.data import DATA_GENERATORS, GENERATED_FRAMES
from lgcvd_train.data.arrays import check_output, invocation, save_video_stream

CHUNK = 4  # clips per task: each pushsim task builds one physics client


def render_chunk(task: tuple[str, int, int, int, int, int]) -> np.ndarray:
    """Render `count` clips starting at clip `first` -> (count, T, H, W, 3) uint8."""
    name, count, frames, size, seed, first = task
    return DATA_GENERATORS[name](count, frames, size, seed, first_index=first)


def render_clips(
    name: str, num_videos: int, frames: int, size: int, seed: int, workers: int
) -> Iterator[np.ndarray]:
    """Yield the clips in order, (T, H, W, 3) each, rendered by `workers` processes."""
    tasks = [
        (name, min(CHUNK, num_videos - first), frames, size, seed, first)
        for first in range(0, num_videos, CHUNK)
    ]
    if workers == 1:
        chunks: Iterator[np.ndarray] = map(render_chunk, tasks)
        yield from (clip for chunk in chunks for clip in chunk)
        return
    with Pool(workers) as pool:
        for chunk in pool.imap(render_chunk, tasks):
            yield from chunk


@click.command(cls=Command, stopped="{word}; no file written")
@click.argument("generator", type=click.Choice(sorted(DATA_GENERATORS)))
@click.option("-n", "--num-videos", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Number of clips to render.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file, .npz (compressed) or .npy (streamed to disk).")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True,
              help="Random seed; the same seed gives the same file.")  # fmt: skip
@click.option("--frames", type=click.IntRange(min=1), default=GENERATED_FRAMES, show_default=True,
              help="Frames per clip.")  # fmt: skip
@click.option("--size", type=click.IntRange(min=8), default=64, show_default=True,
              help="Frame height and width in pixels.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes rendering in parallel.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
def main(
    generator: str,
    num_videos: int,
    output: Path,
    seed: int,
    frames: int,
    size: int,
    workers: int,
    force: bool,
) -> None:
    """Render GENERATOR clips into a uint8 N×T×H×W×3 array file."""
    check_output(output, force)
    clips = render_clips(generator, num_videos, frames, size, seed, workers)
    progress = tqdm(clips, total=num_videos, unit="clip", desc=generator)
    save_video_stream(output, progress, num_videos, force=force, command=invocation())
    click.echo(f"wrote {num_videos} clips of {frames}×{size}×{size} to {output}")


if __name__ == "__main__":
    main()
