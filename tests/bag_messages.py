"""ROS messages and bags made by the tests with rosbags from real frames (Image in every encoding
with padded rows, CompressedImage encoded with PyAV, rosbag2 folders), and reading one topic back
with lgcvd: what the bag tests share."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from lgcvd_runtime.media.bags import read_stamped_frames

rosbags = pytest.importorskip("rosbags")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

ROS2 = get_typestore(Stores.LATEST)
MS = 1_000_000  # ns
T0 = 1_700_000_000 * 1_000_000_000  # a wall-clock stamp, as a robot records


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
