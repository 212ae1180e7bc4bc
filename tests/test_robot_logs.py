"""Robot logs in every command and time that is real: a bag through `lgcvd-run predict` (and back
out as a bag of forecasts), resampling by stamp to the model's period, breaks in the timeline,
training on a folder of bags, the period from data to bundle to `info`, and the times of
forecast frames against their closed form (last given time + k periods, written out here)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from bag_messages import MS, T0, camera_bag, image, read, write_bag
from click.testing import CliRunner
from conftest import BAIR_REAL, export_tiny_bundle

from lgcvd_runtime import api
from lgcvd_runtime.cli.run import main
from lgcvd_runtime.framing import Framing, period_ns
from lgcvd_runtime.media.source import read_clip
from lgcvd_runtime.media.video import read_frames
from lgcvd_train.data import load_dataset
from lgcvd_train.data.robot_logs import data_period

PERIOD = 100 * MS  # the bair-real clips are 10 fps


def timed_bundle(tmp_path_factory, period_s: float | None) -> Path:
    """The tiny bundle with its manifest's frame period set (only graph hashes are verified)."""
    source = Path(export_tiny_bundle(tmp_path_factory))
    target = tmp_path_factory.mktemp("timed") / f"period-{period_s}.lgcvd"
    shutil.copytree(source, target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["framing"]["period_s"] = period_s
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="module")
def ten_hz(tmp_path_factory) -> Path:
    return timed_bundle(tmp_path_factory, 0.1)


