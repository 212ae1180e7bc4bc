"""Video reading and writing (lgcvd_runtime/media/video.py, writer.py) and the video-folder dataset.

Pixel values are only checked through lossless paths (FFV1 .mkv, PNG, GIF palette colours);
H.264 .mp4 is checked for frame count and size only (yuv420p
halves the colour resolution: much is lost at 64x64).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import debian_video

from lgcvd_runtime.errors import DataError, VideoError
from lgcvd_runtime.media.resize import center_crop_resize
from lgcvd_runtime.media.video import (
    MAX_SIDE,
    LiveSource,
    VideoInfo,
    iter_frames,
    iter_stamped_frames,
    probe,
    read_frames,
)
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_train.data.videos import load_video_folder

BAIR_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real"


def numbered_frames(t: int, h: int = 8, w: int = 8) -> np.ndarray:
    """(t, h, w, 3): frame i is filled with the value 20 * i, so each frame names its index."""
    return np.broadcast_to(20 * np.arange(t, dtype=np.uint8)[:, None, None, None], (t, h, w, 3))


def write_mkv(path: Path, frames: np.ndarray) -> Path:
    with VideoWriter(path) as writer:
        writer.write(frames)
    return path


def read_live(path: Path) -> tuple[list[int], np.ndarray, int]:
    """What `LiveSource` gives for a file: its stamps, its frames, its count of lost packets."""
    with contextlib.closing(LiveSource(path)) as source:
        stamps, frames = zip(*source, strict=True)
    return list(stamps), np.stack(frames), source.lost


def decode_with_pyav(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# ----------------------------------------------------------------------------- reading


def test_ffv1_mkv_round_trip_is_bit_exact(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 16, 24, 3), dtype=np.uint8)
    path = write_mkv(tmp_path / "clip.mkv", frames)
    np.testing.assert_array_equal(read_frames(path), frames)
    np.testing.assert_array_equal(decode_with_pyav(path), frames)


def test_read_with_start_and_count_returns_exactly_those_frames(tmp_path):
    path = write_mkv(tmp_path / "clip.mkv", numbered_frames(8))
    clip = read_frames(path, start=2, count=3)
    assert clip.shape == (3, 8, 8, 3)
    assert clip[:, 0, 0, 0].tolist() == [40, 60, 80]


def test_iter_frames_yields_single_frames_from_start(tmp_path):
    path = write_mkv(tmp_path / "clip.mkv", numbered_frames(4))
    values = [frame[0, 0, 0] for frame in iter_frames(path, start=1)]
    assert values == [20, 40, 60]
    assert next(iter_frames(path)).shape == (8, 8, 3)


def test_a_file_read_whole_or_live_gives_its_frames_stamped_at_k_over_its_rate(tmp_path):
    path = tmp_path / "clip.mkv"
    with VideoWriter(path, fps=5) as writer:
        writer.write(numbered_frames(4))
    k_over_5_hz = [k * 200_000_000 for k in range(4)]  # ns
    stamps, frames, lost = read_live(path)
    assert stamps == k_over_5_hz and lost == 0
    np.testing.assert_array_equal(frames, numbered_frames(4))
    assert [stamp for stamp, _ in iter_stamped_frames(path, start=1)] == k_over_5_hz[1:]


def garbled_mkv(path: Path, frames: np.ndarray, bad: int) -> Path:
    """An FFV1 .mkv of `frames` whose packet `bad` holds bytes no decoder reads (what a lost
    network packet leaves); every frame a key frame, so the others still decode."""
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.height, stream.width, stream.pix_fmt = *frames.shape[1:3], "bgr0"
        stream.codec_context.gop_size = 1  # each frame decodes alone
        for i, image in enumerate(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                if i == bad:
                    garbage = av.Packet(b"\x00\xff" * 40)
                    garbage.pts, garbage.dts = packet.pts, packet.dts
                    garbage.time_base, garbage.stream = packet.time_base, stream
                    packet = garbage
                container.mux(packet)
        container.mux(stream.encode(None))
    return path


def test_a_packet_that_does_not_decode_is_skipped_live_and_corrupt_in_a_file(tmp_path):
    path = garbled_mkv(tmp_path / "garbled.mkv", np.ascontiguousarray(numbered_frames(6)), bad=2)
    stamps, frames, lost = read_live(path)
    assert frames[:, 0, 0, 0].tolist() == [0, 20, 60, 80, 100] and lost == 1
    assert stamps == [0, 100_000_000, 300_000_000, 400_000_000, 500_000_000]  # pts: no gap lost
    with pytest.raises(VideoError) as err:
        read_frames(path)
    assert str(err.value) == (
        f"{path} is truncated or corrupt (decoding failed after 2 frames: Invalid data found "
        "when processing input); re-encode or replace the file"
    )


def test_read_stops_decoding_once_it_has_the_frames_it_needs(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    data = write_mkv(tmp_path / "full.mkv", frames).read_bytes()
    path = tmp_path / "truncated.mkv"
    path.write_bytes(data[: int(len(data) * 0.6)])
    np.testing.assert_array_equal(read_frames(path, count=2), frames[:2])  # never sees the cut
    with pytest.raises(VideoError, match="is truncated or corrupt"):
        read_frames(path)


def test_center_crop_drops_side_stripes_and_area_averages(tmp_path):
    frame = np.zeros((16, 32, 3), dtype=np.uint8)
    frame[:, :8] = (255, 0, 0)  # left stripe, outside the centre square
    frame[:, 24:] = (0, 0, 255)  # right stripe
    frame[:8, 8:24] = 200
    frame[8:, 8:24] = 100
    path = write_mkv(tmp_path / "wide.mkv", np.stack([frame, frame]))
    clip = read_frames(path, size=4)
    expected = np.full((4, 4, 3), 100, dtype=np.uint8)
    expected[:2] = 200
    assert clip.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(clip[1], expected)


def test_area_resample_weights_pixels_by_overlap():
    frame = np.broadcast_to(np.array([0, 90, 180], dtype=np.uint8)[None, :, None], (3, 3, 3))
    out = center_crop_resize(np.ascontiguousarray(frame), 2)
    # output pixel 0 covers source pixels [0, 1.5): (0 + 0.5 * 90) / 1.5 = 30; pixel 1: 150
    np.testing.assert_array_equal(out[:, :, 0], [[30, 150], [30, 150]])


@pytest.mark.skipif(not (BAIR_REAL / "clip0.mkv").exists(), reason="bair-real data absent")
def test_real_bair_clip_reads_as_its_published_frames():
    clip = read_frames(BAIR_REAL / "clip0.mkv")
    truth = np.load(BAIR_REAL / "bair_real_clips.npz")["ground_truth"][0]
    np.testing.assert_array_equal(clip, truth)
    half = read_frames(BAIR_REAL / "clip0.mkv", count=2, size=32).astype(np.float32)
    blocks = truth[:2].reshape(2, 32, 2, 32, 2, 3).astype(np.float32).mean(axis=(2, 4))
    assert np.abs(half - blocks).max() <= 0.5 + 1e-3


def test_a_real_fixed_camera_avi_decodes_with_a_still_background_and_exact_seeks():
    path = debian_video("vtest.avi")  # opencv-doc: pedestrians under a fixed camera, MS-MPEG4 AVI
    assert probe(path) == VideoInfo(frames=795, fps=10.0, width=768, height=576, codec="msmpeg4")
    frames = read_frames(path, count=30, size=64)
    change = np.abs(np.diff(frames.astype(np.int16), axis=0))
    assert np.median(change) == 0 and change.max() > 40  # still background, people walking
    np.testing.assert_array_equal(read_frames(path, start=20, count=4, size=64), frames[20:24])


def test_probe_reports_header_facts(tmp_path):
    path = tmp_path / "clip.mkv"
    with VideoWriter(path, fps=5) as writer:
        writer.write(numbered_frames(6, 8, 12))
    assert probe(path).__dict__ == {
        "frames": 6,
        "fps": 5.0,
        "width": 12,
        "height": 8,
        "codec": "ffv1",
    }


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_display_rotation_is_honoured_so_frames_come_out_upright(tmp_path, degrees):
    """A player turns the stored picture counter-clockwise by the display matrix's angle
    (PyAV's convention for `set_display_rotation` and `VideoFrame.rotation`)."""
    upright = np.zeros((6, 4, 3), np.uint8)  # portrait: 6 rows, 4 columns
    upright[0, 0] = (255, 0, 0)  # red top-left
    upright[5, 1] = (0, 0, 255)  # blue near the bottom-left
    # the stored picture: turned clockwise, so the player's counter-clockwise turn undoes it
    stored = {
        90: upright.transpose(1, 0, 2)[:, ::-1],  # clockwise quarter turn: (4, 6)
        -90: upright.transpose(1, 0, 2)[::-1],  # counter-clockwise quarter turn
        180: upright[::-1, ::-1],
    }[degrees]
    if degrees == 90:
        assert (stored[0, -1] == (255, 0, 0)).all()  # top-left goes to the top-right corner
    path = tmp_path / "phone.mkv"
    if not hasattr(av.VideoStream, "set_display_rotation"):
        pytest.skip(f"PyAV {av.__version__} cannot write a display matrix (PyAV >= 17 can)")
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=5)
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "bgr0"
        stream.set_display_rotation(degrees)
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    frames = read_frames(path)
    assert frames.shape == (2, 6, 4, 3)
    np.testing.assert_array_equal(frames[1], upright)
    np.testing.assert_array_equal(read_live(path)[1], frames)  # a live source turns them too


