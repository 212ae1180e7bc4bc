"""Writing forecasts into robot logs: `write_forecast_bag` puts made frames, as `sensor_msgs/Image`
rgb8, into a lone .mcap file or a rosbag2 folder (MCAP storage), beside a copy of the camera topic
they were made from if asked.

Layout, chosen for Foxglove (which plays MCAP by log time, one Image panel per topic) and for ROS
tools (which read header stamps):
  - `T/forecast` carries every made frame of camera topic T; with several samples each has its
    own topic, `T/forecast/sample_1`, `T/forecast/sample_2`, ... (numbered as in the videos' rows).
  - A frame is stamped at the future time it shows: header.stamp and the MCAP log time are both
    that time. So an Image panel on the forecast plays each frame at the moment the camera frame
    it predicts plays in a panel beside it, and stamp-based tools line the two up too.
  - frame_id is the camera's, unchanged, so the 3D panel and TF place the forecast as the camera.
  - `T/forecast/camera_info`, given the made frames' intrinsics K (`write_forecast_bag(k=...)`),
    is a `sensor_msgs/CameraInfo` per forecast stamped at its origin: the model frame's width and
    height, K, R = I and P = [K | 0], so a forecast pixel maps back to the camera's pixels
    (README, "Forecasts in time").
  - The frames of one forecast are grouped by `T/forecast/origin`, a `std_msgs/Header` per
    forecast stamped (and logged) at its origin: the stamp of the last camera frame it was made
    from. A forecast's frames are those of a forecast topic stamped after its origin and up to
    the next origin. Forecasts on one topic never overlap in time (checked here), so each topic
    plays as one video with no frame shown twice.

The output is built in a hidden folder beside the target (`files.temporary_path`) by rosbags'
rosbag2 writer and renamed into place only when complete (a lone .mcap is the folder's one MCAP
file); on any error nothing is left. This module knows nothing about models; it must not import
torch or onnx.
"""

from __future__ import annotations

import heapq
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lgcvd_runtime.errors import OutputError
from lgcvd_runtime.files import give_umask_permissions, publish, refuse_existing, temporary_path
from lgcvd_runtime.media.bags import (
    CAMERA_INFO,
    COMPRESSED,
    IMAGE,
    iter_messages,
    require_rosbags,
    stamp_ns,
)
from lgcvd_runtime.signals import signals_deferred

HEADER = "std_msgs/msg/Header"


@dataclass(frozen=True)
class Forecast:
    """One forecast: `frames` (S, H, h, w, 3) uint8 RGB, S samples of H frames, frame k showing
    the time `stamps_ns[k]`; made from camera frames up to the stamp `origin_ns`."""

    origin_ns: int
    stamps_ns: tuple[int, ...]
    frames: np.ndarray


def forecast_topics(topic: str, samples: int) -> list[str]:
    """The topic of each sample's made frames (see the module header)."""
    base = "/" + topic.strip("/") + "/forecast"
    return [base] if samples == 1 else [f"{base}/sample_{s + 1}" for s in range(samples)]


def _check(forecasts: Sequence[Forecast]) -> None:
    """Raise ValueError unless every forecast has S x H RGB frames with increasing stamps after
    its origin, and forecasts follow one another without overlapping."""
    if not forecasts:
        raise ValueError("no forecast to write")
    samples = forecasts[0].frames.shape[0]
    last = None
    for f in forecasts:
        stamps = np.asarray(f.stamps_ns, dtype=np.int64)
        if f.frames.dtype != np.uint8 or f.frames.ndim != 5 or f.frames.shape[-1] != 3:
            raise ValueError(f"frames must be (S, H, h, w, 3) uint8, got {f.frames.shape}")
        if f.frames.shape[:2] != (samples, len(stamps)):
            raise ValueError(f"frames {f.frames.shape} do not match {samples} samples x stamps")
        if np.any(np.diff(stamps) <= 0) or stamps[0] <= f.origin_ns:
            raise ValueError("a forecast's stamps must increase, after its origin")
        if last is not None and f.origin_ns < last:
            raise ValueError("forecasts must not overlap: each origin at or after the last frame")
        last = int(stamps[-1])


