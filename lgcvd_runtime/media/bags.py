"""Reading robot logs: camera frames from rosbag2 bags (MCAP and sqlite3 storage, a folder or a
lone .mcap) and ROS 1 .bag files, each frame with the time its header stamp gives.

`image_topics` describes a bag's camera topics (for `lgcvd-run info`) and `read_stamped_frames`
decodes one topic lazily into (stamp in ns, uint8 RGB (H, W, 3)) pairs; `camera_matrix` reads a
camera's intrinsics from the `camera_info` topic beside it. Where a recording breaks
and which frames a model at its own rate sees is `stamps.py`; writing forecasts into bags is
`bag_writer.py`.

Messages: `sensor_msgs/Image` in rgb8, bgr8, rgba8, bgra8 and mono8 (rows padded to `step` are
cut), mono16 kept to its high byte (value >> 8, so 16-bit intensities map onto 0..255 as an 8-bit
camera would show them); Bayer mosaics and other encodings are refused in one line naming the
encoding. `sensor_msgs/CompressedImage` in jpeg or png, decoded with PyAV (`image_rgb` and
`codec_name`, the rule for each, serve ros2/images.py's live topics too). Times are header
stamps; a topic whose first stamp is zero (a driver that never sets them) uses the bag's log
times instead, with a note.

rosbags is an optional dependency (`pip install 'lgcvd[ros]'`), imported only when a bag is
read. Every bad bag becomes a one-line `BagError`; rosbags' and PyAV's errors never escape. This
module knows nothing about models; it must not import torch or onnx.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lgcvd_runtime.errors import BagError
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import CROP, fit_frame
from lgcvd_runtime.media.stamps import Break, breaks, measured_rate

IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
ROS_EXTRA = "reading or writing bags needs the ros extra: pip install 'lgcvd[ros]'"
# Image encoding -> (bytes per pixel, channel order giving RGB)
LAYOUTS = {
    "rgb8": (3, [0, 1, 2]),
    "bgr8": (3, [2, 1, 0]),
    "rgba8": (4, [0, 1, 2]),
    "bgra8": (4, [2, 1, 0]),
    "mono8": (1, [0, 0, 0]),
    "mono16": (2, [0, 0, 0]),
}
# CompressedImage format word -> PyAV's decoder, the first a format names wins (`codec_name`)
CODECS = {"png": "png", "jpeg": "mjpeg", "jpg": "mjpeg"}
READABLE = f"Images ({', '.join(LAYOUTS)}) and CompressedImages ({', '.join(CODECS)})"


@dataclass(frozen=True)
class TopicInfo:
    """One camera topic of a bag: `encoding` is an Image's encoding or a CompressedImage's
    format; width and height are None where the first frame cannot be decoded; `rate` (Hz)
    is `measured_rate` (None for fewer than two frames)."""

    topic: str
    msgtype: str
    count: int
    width: int | None
    height: int | None
    encoding: str
    rate: float | None
    breaks: tuple[Break, ...]
    stamps_from_log: bool


# ----------------------------------------------------------------------------- opening


def require_rosbags() -> None:
    """Raise BagError where rosbags (the ros extra) is not installed."""
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise BagError(ROS_EXTRA) from None


def is_bag(path: str | os.PathLike[str]) -> bool:
    """A rosbag2 folder (metadata.yaml, or .mcap / .db3 files in it), a lone .mcap or a ROS 1
    .bag (by suffix: a missing file is a bag for the reader to report missing)."""
    path = Path(path)
    if path.is_dir():
        return (
            (path / "metadata.yaml").exists() or any(path.glob("*.mcap")) or any(path.glob("*.db3"))
        )
    return path.suffix.lower() in (".mcap", ".bag")


def _read_errors() -> tuple[type[Exception], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    from rosbags.serde import SerdeError
    from rosbags.typesys import TypesysError

    return AnyReaderError, Reader1Error, Reader2Error, SerdeError, TypesysError


def _corrupt(path: Path, detail: object) -> BagError:
    detail = " ".join(str(detail).split()).rstrip(".")
    return BagError(
        f"{path} is not a readable bag, or is truncated or corrupt ({detail}); pass a complete "
        "rosbag2 folder, .mcap or ROS 1 .bag (`mcap recover` repairs an .mcap cut short)"
    )


@dataclass(frozen=True)
class _Bag:
    topics: dict[str, str]  # topic -> message type
    messages: Callable[[str], Iterator[tuple[int, object]]]  # topic -> (log time ns, message)


def _open_any(path: Path, stack: contextlib.ExitStack) -> _Bag:
    """AnyReader for a ROS 1 bag or a rosbag2 folder with metadata.yaml; rosbags' storage
    readers for a lone .mcap or a folder whose recorder died before writing metadata.yaml."""
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2.storage_mcap import McapReader
    from rosbags.rosbag2.storage_sqlite3 import Sqlite3Reader
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.LATEST)  # image messages are alike in every ROS 2 release
    if path.suffix.lower() == ".bag" or (path / "metadata.yaml").exists():
        reader = stack.enter_context(AnyReader([path], default_typestore=types))

        def any_messages(topic: str) -> Iterator[tuple[int, object]]:
            chosen = [c for c in reader.connections if c.topic == topic]
            for conn, log_ns, raw in reader.messages(connections=chosen):
                yield log_ns, reader.deserialize(raw, conn.msgtype)

        return _Bag({c.topic: c.msgtype for c in reader.connections}, any_messages)
    files = [path] if path.is_file() else sorted(path.glob("*.mcap")) or sorted(path.glob("*.db3"))
    storages = []
    for file in files:
        storage = (McapReader if file.suffix.lower() == ".mcap" else Sqlite3Reader)(file)
        storage.open()
        stack.callback(storage.close)
        storages.append(storage)

    def storage_messages(topic: str) -> Iterator[tuple[int, object]]:
        for storage in storages:
            chosen = [c for c in storage.connections if c.topic == topic]
            for conn, log_ns, raw in storage.messages(chosen):
                yield log_ns, types.deserialize_cdr(raw, conn.msgtype)

    return _Bag({c.topic: c.msgtype for s in storages for c in s.connections}, storage_messages)


@contextlib.contextmanager
def _open_bag(path: Path) -> Iterator[_Bag]:
    """Open `path` as a bag; rosbags' errors, while opening or reading, become BagError."""
    if not path.exists():
        raise BagError(f"{path} does not exist; check the path")
    require_rosbags()
    try:
        with contextlib.ExitStack() as stack:
            yield _open_any(path, stack)
    except _read_errors() as err:
        raise _corrupt(path, err) from None
    except OSError as err:
        raise _corrupt(path, err.strerror or err) from None