# ----------------------------------------------------------------------------- bad inputs


def test_missing_file_is_one_line_error(tmp_path):
    path = tmp_path / "missing.mp4"
    with pytest.raises(VideoError) as err:
        read_frames(path)
    assert str(err.value) == f"{path} does not exist; check the path"


def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("hello world\n" * 20)
    return path


def first_half_of_an_mp4(tmp_path: Path) -> Path:
    full = tmp_path / "full.mp4"
    with VideoWriter(full) as writer:
        writer.write(numbered_frames(6, 16, 16))
    path = tmp_path / "half.mp4"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("make", [text_file, first_half_of_an_mp4])
def test_a_text_file_or_half_an_mp4_is_not_a_readable_video(tmp_path, make):
    path = make(tmp_path)
    with pytest.raises(VideoError) as err:
        read_frames(path)
    assert str(err.value) == (
        f"{path} is not a readable video (Invalid data found when processing input); "
        "pass a complete video file (.mp4, .mkv, .avi, .gif, ...)"
    )


def test_garbage_after_a_valid_header_is_corrupt(tmp_path):
    frames = np.random.default_rng(2).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    data = write_mkv(tmp_path / "full.mkv", frames).read_bytes()
    noise = np.random.default_rng(3).integers(0, 256, len(data) - 600, dtype=np.uint8)
    path = tmp_path / "garbage.mkv"
    path.write_bytes(data[:600] + noise.tobytes())
    with pytest.raises(VideoError) as err:
        read_frames(path)
    message = str(err.value)
    assert message.startswith(f"{path} is truncated or corrupt (")
    assert message.endswith("); re-encode or replace the file")
    assert "\n" not in message


