"""Writing videos (lgcvd_runtime/media/writer.py): formats, frame rates, the adaptive GIF palette,
and outputs that appear whole, with the umask's permissions, under any legal name, or not at all.
Pixel values only through lossless paths (FFV1 .mkv, GIF palette colours)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import check_unwritable_folder_is_refused
from test_video import decode_with_pyav, numbered_frames, write_mkv

from lgcvd_runtime.errors import OutputError, OutputExistsError, VideoError
from lgcvd_runtime.media.video import probe, read_frames
from lgcvd_runtime.media.writer import VideoWriter


def test_mp4_has_the_frame_count_and_even_padded_size(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=10) as writer:
        assert writer.codec == "libx264"
        writer.write(numbered_frames(7, 17, 33))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert decode_with_pyav(path).shape == (7, 18, 34, 3)


def test_mp4_falls_back_to_mpeg4_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(av, "codecs_available", av.codecs_available - {"libx264"})
    path = tmp_path / "clip.mp4"
    with pytest.warns(UserWarning, match=r"no libx264: writing .* as MPEG-4 Part 2 \(mpeg4\)"):
        writer = VideoWriter(path)
    with writer:
        writer.write(numbered_frames(5, 16, 16))
    assert probe(path).codec == "mpeg4"
    assert read_frames(path).shape == (5, 16, 16, 3)


def test_gif_has_the_right_size_and_keeps_palette_colours(tmp_path):
    frames = np.zeros((4, 12, 20, 3), dtype=np.uint8)
    frames[:, :, :10] = (255, 0, 0)
    frames[:, :, 10:] = (0, 255, 255)
    path = tmp_path / "clip.gif"
    with VideoWriter(path) as writer:
        writer.write(frames)
    np.testing.assert_array_equal(read_frames(path), frames)


@pytest.mark.parametrize("interrupt", [RuntimeError, KeyboardInterrupt])
def test_interrupted_writer_leaves_no_file_and_no_temp_file(tmp_path, interrupt):
    path = tmp_path / "clip.mp4"
    with pytest.raises(interrupt):
        with VideoWriter(path) as writer:
            writer.write(numbered_frames(3, 16, 16))
            raise interrupt()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_without_force(tmp_path):
    path = write_mkv(tmp_path / "clip.mkv", numbered_frames(2))
    with pytest.raises(OutputExistsError) as err:
        VideoWriter(path)
    assert str(err.value) == f"{path} already exists; pass --force to overwrite it"
    with VideoWriter(path, force=True) as writer:
        writer.write(numbered_frames(4))
    assert len(read_frames(path)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mkv"]


def test_unknown_output_suffix_is_one_line_error(tmp_path):
    path = tmp_path / "clip.xyz"
    with pytest.raises(VideoError) as err:
        VideoWriter(path)
    assert str(err.value) == (
        f"cannot write {path}: unknown suffix '.xyz'; use one of .mp4, .mkv, .gif"
    )


def test_a_frame_rate_that_is_not_a_positive_number_is_one_line_error(tmp_path):
    for fps in (float("nan"), float("inf"), 0.0, -5.0, 1e-9):
        with pytest.raises(VideoError) as err:
            VideoWriter(tmp_path / "clip.mkv", fps=fps)
        assert str(err.value) == (
            f"frame rate {fps} is not a positive number of frames per second; "
            "pass --fps such as 10 or 29.97"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_an_output_gets_the_permissions_the_umask_gives(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_mkv(tmp_path / "clip.mkv", numbered_frames(2))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "clip.mkv").stat().st_mode) == 0o666 & ~umask


def test_an_output_name_at_the_file_system_limit_is_written(tmp_path):
    path = tmp_path / ("é" * 123 + "abcd.mkv")  # 2 bytes per é: 254 bytes, one under the limit
    assert len(os.fsencode(path.name)) == 254
    write_mkv(path, numbered_frames(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert len(read_frames(path)) == 3


def test_a_folder_that_cannot_be_written_is_one_line_error(tmp_path):
    check_unwritable_folder_is_refused(VideoWriter, tmp_path)


def test_a_missing_folder_is_one_line_error(tmp_path):
    with pytest.raises(OutputError) as err:
        VideoWriter(tmp_path / "nope" / "clip.mkv")
    assert str(err.value) == (
        f"folder {tmp_path / 'nope'} does not exist; create it or choose another path"
    )


def test_gif_uses_one_adaptive_palette_close_to_the_frames():
    demo = Path(__file__).resolve().parents[1] / "lgcvd_runtime" / "assets" / "demo.mkv"
    frames = read_frames(demo)  # 30 rendered 64x64 frames, far more than 252 grid colours apart
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"lgcvd-test-{os.getpid()}.gif"
    try:
        with VideoWriter(path) as writer:
            writer.write(frames)
        gif = read_frames(path).astype(np.float64)
    finally:
        path.unlink(missing_ok=True)
    grey_error = np.abs(gif.mean(-1) - frames.mean(-1))
    assert grey_error.mean() < 0.5 and grey_error.max() < 8  # a fixed 6x7x6 grid: 6.5 and 22
    assert len(np.unique(gif.reshape(-1, 3), axis=0)) <= 256  # one palette for the clip