def _image_topic(bag: _Bag, path: Path, topic: str | None) -> str:
    """The image topic `topic` names (a missing leading slash added; None: the bag's only image
    topic); else a BagError naming the bag's image topics."""
    cameras = sorted(t for t, kind in bag.topics.items() if kind in (IMAGE, COMPRESSED))
    if topic is None:
        if len(cameras) == 1:
            return cameras[0]
        if cameras:
            raise BagError(f"{path} has image topics {', '.join(cameras)}: pass one with --topic")
        topic = ""
    topic = topic if topic in bag.topics or topic.startswith("/") else f"/{topic}"
    if bag.topics.get(topic) in (IMAGE, COMPRESSED):
        return topic
    if not cameras:
        raise BagError(
            f"{path} has no image topics; lgcvd reads sensor_msgs/Image and CompressedImage topics"
        )
    found = (
        f"{path} topic {topic} is a {bag.topics[topic]}, not an image"
        if topic in bag.topics
        else f"{path} has no topic {topic}"
    )
    raise BagError(f"{found}; its image topics: {', '.join(cameras)}: pass one with --topic")


def iter_messages(
    path: str | os.PathLike[str], topic: str | None
) -> Iterator[tuple[int, str, object]]:
    """Yield (log time ns, message type, message) of the image topic `topic`, in log order."""
    path = Path(path)
    with _open_bag(path) as bag:
        topic = _image_topic(bag, path, topic)
        for log_ns, msg in bag.messages(topic):
            yield log_ns, bag.topics[topic], msg


