"""Fit modes and many clips: how a frame of another shape becomes the model's square
(`media.resize.fit_frame`: region, then crop, pad or stretch), the map back to the camera's
pixels (`FitTransform`), the fit travelling checkpoint -> bundle -> runtime, and long videos
giving many clips (`lgcvd_train.data.videos`). Expected values are worked out here by hand."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import error_line, export_tiny_bundle, packaged_video

from lgcvd_runtime.conditioning import to_uint8
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import PAD, FitTransform, fit_frame, fit_transform
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.media.writer import VideoWriter

RED, BLUE, GREY = (255, 0, 0), (0, 0, 255), (90, 90, 90)


def marked_frame() -> np.ndarray:
    """(36, 64, 3): a 16:9 grey frame whose two leftmost columns are red, two rightmost blue."""
    frame = np.full((36, 64, 3), GREY, np.uint8)
    frame[:, :2], frame[:, -2:] = RED, BLUE
    return frame


def old_center_crop_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """The resize every model used before fits existed, as it was written then."""
    h, w, _ = frame.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = frame[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    edges = np.arange(size + 1) * (side / size)
    lo = np.maximum(edges[:-1, None], np.arange(side)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(1, side + 1)[None, :])
    weights = np.clip(hi - lo, 0.0, None)
    weights = (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)
    rows = weights @ square.reshape(side, side * 3).astype(np.float32)
    out = weights @ rows.reshape(size, side, 3)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_pad_keeps_both_edges_of_a_16_9_frame_and_crop_loses_them():
    frame = marked_frame()
    padded = fit_frame(frame, 32, Framing(fit="pad"))  # scale 2: content rows 7 .. 24
    assert (padded[7:25, 0] == RED).all() and (padded[7:25, 31] == BLUE).all()
    assert (padded[:7] == PAD).all() and (padded[25:] == PAD).all()
    cropped = fit_frame(frame, 32, Framing(fit="crop"))  # columns 14 .. 49 only
    assert (cropped == GREY).all()


def test_pad_is_the_absent_frame_as_uint8():
    assert PAD == to_uint8(np.zeros((1, 3, 1, 1), np.float32)).item(0)


def test_pad_equals_padding_the_frame_then_resizing_the_square():
    frame = np.random.default_rng(0).integers(0, 256, (37, 100, 3), dtype=np.uint8)
    square = np.full((100, 100, 3), PAD, np.uint8)
    square[31:68] = frame  # (100 - 37) // 2 = 31 rows above
    np.testing.assert_array_equal(
        fit_frame(frame, 24, Framing(fit="pad")), old_center_crop_resize(square, 24)
    )


def test_stretch_keeps_every_column_and_row():
    out = fit_frame(marked_frame(), 32, Framing(fit="stretch"))  # 2 columns, 36/32 rows each
    assert (out[:, 0] == RED).all() and (out[:, -1] == BLUE).all()
    assert (out[:, 1:-1] == GREY).all()


def test_roi_is_cut_out_before_the_fit():
    frame = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = fit_frame(frame, 16, Framing(fit="crop", roi=(10, 5, 50, 40)))
    np.testing.assert_array_equal(out, old_center_crop_resize(frame[5:45, 10:60], 16))


@pytest.mark.parametrize("shape", [(36, 64, 3), (64, 64, 3), (101, 37, 3), (240, 427, 3)])
@pytest.mark.parametrize("size", [8, 32, 64])
def test_crop_without_roi_is_the_old_resize_bit_for_bit(shape, size):
    frame = np.random.default_rng(size).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(fit_frame(frame, size), old_center_crop_resize(frame, size))


@pytest.mark.parametrize(
    "framing, expected",
    [
        (Framing(fit="pad"), FitTransform(2.0, 2.0, 0.0, -14.0)),  # (64 - 36) / 2 rows of pad
        (Framing(fit="crop"), FitTransform(36 / 32, 36 / 32, 14.0, 0.0)),
        (Framing(fit="stretch"), FitTransform(2.0, 36 / 32, 0.0, 0.0)),
        (Framing(fit="pad", roi=(8, 4, 40, 20)), FitTransform(1.25, 1.25, 8.0, -6.0)),
    ],
)
def test_fit_transform_is_the_closed_form(framing, expected):
    assert fit_transform(36, 64, 32, framing) == expected


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_a_marked_pixel_maps_back_to_itself(fit):
    frame = np.zeros((36, 64, 3), np.uint8)
    frame[20:24, 40:44] = 255  # a 4x4 block: a whole model pixel at scale <= 2, any phase
    framing = Framing(fit=fit, roi=(2, 0, 62, 36))
    out = fit_frame(frame, 31, framing)[..., 0]
    v, u = np.unravel_index(np.argmax(out), out.shape)
    x, y = fit_transform(36, 64, 31, framing).to_camera(u + 0.5, v + 0.5)
    assert 40 <= x <= 44 and 20 <= y <= 24  # inside the block


def test_intrinsics_project_a_point_to_the_model_pixel_the_transform_maps_back():
    k = np.array([[500.0, 0, 320], [0, 480, 240], [0, 0, 1]])
    t = FitTransform(3.0, 2.5, -20.0, 15.0)
    point = np.array([0.3, -0.2, 2.0])
    cam = k @ point / point[2]  # pixel centres at whole numbers
    model = t.intrinsics(k) @ point / point[2]
    x, y = t.to_camera(model[0] + 0.5, model[1] + 0.5)  # to centre-at-.5 and back
    np.testing.assert_allclose([x - 0.5, y - 0.5], cam[:2], atol=1e-9)


def test_a_roi_outside_the_frame_is_a_one_line_error():
    with pytest.raises(Exception, match="not inside the 64x36 frame") as err:
        fit_frame(marked_frame(), 16, Framing(roi=(60, 0, 10, 10)))
    assert "\n" not in str(err.value)


def write_video(path, frames, fps=10):
    with VideoWriter(path, fps) as writer:
        writer.write(frames)
    return path


@pytest.mark.parametrize("roi, words", [("1,2,3", "four whole numbers"), ("0,0,0,5", "W and H")])
def test_a_malformed_roi_is_refused_before_any_work(tmp_path, roi, words):
    from lgcvd_runtime.cli.run import main

    video = write_video(tmp_path / "in.mkv", np.stack([marked_frame()] * 3))
    result = CliRunner().invoke(main, ["predict", str(video), "--roi", roi, "-n", "1"])
    assert result.exit_code == 2 and words in result.output


def test_predict_with_a_roi_outside_the_frame_ends_in_one_line(tmp_path_factory, tmp_path):
    from lgcvd_runtime.cli.run import main

    bundle = export_tiny_bundle(tmp_path_factory)
    video = write_video(tmp_path / "in.mkv", np.stack([marked_frame()] * 3))
    args = ["predict", str(video), "--model", bundle, "--roi", "0,0,99,10", "-n", "1"]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "o.mkv"), "--quiet"])
    assert result.exit_code == 1
    assert "not inside the 64x36 frame" in error_line(result)


def test_train_with_pad_records_it_and_the_bundle_and_runtime_follow(tmp_path):
    from lgcvd_export import ExportOptions, export_bundle
    from lgcvd_runtime import api
    from lgcvd_runtime.bundle import load_manifest
    from lgcvd_train.checkpoint import load_model
    from lgcvd_train.cli import main

    run = tmp_path / "run"
    args = ["--preset", "tiny", "--data", "shapes", "--num-videos", "2", "--steps", "1"]
    args += ["--batch-size", "1", "--no-amp", "--quiet", "--fit", "pad", "--out", str(run)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    ema, ckpt = load_model(run)
    assert ckpt.framing == Framing(fit="pad")
    bundle = export_bundle(
        ema, ckpt, run, tmp_path / "m.lgcvd", ExportOptions(max_batch=2), echo=str
    )
    assert load_manifest(bundle).framing.fit == "pad"
    with api.load(bundle, backend="onnxruntime", steps=2) as model:
        frame = marked_frame()
        np.testing.assert_array_equal(
            model.fit(frame[None])[0], fit_frame(frame, model.size, Framing(fit="pad"))
        )


def test_training_data_from_a_folder_are_fitted_as_asked(tmp_path):
    from lgcvd_train.data import load_dataset

    write_video(tmp_path / "wide.mkv", np.stack([marked_frame()] * 14))
    (video,) = load_dataset(str(tmp_path), 32, framing=Framing(fit="pad"))
    assert (video[:, 7:25, 0] == RED).all() and (video[:, :7] == PAD).all()


def test_a_long_training_video_is_cut_into_the_clips_it_holds_with_every_start_kept():
    from lgcvd_train.data.videos import cut

    video = np.arange(50)  # 50 frames, clips of 14: 3 clips, starts 0 .. 36
    pieces = cut(video, 14)
    assert len(pieces) == 3
    starts = [int(p[0]) + s for p in pieces for s in range(len(p) - 14 + 1)]
    assert starts == list(range(37))  # each start in exactly one piece


def test_eval_of_a_folder_of_three_long_videos_gives_ten_clips(tmp_path):
    from lgcvd_train.eval_protocol import load_clips

    names = ["bikes.mp4", "carphone_distorted.mp4", "carphone_pristine.mp4"]  # 250, 120, 120
    for name in names:
        (tmp_path / name).symlink_to(packaged_video(name))
    clips = load_clips(str(tmp_path), 16, 10, 30, seed=0)  # 8 clips of bikes, 2 of the next
    assert clips.shape == (10, 30, 16, 16, 3)
    bikes = read_frames(tmp_path / "bikes.mp4", count=240, size=16)
    np.testing.assert_array_equal(clips[:8], bikes.reshape(8, 30, 16, 16, 3))
    np.testing.assert_array_equal(
        clips[8], read_frames(tmp_path / "carphone_distorted.mp4", count=30, size=16)
    )
