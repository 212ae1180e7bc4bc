"""Convert the BAIR robot pushing release (TFRecords) to a video array file.

The user downloads `bair_robot_pushing_dataset_v0.tar` and unpacks it
(`softmotion30_44k/train/*.tfrecords`, `.../test/*.tfrecords`):

    python tools/convert_bair.py softmotion30_44k/train -o data/bair_train.npy

Each record is a tf.train.Example whose bytes feature `{i}/image_aux1/encoded` (i = 0..29) holds
one raw 64×64×3 uint8 frame; its other features (`{i}/image_main/encoded`, `{i}/action`,
`{i}/endeffector_pos`) are not used. The files are read here without tensorflow: the TFRecord
framing (per record: uint64 length, masked CRC-32C of the length, the bytes, masked CRC-32C of
the bytes; both CRCs checked, with google-crc32c) and just enough of the protobuf wire format
to reach Example → Features → bytes_list. A damaged or cut-short file stops the conversion with
one line naming the file and the record, and leaves no output file. Knows numpy and the
training side's array writer; nothing of tensorflow, torch or models.

`.npy` output is written clip by clip (the train split is ~16 GB); `.npz` is built in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import click
import google_crc32c
import numpy as np
from tqdm import tqdm

from lgcvd_runtime.cli.chassis import Command
from lgcvd_runtime.errors import DataError
from lgcvd_train.data.arrays import check_output, invocation, save_video_stream

FRAMES = 30
SIZE = 64
FRAME_KEY = "{}/image_aux1/encoded"
HEADER = struct.Struct("<QI")  # record length, masked CRC-32C of those 8 bytes
FOOTER = struct.Struct("<I")  # masked CRC-32C of the record's bytes


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


def masked_crc(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C: the CRC rotated right by 15 bits plus a constant."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _headers(file, path: Path) -> Iterator[tuple[int, int]]:
    """(record index, length) of each record, its length checked; the file is left at the
    record's bytes, which the caller reads or seeks past."""
    index = 0
    while header := file.read(HEADER.size):
        if len(header) < HEADER.size:
            raise _cut_short(path, index)
        length, crc = HEADER.unpack(header)
        if masked_crc(header[:8]) != crc:
            raise _damaged(path, index)
        yield index, length
        index += 1


def count_records(path: Path) -> int:
    """How many records the file holds, read from their headers alone."""
    size = path.stat().st_size
    with open(path, "rb") as file:
        count = 0
        for index, length in _headers(file, path):
            if file.seek(length + FOOTER.size, 1) > size:
                raise _cut_short(path, index)
            count += 1
    return count


def read_records(path: Path) -> Iterator[bytes]:
    """The bytes of each record in the file, both CRCs checked."""
    with open(path, "rb") as file:
        for index, length in _headers(file, path):
            data, footer = file.read(length), file.read(FOOTER.size)
            if len(footer) < FOOTER.size:
                raise _cut_short(path, index)
            if masked_crc(data) != FOOTER.unpack(footer)[0]:
                raise _damaged(path, index)
            yield data


def _cut_short(path: Path, index: int) -> DataError:
    return DataError(f"{path} ends inside record {index}; the file is cut short, download it again")


def _damaged(path: Path, index: int) -> DataError:
    return DataError(
        f"{path} record {index} fails its CRC check; the file is damaged, download it again"
    )


def _fields(message: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """(field number, bytes) of each field of a protobuf message; numbers and fixed-width
    fields (wire types 0, 1, 5) come with None: no field read here is one."""
    at = 0
    while at < len(message):
        key, at = _varint(message, at)
        wire = key & 7
        if wire == 2:
            length, at = _varint(message, at)
            if at + length > len(message):
                raise ValueError("a field runs past its message")
            yield key >> 3, message[at : at + length]
            at += length
            continue
        if wire == 0:
            at = _varint(message, at)[1]
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
            if at > len(message):
                raise ValueError("a field runs past its message")
        else:
            raise ValueError(f"unknown wire type {wire}")
        yield key >> 3, None


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    """The base-128 integer at `at`, and where the next field starts."""
    value = shift = 0
    while at < len(data):
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at
    raise ValueError("a number runs past its message")


def _parts(message: memoryview, number: int) -> list[memoryview]:
    """The length-delimited fields numbered `number` of `message`, in order."""
    return [part for field, part in _fields(message) if field == number and part is not None]


def bytes_features(record: bytes) -> dict[str, memoryview]:
    """The first value of each bytes_list feature of a serialised tf.train.Example.

    Example {Features features = 1}; Features {map<string, Feature> feature = 1}, whose
    entries are {key = 1, value = 2}; Feature {oneof BytesList bytes_list = 1, FloatList
    float_list = 2, Int64List int64_list = 3}; BytesList {repeated bytes value = 1}. Raises
    ValueError on bytes that are not such a message.
    """
    features: dict[str, memoryview] = {}
    for table in _parts(memoryview(record), 1):
        for entry in _parts(table, 1):
            fields = dict(_fields(entry))  # a repeated field: the last one counts
            key, feature = fields.get(1), fields.get(2)
            values = [v for b in _parts(feature, 1) for v in _parts(b, 1)] if feature else []
            if key is not None and values:
                features[str(key, "utf-8")] = values[0]
    return features


def decode_clip(features: Mapping[str, bytes | memoryview]) -> np.ndarray:
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
    """Count the records (their headers checked, a cut-short file found), then return that
    count and an iterator over their clips."""
    count = sum(count_records(path) for path in files)
    if count == 0:
        raise DataError(f"no records in {', '.join(map(str, files))}; download the files again")

    def clips() -> Iterator[np.ndarray]:
        for path in files:
            for index, record in enumerate(read_records(path)):
                try:
                    features = bytes_features(record)
                except ValueError as error:
                    raise DataError(
                        f"{path} record {index} is not a tf.train.Example ({error}); convert "
                        "the BAIR robot pushing release (softmotion30_44k)"
                    ) from None
                yield decode_clip(features)

    return count, clips()


@click.command(cls=Command, stopped="{word}; no file written")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file, .npy (streamed to disk) or .npz (compressed, in memory).")  # fmt: skip
@click.option("--force", is_flag=True, help="Overwrite the output if it exists.")
def main(inputs: tuple[Path, ...], output: Path, force: bool) -> None:
    """Convert BAIR TFRecord files or folders INPUTS into a uint8 N×30×64×64×3 array file."""
    check_output(output, force)
    count, clips = read_clips(record_files(inputs))
    progress = tqdm(clips, total=count, unit="clip", desc="bair")
    save_video_stream(output, progress, count, force=force, command=invocation())
    click.echo(f"wrote {count} clips of {FRAMES}×{SIZE}×{SIZE} to {output}")


if __name__ == "__main__":
    main()