def test_too_few_frames_names_the_counts(tmp_path):
    path = write_mkv(tmp_path / "clip.mkv", numbered_frames(5))
    with pytest.raises(VideoError) as err:
        read_frames(path, count=8)
    assert str(err.value) == f"{path} has 5 frames from frame 0; the task needs 8"
    with pytest.raises(VideoError) as err:
        read_frames(path, start=2, count=4)
    assert str(err.value) == f"{path} has 3 frames from frame 2; the task needs 4"
    with pytest.raises(VideoError) as err:
        read_frames(path, start=4, count=2)
    assert str(err.value) == f"{path} has 1 frame from frame 4; the task needs 2"


def test_start_beyond_the_end_is_one_line_error(tmp_path):
    path = write_mkv(tmp_path / "clip.mkv", numbered_frames(5))
    with pytest.raises(VideoError) as err:
        read_frames(path, start=7, count=2)
    assert str(err.value) == (
        f"{path} has 5 frames; start frame 7 is beyond the end: pass a start below 5"
    )
    one = write_mkv(tmp_path / "one.mkv", numbered_frames(1))
    with pytest.raises(VideoError) as err:
        read_frames(one, start=3)
    assert str(err.value) == (
        f"{one} has 1 frame; start frame 3 is beyond the end: pass a start below 1"
    )


