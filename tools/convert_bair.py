"""Convert the BAIR robot pushing release (TFRecords) to a video array file.

The user downloads `bair_robot_pushing_dataset_v0.tar` and unpacks it
(`softmotion30_44k/train/*.tfrecords`, `.../test/*.tfrecords`). Each record is a
tf.train.Example whose feature `{i}/image_aux1/encoded` (i = 0..29) holds one raw 64×64×3 uint8
frame. Reading TFRecords needs tensorflow, imported only here:

    python tools/convert_bair.py softmotion30_44k/train -o data/bair_train.npy

`.npy` output is written clip by clip (the train split is ~16 GB); `.npz` is built in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from lgcvd_runtime.errors import DataError, LgcvdError
from lgcvd_train.data.arrays import check_output, invocation, save_video_stream

FRAMES = 30
SIZE = 64
FRAME_KEY = "{}/image_aux1/encoded"


def record_files(inputs: tuple[Path, ...]) -> list[Path]:
    """The .tfrecords files given, folders searched recursively, sorted."""
    files: list[Path] = []
    for path in inputs:
        files += sorted(path.rglob("*.tfrecords")) if path.is_dir() else [path]
    if not files:
        raise DataError(
            f"no .tfrecords files in {', '.join(map(str, inputs))}; pass the unpacked "
            "softmotion30_44k/train or test folder"
        )
    return files


def decode_clip(features: Mapping[str, bytes]) -> np.ndarray:
    """One BAIR clip from its raw frame features, (30, 64, 64, 3) uint8."""
    frames = []
    for i in range(FRAMES):
        key = FRAME_KEY.format(i)
        if key not in features or len(features[key]) != SIZE * SIZE * 3:
            raise DataError(
                f"record lacks a raw 64×64×3 '{key}' feature; convert the BAIR robot pushing "
                "release (softmotion30_44k), not another TFRecord set"
            )
        frames.append(np.frombuffer(features[key], np.uint8).reshape(SIZE, SIZE, 3))
    return np.stack(frames)


def read_clips(files: list[Path]) -> tuple[int, Iterator[np.ndarray]]:
    """Count the records, then return that count and an iterator over their clips."""
    try:
        import tensorflow as tf
    except ImportError:
        raise DataError("reading BAIR TFRecords needs tensorflow; pip install tensorflow") from None
    names = [str(f) for f in files]
    count = sum(1 for _ in tf.data.TFRecordDataset(names))
    keys = [FRAME_KEY.format(i) for i in range(FRAMES)]

    def clips() -> Iterator[np.ndarray]:
        for record in tf.data.TFRecordDataset(names):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            yield decode_clip({k: feature[k].bytes_list.value[0] for k in keys if k in feature})

    return count, clips()


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file, .npy (streamed to disk) or .npz (compressed, in memory).")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
def main(inputs: tuple[Path, ...], output: Path, force: bool) -> None:
    """Convert BAIR TFRecord files or folders INPUTS into a uint8 N×30×64×64×3 array file."""
    try:
        check_output(output, force)
        count, clips = read_clips(record_files(inputs))
        progress = tqdm(clips, total=count, unit="clip", desc="bair")
        save_video_stream(output, progress, count, force=force, command=invocation())
    except LgcvdError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {count} clips of {FRAMES}×{SIZE}×{SIZE} to {output}")


if __name__ == "__main__":
    main()
