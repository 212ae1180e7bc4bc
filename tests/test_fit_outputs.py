"""Outputs that say how INPUT's frames were fitted, so a forecast pixel maps back to the camera's:
a robot log's `T/forecast/camera_info` (the camera's K through the fit, or the fit alone), a
video's `lgcvd_fit` container tag, and a rosbag2 folder output replaced only with --force. The
expected numbers are written out here from the crop of a 96x64 frame: its centre 64x64 square
starts at x = 16, and model pixel u covers camera pixels 16 + (64 / size) * [u, u + 1)."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from bag_messages import MS, ROS2, T0, header, image, write_bag
from click.testing import CliRunner
from rosbags.highlevel import AnyReader
from test_robot_logs import timed_bundle

from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.run import main
from lgcvd_runtime.media.resize import fit_frame
from lgcvd_runtime.media.writer import VideoWriter

PERIOD = 100 * MS
K_CAMERA = np.array([[80.0, 0.0, 47.5], [0.0, 80.0, 31.5], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def ten_hz(tmp_path_factory):
    return timed_bundle(tmp_path_factory, 0.1)


def wide(frames: np.ndarray) -> np.ndarray:
    """(T, 64, 96, 3): each frame with 16 grey columns either side."""
    return np.pad(frames, ((0, 0), (0, 0), (16, 16), (0, 0)), constant_values=90)


def wide_bag(path, frames: np.ndarray, with_info: bool):
    msgs = [("/cam/image_raw", T0 + i * PERIOD, image(f, "rgb8", T0 + i * PERIOD))
            for i, f in enumerate(wide(frames[:4]))]  # fmt: skip
    if with_info:
        info = ROS2.types["sensor_msgs/msg/CameraInfo"](
            header=header(ROS2, T0), height=64, width=96, distortion_model="plumb_bob",
            d=np.zeros(5), k=K_CAMERA.reshape(-1), r=np.eye(3).reshape(-1),
            p=np.hstack([K_CAMERA, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0,
            roi=ROS2.types["sensor_msgs/msg/RegionOfInterest"](
                x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )  # fmt: skip
        msgs.insert(0, ("/cam/camera_info", T0, info))
    return write_bag(path, msgs)


def predict(*args) -> object:
    return CliRunner().invoke(main, ["predict", *(str(a) for a in args)])


def camera_infos(path) -> list:
    with AnyReader([path]) as reader:
        chosen = [c for c in reader.connections if c.topic == "/cam/image_raw/forecast/camera_info"]
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(chosen)]


@pytest.mark.parametrize("with_info", [True, False])
def test_a_bag_forecast_carries_the_model_frames_intrinsics_at_its_origin(
    tmp_path, bair, ten_hz, with_info
):
    bag = wide_bag(tmp_path / "cam", bair, with_info)
    common = ["-p", "2", "-n", "2", "--steps", "2", "--model", ten_hz, "--quiet"]
    out = predict(bag, "-o", tmp_path / "f", *common)
    assert out.exit_code == 0, out.output
    (info,) = camera_infos(tmp_path / "f")
    size = info.width
    assert info.height == size and info.header.frame_id == "cam"
    assert info.header.stamp.sec * 10**9 + info.header.stamp.nanosec == T0 + PERIOD  # origin
    s = 64 / size  # camera pixels per model pixel; pixel centres at whole numbers (ROS)
    camera = K_CAMERA if with_info else np.eye(3)
    # a camera pixel centre x is model pixel centre u where x + 0.5 = 16 + s (u + 0.5)
    x0, y0 = 16 + 0.5 * s - 0.5, 0.5 * s - 0.5
    expected = np.array(
        [[camera[0, 0] / s, 0, (camera[0, 2] - x0) / s],
         [0, camera[1, 1] / s, (camera[1, 2] - y0) / s], [0, 0, 1]]
    )  # fmt: skip
    np.testing.assert_allclose(info.k.reshape(3, 3), expected, atol=1e-9)
    np.testing.assert_allclose(info.p.reshape(3, 4)[:, :3], expected, atol=1e-9)
    u, v = 5, 7  # a marked model pixel maps back to its camera pixel
    x, y, _ = camera @ np.linalg.solve(info.k.reshape(3, 3), [u, v, 1.0])
    assert (x, y) == pytest.approx((x0 + s * u, y0 + s * v))


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_video_of_fitted_frames_records_the_fit_and_one_of_unfitted_frames_does_not(
    tmp_path, bair, ten_hz, suffix
):
    common = ["-p", "2", "-n", "2", "--steps", "2", "--model", ten_hz, "--quiet"]
    size = load_manifest(ten_hz, verify=False).model.image_size
    at_size = np.stack([fit_frame(f, size) for f in bair[:4]])  # already the model's frames
    for name, frames in (("wide.mkv", wide(bair[:4])), ("square.mkv", at_size)):
        with VideoWriter(tmp_path / name, 10) as writer:
            writer.write(frames)
        out = predict(tmp_path / name, "-o", tmp_path / f"{name}{suffix}", *common)
        assert out.exit_code == 0, out.output
    with av.open(str(tmp_path / f"wide.mkv{suffix}")) as video:
        tags = {key.lower(): value for key, value in video.metadata.items()}
    fit = json.loads(tags["lgcvd_fit"])
    s = 64 / size
    assert fit == pytest.approx({"scale_x": s, "scale_y": s, "offset_x": 16.0, "offset_y": 0.0})
    u = 5  # model pixel 5 covers camera pixels [16 + 5 s, 16 + 6 s)
    assert fit["scale_x"] * (u + 0.5) + fit["offset_x"] == pytest.approx(16 + (u + 0.5) * s)
    with av.open(str(tmp_path / f"square.mkv{suffix}")) as video:
        assert not any(key.lower() == "lgcvd_fit" for key in video.metadata)


def test_a_rosbag2_folder_output_is_refused_without_force_and_replaced_whole_with_it(
    tmp_path, bair, ten_hz
):
    bag = wide_bag(tmp_path / "cam", bair, False)
    common = ["-p", "2", "-n", "2", "--steps", "2", "--model", ten_hz, "--quiet"]
    target = tmp_path / "forecast"
    target.mkdir()
    (target / "old.txt").write_text("old")
    out = predict(bag, "-o", target, *common)
    assert out.exit_code == 1 and "--force" in out.output and len(out.output.splitlines()) == 1
    assert predict(bag, "-o", target, "--force", *common).exit_code == 0
    assert not (target / "old.txt").exists() and (target / "metadata.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam", "forecast"]  # no temporary