def test_enormous_frames_are_refused_before_decoding(tmp_path):
    path = write_mkv(tmp_path / "wide.mkv", np.zeros((1, 2, MAX_SIDE + 8, 3), dtype=np.uint8))
    with pytest.raises(VideoError) as err:
        read_frames(path)
    assert str(err.value) == (
        f"{path} has frames of {MAX_SIDE + 8}x2 pixels; lgcvd reads 1 to {MAX_SIDE} pixels "
        "per side: resize the video first"
    )


# ----------------------------------------------------------------------------- video folder


def test_video_folder_loads_good_videos_and_notes_skipped_ones_in_one_stderr_line(tmp_path, capsys):
    write_mkv(tmp_path / "a.mkv", numbered_frames(6, 16, 16))
    (tmp_path / "sub").mkdir()
    write_mkv(tmp_path / "sub" / "c.mkv", numbered_frames(8, 16, 24))
    write_mkv(tmp_path / "short.mkv", numbered_frames(1, 16, 16))
    (tmp_path / "text.mp4").write_text("not a video")
    (tmp_path / "readme.txt").write_text("ignored: not a video suffix")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a note, not a warning with its source line
        clips = load_video_folder(tmp_path, image_size=8, min_frames=5)
    assert [clip.shape for clip in clips] == [(6, 8, 8, 3), (8, 8, 8, 3)]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "note: skipped 2 of 4 videos: short.mkv (1 frame < 5), text.mp4 (is not a readable "
        "video (Invalid data found when processing input))\n"
    )


def test_video_folder_without_skips_notes_nothing(tmp_path, capsys):
    write_mkv(tmp_path / "a.mkv", numbered_frames(6))
    assert len(load_video_folder(tmp_path, image_size=8, min_frames=6)) == 1
    assert capsys.readouterr().err == ""


def test_missing_or_empty_video_folder_is_one_line_data_error(tmp_path):
    with pytest.raises(DataError) as err:
        load_video_folder(tmp_path / "nope", image_size=8, min_frames=2)
    assert str(err.value) == (
        f"video folder {tmp_path / 'nope'} does not exist; pass a folder of video files"
    )
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_video_folder(tmp_path, image_size=8, min_frames=2)
    assert str(err.value).startswith(f"video folder {tmp_path} holds no video files (.avi ")
    assert str(err.value).endswith("); add videos or pass another folder")


def test_video_folder_where_every_file_is_skipped_is_data_error(tmp_path):
    write_mkv(tmp_path / "short.mkv", numbered_frames(3))
    with pytest.raises(DataError) as err:
        load_video_folder(tmp_path, image_size=8, min_frames=5)
    assert str(err.value) == (
        f"no usable video in {tmp_path} (skipped 1 of 1 video: short.mkv (3 frames < 5)); "
        "add readable videos of at least 5 frames"
    )