def camera_topic(path: str | os.PathLike[str], topic: str | None) -> tuple[str, str]:
    """The image topic `topic` names (None: the bag's only one) and its first frame's frame_id."""
    path = Path(path)
    with _open_bag(path) as bag:
        topic = _image_topic(bag, path, topic)
        for _, msg in bag.messages(topic):
            return topic, msg.header.frame_id
    return topic, ""


def info_topic(topic: str) -> str:
    """The `camera_info` topic beside a camera topic, as ROS drivers name it: /cam/image_raw and
    its transport /cam/image_raw/compressed -> /cam/camera_info."""
    parts = topic.rstrip("/").split("/")
    parts = parts[:-1] if parts[-1] == "compressed" else parts
    return "/".join(parts[:-1]) + "/camera_info"


def camera_matrix(path: str | os.PathLike[str], topic: str) -> np.ndarray | None:
    """The 3x3 intrinsic matrix K of the first `sensor_msgs/CameraInfo` on the camera topic's
    `info_topic`; None where the bag has none there."""
    path = Path(path)
    with _open_bag(path) as bag:
        name = info_topic(topic)
        if bag.topics.get(name) != CAMERA_INFO:
            return None
        for _, msg in bag.messages(name):
            return np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    return None


def read_stamps(path: str | os.PathLike[str], topic: str | None) -> list[int]:
    """The frame times (ns) of the image topic `topic` (None: the only one), headers only: the
    header stamps, or the log times where the first stamp is zero (as `read_stamped_frames`)."""
    stamps, logs = [], []
    for log_ns, _, msg in iter_messages(path, topic):
        stamps.append(stamp_ns(msg))
        logs.append(log_ns)
    return logs if stamps and stamps[0] == 0 else stamps


# ----------------------------------------------------------------------------- decoding


def stamp_ns(msg) -> int:
    """A message's header stamp in ns."""
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _refuse(where: str, what: str) -> BagError:
    return BagError(f"{where} holds {what}; lgcvd reads {READABLE}: convert the topic first")


def image_rgb(msg, data: np.ndarray) -> np.ndarray | None:
    """The pixels of an Image whose encoding is in `LAYOUTS` (bags' and live topics' alike),
    `data` its bytes as flat uint8, as (H, W, 3) uint8 RGB with rows cut to width (a `step` may
    pad them), mono16 kept to its high byte; None where the sizes do not fit the bytes."""
    depth, order = LAYOUTS[msg.encoding]
    height, width, step = msg.height, msg.width, msg.step
    if width < 1 or height < 1 or step < width * depth or data.size < step * height:
        return None
    rows = data[: step * height].reshape(height, step)[:, : width * depth]
    if msg.encoding == "mono16":
        rows = (rows.view(">u2" if msg.is_bigendian else "<u2") >> 8).astype(np.uint8)
    return np.ascontiguousarray(rows.reshape(height, width, -1)[..., order])


def codec_name(fmt: str) -> str | None:
    """PyAV's decoder for a CompressedImage format ("jpeg", "rgb8; png compressed bgr8") from
    `CODECS`, None for one lgcvd does not read (compressedDepth, other codecs)."""
    name = fmt.lower()
    if "compresseddepth" in name:
        return None
    return next((codec for word, codec in CODECS.items() if word in name), None)


def _raw_image(msg, where: str) -> np.ndarray:
    """An Image's pixels as (H, W, 3) uint8 RGB (`image_rgb`), or a one-line BagError."""
    encoding = msg.encoding
    if encoding.lower().startswith("bayer"):
        raise _refuse(where, f"{encoding} images (a raw Bayer mosaic: record the debayered topic)")
    if encoding not in LAYOUTS:
        raise _refuse(where, f"{encoding!r} images")
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    frame = image_rgb(msg, data)
    if frame is None:
        raise BagError(
            f"{where} has a {msg.width}x{msg.height} {encoding} image with step {msg.step} in "
            f"{data.size} bytes; the bag is corrupt: re-record or repair it"
        )
    return frame