def write_forecast_bag(
    path: str | os.PathLike[str],
    topic: str,
    forecasts: Sequence[Forecast],
    *,
    frame_id: str = "",
    input_bag: str | os.PathLike[str] | None = None,
    force: bool = False,
    k: np.ndarray | None = None,
) -> Path:
    """Write `forecasts` of camera topic `topic` to `path` (a lone MCAP file where it ends in
    .mcap, else a rosbag2 folder) and return the path; with `input_bag`, the camera topic is
    copied from that bag too; with `k`, the made frames' 3x3 intrinsics, a CameraInfo per
    forecast. An existing `path` is refused unless `force`."""
    require_rosbags()
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    _check(forecasts)
    path, topic = Path(path), "/" + topic.strip("/")  # rosbag2 topic names are absolute
    refuse_existing(path, force)
    lone = path.suffix.lower() == ".mcap"
    work = temporary_path(path)  # hidden and unique beside the target; holds the rosbag2 folder
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work.mkdir()
    except OSError as err:
        raise OutputError(
            f"cannot write {path} ({err.strerror}); choose a folder you can write to"
        ) from None
    try:
        types = get_typestore(Stores.LATEST)
        bag = work / (path.stem if lone else path.name)
        with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
            channels = {}

            def channel(name: str, msgtype: str):
                if name not in channels:
                    channels[name] = writer.add_connection(name, msgtype, typestore=types)
                return channels[name]

            streams = [_forecast_messages(types, topic, forecasts, frame_id)]
            if k is not None:
                streams.append(_camera_infos(types, topic, forecasts, frame_id, k))
            if input_bag is not None:
                streams.append(_camera_messages(types, input_bag, topic))
            for log_ns, name, msgtype, msg in heapq.merge(*streams, key=lambda m: m[0]):
                writer.write(channel(name, msgtype), log_ns, types.serialize_cdr(msg, msgtype))
        if lone:
            publish(bag / f"{bag.name}.mcap", path)
        else:
            give_umask_permissions(bag)
            _replace(bag, path, work / "replaced")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _replace(new: Path, target: Path, aside: Path) -> None:
    """Rename the folder `new` onto `target`; an old `target` moves to `aside` first (deleted
    with it by the caller) and back if the rename fails. Signals wait until both renames end."""
    with signals_deferred():
        old = target.exists()
        if old:
            os.replace(target, aside)
        try:
            os.replace(new, target)
        except BaseException:
            if old:
                os.replace(aside, target)
            raise


def _header(types, stamp: int, frame_id: str):
    time = types.types["builtin_interfaces/msg/Time"](
        sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000
    )
    return types.types[HEADER](stamp=time, frame_id=frame_id)


def _forecast_messages(
    types, topic: str, forecasts: Sequence[Forecast], frame_id: str
) -> Iterator[tuple[int, str, str, object]]:
    """(log time, topic, type, message) of each forecast's origin and frames, in time order."""
    image = types.types[IMAGE]
    names = forecast_topics(topic, forecasts[0].frames.shape[0])
    for f in forecasts:
        yield f.origin_ns, f"{topic}/forecast/origin", HEADER, _header(types, f.origin_ns, frame_id)
        for k, stamp in enumerate(f.stamps_ns):
            for name, frame in zip(names, f.frames[:, k], strict=True):  # frame (h, w, 3)
                height, width, _ = frame.shape
                msg = image(
                    header=_header(types, int(stamp), frame_id),
                    height=height,
                    width=width,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=width * 3,
                    data=np.ascontiguousarray(frame).reshape(-1),
                )
                yield int(stamp), name, IMAGE, msg


def _camera_infos(
    types, topic: str, forecasts: Sequence[Forecast], frame_id: str, k: np.ndarray
) -> Iterator[tuple[int, str, str, object]]:
    """A CameraInfo of the made frames at each forecast's origin (module header)."""
    height, width = forecasts[0].frames.shape[2:4]
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    roi = types.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    for f in forecasts:
        info = types.types[CAMERA_INFO](
            header=_header(types, f.origin_ns, frame_id),
            height=height,
            width=width,
            distortion_model="",
            d=np.zeros(0),
            k=k.reshape(-1),
            r=np.eye(3).reshape(-1),
            p=np.hstack([k, np.zeros((3, 1))]).reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )
        yield f.origin_ns, f"{topic}/forecast/camera_info", CAMERA_INFO, info


def _camera_messages(
    types, bag: str | os.PathLike[str], topic: str
) -> Iterator[tuple[int, str, str, object]]:
    """The camera topic's messages as ROS 2 messages (a ROS 1 bag's are rebuilt field by
    field), at their log times."""
    for log_ns, msgtype, msg in iter_messages(bag, topic):
        header = _header(types, stamp_ns(msg), msg.header.frame_id)
        data = np.asarray(msg.data, dtype=np.uint8)
        if msgtype == COMPRESSED:
            copy = types.types[COMPRESSED](header=header, format=msg.format, data=data)
        else:
            fields = ("height", "width", "encoding", "is_bigendian", "step")
            copy = types.types[IMAGE](
                header=header, data=data, **{f: getattr(msg, f) for f in fields}
            )
        yield log_ns, topic, msgtype, copy
