"""What a bundle's input score is calibrated on (lgcvd_runtime.media.recordings, lgcvd-run
calibrate --data): a video array of any frame size, a video, a folder of videos, a bag's camera
topic; frames fitted as the runtime fits them, recordings cut into clips that give the whole
recording's inputs, taken at the model's period; bad data refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bag_messages import MS, camera_bag
from click.testing import CliRunner
from conftest import error_line, export_tiny_bundle

from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.recordings import data_clips
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_runtime.ood import calibration_inputs
from lgcvd_train.data import shapes
from lgcvd_train.data.arrays import save_videos

READS = "pass a .npy/.npz video array, a video, a folder of videos, or a bag"


def lgcvd_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def write_video(path: Path, frames: np.ndarray) -> Path:
    with VideoWriter(path) as writer:  # FFV1: read back bit-exactly
        writer.write(frames)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return Path(export_tiny_bundle(tmp_path_factory))


@pytest.fixture()
def bundle(tiny, tmp_path) -> Path:
    copied = tmp_path / "tiny.lgcvd"
    shutil.copytree(tiny, copied)
    return copied


def test_an_array_of_another_frame_size_is_fitted_to_the_models_square(tmp_path):
    small = np.random.default_rng(0).integers(0, 256, (3, 4, 16, 16, 3), dtype=np.uint8)
    # each pixel a 2x2 block: an area resample to half the size gives the pixel back exactly
    large = np.repeat(np.repeat(small, 2, axis=2), 2, axis=3)  # (3, 4, 32, 32, 3)
    save_videos(tmp_path / "large.npy", large)
    clips = data_clips(tmp_path / "large.npy", 16, 14)
    np.testing.assert_array_equal(np.stack(clips), small)


@pytest.mark.parametrize("name", ["clips.NPY", "clips.Npz"])
def test_an_array_is_known_by_its_suffix_in_any_case(tmp_path, name):
    videos = np.random.default_rng(1).integers(0, 256, (2, 4, 16, 16, 3), dtype=np.uint8)
    save_videos(tmp_path / name.lower(), videos)
    (tmp_path / name.lower()).rename(tmp_path / name)
    for data in (tmp_path / name, tmp_path):  # the file itself, and found in its folder
        np.testing.assert_array_equal(np.stack(data_clips(data, 16, 14)), videos)


def test_a_long_video_is_cut_into_clips_whose_inputs_are_the_whole_videos(tmp_path):
    frames = shapes.generate(1, 31, 32, seed=2)[0]
    video = write_video(tmp_path / "long.mkv", frames)
    clips = data_clips(video, 32, 14, least=2)  # frames 0-13, 14-27, 28-30
    assert [len(c) for c in clips] == [14, 14, 3]
    np.testing.assert_array_equal(np.concatenate(clips), frames)
    shorter = data_clips(write_video(tmp_path / "29.mkv", frames[:29]), 32, 14, least=2)
    assert [len(c) for c in shorter] == [14, 14]  # frame 28 alone gives no input: dropped
    pieces = np.concatenate([calibration_inputs(c[None], 8) for c in clips])
    np.testing.assert_array_equal(pieces, calibration_inputs(frames[None], 8))


def test_a_bag_at_twice_the_models_rate_gives_every_other_frame(tmp_path, bair):
    bag = camera_bag(tmp_path / "bag", bair[:9], period=50 * MS)  # 20 Hz
    (clip,) = data_clips(bag, 64, 14, topic="/cam/image_raw", framing=Framing(period_s=0.1))
    np.testing.assert_array_equal(clip, bair[[0, 2, 4, 6, 8]])


def test_a_folder_of_a_video_and_a_bag_calibrates_info_shows_it_and_the_bag_is_scored(
    bundle, tmp_path
):
    folder = tmp_path / "held_out"
    folder.mkdir()
    write_video(folder / "a.mkv", shapes.generate(1, 140, 32, seed=5)[0])  # 10 clips of 14
    camera_bag(folder / "b", shapes.generate(1, 140, 32, seed=6)[0])
    (folder / "notes.txt").write_text("not a recording")
    result = lgcvd_run("calibrate", bundle, "--data", folder, "--topic", "/cam/image_raw")
    assert result.exit_code == 0, result.output
    record = json.loads((bundle / "manifest.json").read_text())["ood"]
    assert (record["clips"], record["inputs"]) == (20, 40)  # starts 0, 7 of each clip
    assert record["topic"] == "/cam/image_raw"
    p = record["percentiles"]
    info = lgcvd_run("info", "--model", bundle)
    assert info.exit_code == 0, info.output
    assert (
        f"input score warns above {p['99']:g}, the 99th percentile on 20 held-out clips of "
        f"{record['data']} (50th {p['50']:g}, 95th {p['95']:g}, 99th {p['99']:g})"
    ) in info.stdout
    scored = lgcvd_run("calibrate", bundle, folder / "b", "--topic", "/cam/image_raw", "--json")
    assert scored.exit_code == 0, scored.output
    assert list(json.loads(scored.output)["scores"][str(folder / "b")]) == ["b@0"]


def test_a_folder_without_videos_is_refused_in_one_line(bundle, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no video here")
    result = lgcvd_run("calibrate", bundle, "--data", empty, "--force")
    assert error_line(result) == (
        f"{empty} holds no videos (.avi, .gif, .m4v, .mkv, .mov, .mp4, .mpg, .webm, .npy, "
        f".npz) or bags; {READS}"
    )


def test_an_unreadable_video_in_a_folder_is_refused_in_one_line_not_skipped(bundle, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mkv", shapes.generate(1, 30, 32, seed=5)[0])
    (folder / "b.mp4").write_bytes(b"\x00not a video" * 100)
    result = lgcvd_run("calibrate", bundle, "--data", folder)
    assert error_line(result) == (
        f"{folder / 'b.mp4'} is not a readable video (Invalid data found when processing "
        "input); pass a complete video file (.mp4, .mkv, .avi, .gif, ...)"
    )


def test_a_bag_without_the_topic_is_refused_in_one_line(bundle, tmp_path, bair):
    bag = camera_bag(tmp_path / "bag", bair[:4])
    result = lgcvd_run("calibrate", bundle, "--data", bag, "--topic", "/camera/color")
    assert error_line(result) == (
        f"{bag} has no topic /camera/color; its image topics: /cam/image_raw: pass one with --topic"
    )


def test_a_topic_for_data_without_a_bag_is_refused_in_one_line(bundle, tmp_path):
    data = tmp_path / "clips.npy"
    save_videos(data, shapes.generate(2, 4, 32, seed=0))
    result = lgcvd_run("calibrate", bundle, "--data", data, "--topic", "/cam")
    assert error_line(result) == f"{data} holds no bag; --topic applies to bags: drop it"
    assert "ood" not in json.loads((bundle / "manifest.json").read_text())