class _Decoder:
    """One topic's messages to RGB frames; CompressedImages through one PyAV decoder."""

    def __init__(self, where: str, msgtype: str):
        self.where, self.msgtype = where, msgtype
        self._codec: av.CodecContext | None = None

    def _codec_for(self, fmt: str) -> av.CodecContext:
        if self._codec is None:
            codec = codec_name(fmt)
            if codec is None:
                raise _refuse(self.where, f"CompressedImages of format {fmt!r}")
            self._codec = av.CodecContext.create(codec, "r")
        return self._codec

    def __call__(self, msg) -> np.ndarray:
        if self.msgtype == IMAGE:
            return _raw_image(msg, self.where)
        codec = self._codec_for(msg.format)
        try:
            frames = codec.decode(av.Packet(np.asarray(msg.data, dtype=np.uint8).tobytes()))
        except av.FFmpegError as err:
            raise BagError(
                f"{self.where} holds a {msg.format} image PyAV cannot decode ({err.strerror}); "
                "the bag is corrupt: re-record or repair it"
            ) from None
        if len(frames) != 1:
            raise BagError(f"{self.where} holds a {msg.format} image that decodes to no picture")
        return frames[0].to_ndarray(format="rgb24")  # (H, W, 3)


def read_stamped_frames(
    path: str | os.PathLike[str],
    topic: str | None,
    *,
    size: int | None = None,
    log: Callable[[str], None] | None = None,
    framing: Framing = CROP,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (stamp ns, frame) for each message of the image topic `topic` (None: the bag's only
    one), in log order,
    decoding lazily: frames are (H, W, 3) uint8 RGB, or fitted to (size, size, 3) as `framing`
    says with `size` (`resize.fit_frame`). Where the first header stamp is zero the bag's log times are
    used instead, and `log` gets a note saying so. Raises BagError as the module header says."""
    path = Path(path)
    with _open_bag(path) as bag:
        topic = _image_topic(bag, path, topic)
        decode, from_log, count = _Decoder(f"{path} topic {topic}", bag.topics[topic]), None, 0
        for log_ns, msg in bag.messages(topic):
            if from_log is None:
                from_log = stamp_ns(msg) == 0
                if from_log and log is not None:
                    log(f"note: {topic} has zero header stamps; using the bag's log times")
            frame = decode(msg)
            count += 1
            yield (
                log_ns if from_log else stamp_ns(msg),
                (frame if size is None else fit_frame(frame, size, framing)),
            )
    if count == 0:
        raise BagError(f"{path} has no messages on {topic}; pass a topic that has frames")


def image_topics(path: str | os.PathLike[str]) -> list[TopicInfo]:
    """Describe each image topic of the bag at `path` (reads every message's header; decodes
    only the first CompressedImage of a topic, for its size)."""
    path = Path(path)
    found = []
    with _open_bag(path) as bag:
        for topic, msgtype in sorted(bag.topics.items()):
            if msgtype not in (IMAGE, COMPRESSED):
                continue
            stamps, logs, first = [], [], None
            for log_ns, msg in bag.messages(topic):
                first = msg if first is None else first
                stamps.append(stamp_ns(msg))
                logs.append(log_ns)
            from_log = bool(stamps) and stamps[0] == 0
            times = logs if from_log else stamps
            width = height = None
            if first is not None and msgtype == IMAGE:
                width, height, encoding = first.width, first.height, first.encoding
            elif first is not None:
                encoding = first.format
                with contextlib.suppress(BagError):
                    height, width, _ = _Decoder(f"{path} topic {topic}", msgtype)(first).shape
            else:
                encoding = ""
            rate = measured_rate(times)
            found.append(
                TopicInfo(
                    topic,
                    msgtype,
                    len(times),
                    width,
                    height,
                    encoding,
                    rate,
                    tuple(breaks(times)),
                    from_log,
                )
            )
    return found
