"""Writing forecast bags (lgcvd_runtime/media/bag_writer.py): read back by two libraries, rosbags
and mcap + mcap-ros2-support; one topic per sample beside a copy of the camera; atomic, refused
without --force, nothing left on an error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from bag_messages import MS, T0, camera_bag, read

from lgcvd_runtime.errors import BagError, OutputExistsError
from lgcvd_runtime.media import bag_writer
from lgcvd_runtime.media.bag_writer import Forecast, forecast_topics, write_forecast_bag
from lgcvd_runtime.media.bags import image_topics, is_bag

# ----------------------------------------------------------------------------- writing


def forecasts(frames: np.ndarray, samples: int = 1) -> list[Forecast]:
    """Two forecasts from frames (S*2*3 of them): origins at 0.2 s and 0.5 s, 3 frames each."""
    made = frames[: samples * 6].reshape(samples, 2, 3, *frames.shape[1:])
    return [
        Forecast(T0 + 200 * MS, (T0 + 300 * MS, T0 + 400 * MS, T0 + 500 * MS), made[:, 0]),
        Forecast(T0 + 500 * MS, (T0 + 600 * MS, T0 + 700 * MS, T0 + 800 * MS), made[:, 1]),
    ]


def read_with_mcap(path: Path) -> dict[str, list]:
    """topic -> [(log time, stamp, frame_id, frame)] by mcap + mcap-ros2-support: an rgb8 Image's
    frame (H, W, 3), None for a Header."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    found = {}
    with open(path, "rb") as file:
        reader = make_reader(file, decoder_factories=[DecoderFactory()])
        for schema, channel, message, msg in reader.iter_decoded_messages(log_time_order=True):
            head, frame = (msg if schema.name == "std_msgs/msg/Header" else msg.header), None
            if schema.name == "sensor_msgs/msg/Image":
                assert msg.encoding == "rgb8"
                rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
                frame = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
            stamp = head.stamp.sec * 10**9 + head.stamp.nanosec
            found.setdefault(channel.topic, []).append(
                (message.log_time, stamp, head.frame_id, frame)
            )
    return found


@pytest.mark.parametrize("name", ["forecast.mcap", "forecast"])
def test_forecasts_read_back_exactly_by_rosbags_and_by_mcap(tmp_path, bair, name):
    made = forecasts(bair)
    out = write_forecast_bag(tmp_path / name, "/cam/image_raw", made, frame_id="cam_optical")
    assert is_bag(out)
    stamps, frames = read(out, "/cam/image_raw/forecast")  # rosbags
    assert stamps == [s for f in made for s in f.stamps_ns]
    np.testing.assert_array_equal(frames, bair[:6])
    mcap_file = out if out.is_file() else out / "forecast.mcap"
    seen = read_with_mcap(mcap_file)
    assert sorted(seen) == ["/cam/image_raw/forecast", "/cam/image_raw/forecast/origin"]
    assert [(t, s, i) for t, s, i, _ in seen["/cam/image_raw/forecast"]] == [
        (s, s, "cam_optical") for s in stamps
    ]
    np.testing.assert_array_equal(
        np.stack([f for *_, f in seen["/cam/image_raw/forecast"]]), bair[:6]
    )
    origins = [(t, s, i) for t, s, i, _ in seen["/cam/image_raw/forecast/origin"]]
    assert origins == [
        (T0 + 200 * MS,) * 2 + ("cam_optical",),
        (T0 + 500 * MS,) * 2 + ("cam_optical",),
    ]


def test_several_samples_get_one_topic_each_beside_a_copy_of_the_camera(tmp_path, bair):
    camera = camera_bag(tmp_path / "in", bair[:9])
    out = write_forecast_bag(
        tmp_path / "f.mcap", "/cam/image_raw", forecasts(bair, 2), input_bag=camera
    )
    assert forecast_topics("/cam/image_raw", 2) == [
        "/cam/image_raw/forecast/sample_1",
        "/cam/image_raw/forecast/sample_2",
    ]
    seen = read_with_mcap(out)
    for s, topic in enumerate(forecast_topics("/cam/image_raw", 2)):
        np.testing.assert_array_equal(read(out, topic)[1], bair[s * 6 : s * 6 + 6])
        assert len(seen[topic]) == 6
    stamps, frames = read(out)  # the copy of the camera, stamps and log times kept
    assert stamps == [T0 + i * 100 * MS for i in range(9)]
    np.testing.assert_array_equal(frames, bair[:9])
    assert [t for t, *_ in seen["/cam/image_raw"]] == [s + 3 * MS for s in stamps]


def test_an_error_mid_write_leaves_no_output_and_no_temporary_file(tmp_path, bair, monkeypatch):
    calls = []
    real_header = bag_writer._header

    def failing_header(*args):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("disk gone")
        return real_header(*args)

    monkeypatch.setattr(bag_writer, "_header", failing_header)
    for name in ("f.mcap", "folder"):
        with pytest.raises(RuntimeError):
            write_forecast_bag(tmp_path / name, "/cam", forecasts(bair))
        calls.clear()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_refused_without_force_and_replaced_with_it(tmp_path, bair):
    for name in ("f.mcap", "folder"):
        write_forecast_bag(tmp_path / name, "/cam", forecasts(bair))
        with pytest.raises(OutputExistsError):
            write_forecast_bag(tmp_path / name, "/cam", forecasts(bair))
        write_forecast_bag(tmp_path / name, "/cam", forecasts(bair[::-1]), force=True)
        np.testing.assert_array_equal(read(tmp_path / name, "/cam/forecast")[1], bair[::-1][:6])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.mcap", "folder"]


def test_overlapping_forecasts_are_refused_before_anything_is_written(tmp_path, bair):
    first, second = forecasts(bair)
    late = Forecast(T0 + 400 * MS, second.stamps_ns, second.frames)
    with pytest.raises(ValueError, match="must not overlap"):
        write_forecast_bag(tmp_path / "f.mcap", "/cam", [first, late])
    assert list(tmp_path.iterdir()) == []


def test_without_rosbags_reading_a_bag_says_to_install_the_ros_extra(tmp_path, bair, monkeypatch):
    bag = camera_bag(tmp_path / "bag", bair[:1])
    monkeypatch.setitem(sys.modules, "rosbags", None)
    with pytest.raises(BagError) as err:
        image_topics(bag)
    assert str(err.value) == "reading or writing bags needs the ros extra: pip install 'lgcvd[ros]'"