def run(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_a_bag_predicts_the_frames_its_video_does_into_a_bag_stamped_at_the_future_times(
    tmp_path, bair, ten_hz
):
    video, bag = BAIR_REAL / "clip0.mkv", camera_bag(tmp_path / "cam", bair)
    common = ["-p", "2", "-n", "6", "--seed", "3", "--model", ten_hz, "--quiet"]
    assert run("predict", video, "-o", tmp_path / "v.mkv", *common).exit_code == 0
    out = run("predict", bag, "-o", tmp_path / "f.mcap", "--with-input", *common)
    assert out.exit_code == 0, out.output
    stamps, frames = read(tmp_path / "f.mcap", "/cam/image_raw/forecast")
    assert stamps == [T0 + PERIOD + k * PERIOD for k in range(1, 7)]  # last given + k periods
    np.testing.assert_array_equal(frames, read_frames(tmp_path / "v.mkv")[2:])
    np.testing.assert_array_equal(read(tmp_path / "f.mcap")[1], bair)  # the camera, copied


def test_a_30_hz_bag_on_a_10_hz_model_gives_every_third_frame_by_stamp(tmp_path, bair):
    bag = camera_bag(tmp_path / "cam", bair, period=PERIOD // 3)
    clip = read_clip(bag, None, start=0, count=5, need=5, size=64, period_ns=PERIOD)
    assert clip.indices.tolist() == [0, 3, 6, 9, 12]
    np.testing.assert_array_equal(clip.frames, bair[[0, 3, 6, 9, 12]])
    assert "resampled" in clip.notes[-1]


def test_predict_says_where_a_gap_falls(tmp_path, bair, ten_hz):
    kept = [i for i in range(12) if i != 4]  # frame 4 dropped
    gapped = tmp_path / "gapped"

    write_bag(
        gapped, [("/cam", T0 + i * PERIOD, image(bair[i], "rgb8", T0 + i * PERIOD)) for i in kept]
    )
    out = run("predict", gapped, "-p", "2", "-n", "4", "--side-by-side", "--model", ten_hz,
              "-o", tmp_path / "p.mkv", "--seed", "0")  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "200.0 ms gap (dropped frames) before frame 4" in out.output


def test_a_bag_without_the_topic_names_its_image_topics_in_one_line(tmp_path, bair, ten_hz):
    bag = camera_bag(tmp_path / "cam", bair[:3])
    out = run(
        "predict", bag, "--topic", "/nope", "--model", ten_hz, "-o", tmp_path / "x.mp4", "--quiet"
    )
    assert out.exit_code == 1
    assert "its image topics: /cam/image_raw" in out.output and len(out.output.splitlines()) == 1


def test_training_on_a_folder_of_bags_never_spans_a_dropped_frame(tmp_path, bair):
    folder = tmp_path / "logs"
    folder.mkdir()
    camera_bag(folder / "a", bair[:20])

    kept = [i for i in range(30) if i != 15]  # 15 frames, a gap, 14 frames
    write_bag(folder / "b", [("/cam/image_raw", T0 + i * PERIOD,
                              image(bair[i], "rgb8", T0 + i * PERIOD)) for i in kept])  # fmt: skip
    assert data_period(str(folder), None, None) == pytest.approx(0.1)
    videos = load_dataset(str(folder), 64, min_frames=14)
    assert [len(v) for v in videos] == [20, 15, 14]  # 20 - 13 + 15 - 13 + 14 - 13 = 11 clips
    np.testing.assert_array_equal(videos[2], bair[16:30])


def test_info_shows_the_period_a_bundle_records_and_says_when_there_is_none(
    tmp_path_factory, ten_hz
):
    assert "frame period 0.1 s (10 Hz)" in run("info", "--model", ten_hz).output
    unknown = timed_bundle(tmp_path_factory, None)
    assert (
        "no frame period recorded: frames are taken by index"
        in run("info", "--model", unknown).output
    )


def test_info_of_a_bag_lists_its_camera_with_type_count_size_encoding_and_rate(tmp_path, bair):
    out = run("info", camera_bag(tmp_path / "cam", bair[:5]))
    assert out.output.strip() == "/cam/image_raw  sensor_msgs/Image, 5 frames, 64x64, rgb8, 10 Hz"


@pytest.mark.parametrize("period_s, ns", [(0.1, 100_000_000), (2 / 3, 666_666_667), (None, None)])
def test_a_period_in_ns_is_its_seconds_rounded_to_whole_ns(period_s, ns):
    assert period_ns(period_s) == ns
    assert Framing(period_s=period_s).period_ns == ns


def test_window_times_are_the_last_given_time_plus_k_periods(ten_hz, bair):
    model = api.load(ten_hz, steps=2, seed=0)
    given = np.array([12.5, 12.6])
    windows = list(model.predict(bair[:2], 9, times=given))
    times = np.concatenate([w.times for w in windows])
    starts = np.concatenate([np.arange(w.start, w.start + w.frames.shape[1]) for w in windows])
    np.testing.assert_allclose(times, 12.6 + (starts - 1) * 0.1)
    untimed = next(iter(model.predict(bair[:2], 2)))
    np.testing.assert_allclose(untimed.times, (np.arange(2, 2 + len(untimed.times)) - 1) * 0.1)


def test_a_model_without_a_period_has_no_times_and_takes_frames_by_index(
    tmp_path_factory, tmp_path, bair
):
    model = api.load(timed_bundle(tmp_path_factory, None), steps=2, seed=0)
    assert next(iter(model.predict(bair[:2], 2))).times is None
    bag = camera_bag(tmp_path / "cam", bair[:9], period=PERIOD // 3)
    clip = read_clip(bag, None, start=0, count=4, need=4, size=64, period_ns=None)
    assert clip.indices.tolist() == [0, 1, 2, 3] and not clip.notes


def bag_folder(tmp_path: Path, bair: np.ndarray) -> Path:
    """Bag a: frames 0..19 of a 30 Hz camera (each bair frame three times); bag b: frames
    0..29 at 10 Hz without frame 15 (a dropped frame)."""

    folder = tmp_path / "logs"
    folder.mkdir()
    camera_bag(folder / "a", np.repeat(bair[:20], 3, axis=0), period=PERIOD // 3)
    kept = [i for i in range(30) if i != 15]
    write_bag(folder / "b", [("/cam/image_raw", T0 + i * PERIOD,
                              image(bair[i], "rgb8", T0 + i * PERIOD)) for i in kept])  # fmt: skip
    return folder


def test_eval_clips_from_bags_are_resampled_to_the_model_period_and_never_span_a_break(
    tmp_path, bair
):
    from lgcvd_train.eval_protocol import load_clips

    clips = load_clips(str(bag_folder(tmp_path, bair)), 64, 4, 8, 0, Framing(period_s=0.1))
    # a: 20 frames at 10 Hz -> 0..7, 8..15; b: runs 0..14 and 16..29 -> 0..7, 16..23
    for clip, first in zip(clips, (0, 8, 0, 16), strict=True):
        np.testing.assert_array_equal(clip, bair[first : first + 8])


def test_lgcvd_eval_on_a_folder_of_bags_records_the_topic_and_the_models_framing(
    tmp_path, bair, ten_hz
):
    from lgcvd_train.evaluate import main as eval_main

    args = ["--model", ten_hz, "--data", bag_folder(tmp_path, bair), "--topic", "/cam/image_raw",
            "--clips", "4", "-p", "2", "-n", "6", "--steps", "2", "--no-lpips", "--no-fvd",
            "--quiet", "--out", tmp_path / "eval"]  # fmt: skip
    out = CliRunner().invoke(eval_main, [str(a) for a in args])
    assert out.exit_code == 0, out.output
    data = json.loads((tmp_path / "eval" / "report.json").read_text())["data"]
    assert data["topic"] == "/cam/image_raw" and data["framing"]["period_s"] == 0.1


def test_models_with_other_periods_or_fits_in_one_eval_are_refused_in_one_line():
    from lgcvd_train.eval_protocol import EvalError, copy_last, shared_framing

    def model(label, framing):
        return replace(copy_last(), label=label, kind="bundle", framing=framing)

    ten, pad = Framing(period_s=0.1), Framing(period_s=0.1, fit="pad")
    assert shared_framing([copy_last(), model("a", ten), model("b", ten)]) == ten
    for other, what in ((Framing(), "frame periods"), (pad, "fits")):
        with pytest.raises(EvalError, match=f"different {what} .*a: .*b: ") as err:
            shared_framing([model("a", ten), model("b", other)])
        assert "\n" not in str(err.value)
