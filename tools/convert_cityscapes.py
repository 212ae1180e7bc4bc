"""Convert the Cityscapes video sequences to a video array file (the paper's 128x128 set).

Reads `leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png` from the
`leftImg8bit_sequence_trainvaltest.zip` release (downloaded by the user; 2048x1024 frames),
groups them into sequences, keeps the first --frames of each, centre-crops every frame to a
square and area-resizes it with the runtime's resize (the pixels serving will see):

    python tools/convert_cityscapes.py ~/cityscapes --split train -o data/city128_train.npy

A sequence is a run of consecutive frame numbers of one `<city>_<seq>` (30 frames in the
release); one `<seq>` may hold several such runs, e.g. frames 000275-000304 and 000557-000586
of `frankfurt_000000` in val, and each becomes its own clip. A missing frame therefore ends a
run: a run shorter than --frames stops the conversion before it starts, with one line naming
the run. Frames are never skipped over, so every clip is evenly spaced in time.

`.npy` output is written sequence by sequence (the train split is ~4.4 GB at 128x128).
Knows PIL, numpy and the training side's array writer; nothing of models.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
from PIL import Image
from tqdm import tqdm

from lgcvd_runtime.cli.chassis import Command
from lgcvd_runtime.errors import DataError
from lgcvd_train.config import preset
from lgcvd_train.data.arrays import check_output, crop_and_resize, invocation, save_video_stream

FRAME_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)_leftImg8bit\.png$")


def find_sequences(root: Path, split: str) -> list[list[Path]]:
    """Frame paths of every sequence (run of consecutive frames) in the split, each list in
    frame order, sequences sorted by city, sequence id and first frame."""
    split_dir = _split_folder(root, split)
    sequences: dict[tuple[str, str], list[tuple[int, Path]]] = {}
    for path in sorted(split_dir.glob("*/*_leftImg8bit.png")):
        match = FRAME_NAME.match(path.name)
        if match is None:
            continue
        key = (match["city"], match["seq"])
        sequences.setdefault(key, []).append((int(match["frame"]), path))
    if not sequences:
        raise DataError(
            f"no <city>/*_leftImg8bit.png frames in {split_dir}; "
            "unpack leftImg8bit_sequence_trainvaltest.zip there"
        )
    return [run for _, frames in sorted(sequences.items()) for run in _runs(sorted(frames))]


def _runs(frames: list[tuple[int, Path]]) -> list[list[Path]]:
    """Sorted (frame number, path) pairs split where a number is not the one before plus 1."""
    runs: list[list[Path]] = []
    for i, (number, path) in enumerate(frames):
        if i == 0 or number != frames[i - 1][0] + 1:
            runs.append([])
        runs[-1].append(path)
    return runs


def _split_folder(root: Path, split: str) -> Path:
    """`root/leftImg8bit_sequence/<split>`, or `root/<split>` when root is that folder."""
    for candidate in (root / "leftImg8bit_sequence" / split, root / split):
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"no leftImg8bit_sequence/{split} folder under {root}; pass the folder where "
        "leftImg8bit_sequence_trainvaltest.zip was unpacked"
    )


def check_lengths(sequences: list[list[Path]], frames: int) -> None:
    """Raise, before anything is read, unless every sequence has at least `frames` frames."""
    for paths in sequences:
        if len(paths) < frames:
            last = paths[-1].name.split("_")[-2]  # <city>_<seq>_<frame>_leftImg8bit.png
            raise DataError(
                f"sequence {paths[0].name.removesuffix('_leftImg8bit.png')} has {len(paths)} "
                f"frames in a row (to frame {last}), fewer than {frames}; "
                "re-download it or lower --frames"
            )


def load_sequence(paths: list[Path], frames: int, size: int) -> np.ndarray:
    """The first `frames` frames of one sequence (which has that many: `check_lengths`),
    cropped and resized, (T, size, size, 3)."""
    video = np.stack([_read_rgb(path) for path in paths[:frames]])  # (T, H, W, 3)
    return crop_and_resize(video, size)


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except OSError as error:
        raise DataError(f"cannot read {path} ({error}); re-extract it from the zip") from None


@click.command(cls=Command, stopped="{word}; no file written")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="train",
              show_default=True, help="Which split of leftImg8bit_sequence to convert.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file, .npz (compressed, in memory) or .npy (streamed).")  # fmt: skip
@click.option("--size", type=click.IntRange(min=8), default=preset("paper-city128").image_size,
              show_default=True,
              help="Frame height and width after the centre square crop.")  # fmt: skip
@click.option("--frames", type=click.IntRange(min=1), default=30, show_default=True,
              help="Frames kept from each sequence.")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Convert only the first LIMIT sequences.")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
def main(
    root: Path, split: str, output: Path, size: int, frames: int, limit: int | None, force: bool
) -> None:
    """Convert Cityscapes sequences under ROOT into a uint8 N×T×H×W×3 array file."""
    check_output(output, force)
    sequences = find_sequences(root, split)[:limit]
    check_lengths(sequences, frames)
    clips: Iterator[np.ndarray] = (load_sequence(s, frames, size) for s in sequences)
    progress = tqdm(clips, total=len(sequences), unit="seq", desc=f"cityscapes {split}")
    save_video_stream(output, progress, len(sequences), force=force, command=invocation())
    click.echo(f"wrote {len(sequences)} sequences of {frames}×{size}×{size} to {output}")


if __name__ == "__main__":
    main()
