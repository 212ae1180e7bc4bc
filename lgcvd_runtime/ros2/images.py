"""Camera messages to frames and forecast frames to messages.

In: `sensor_msgs/Image` in rgb8, bgr8, rgba8, bgra8, mono8 and mono16 (its high byte, as an
8-bit camera would show it; rows padded to `step` are cut), and `sensor_msgs/CompressedImage`
in jpeg or png (the format may name the encoding first, "rgb8; jpeg compressed bgr8"), decoded
with PyAV; each as (H, W, 3) uint8 RGB. Another encoding (a Bayer mosaic, a depth image) is
refused with a `LgcvdError` that stops the node: a camera that sends it will not change. A
message that cannot be what it says (too few bytes, a broken jpeg) is an `UnreadableImage`:
the node counts and skips it. Out: rgb8 Images, one per made frame.

The rule for each encoding (its layout, the PyAV codec of a format) and the sentence naming
them all (`READABLE`) are media/bags.py's, so live topics and bags read alike; this module words
the errors for a live topic.
Knows PyAV and the message types; nothing of models or DDS entities.
"""

from __future__ import annotations

import av
import numpy as np

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.media.bags import LAYOUTS, READABLE, codec_name, image_rgb
from lgcvd_runtime.ros2.messages import CompressedImage, Header, Image, Time


class UnreadableImage(LgcvdError):
    """One message that is not the picture it says it is; the next one may be fine."""


def is_compressed_topic(topic: str) -> bool:
    """image_transport's naming: /cam/image_raw/compressed carries CompressedImages."""
    return topic.rstrip("/").endswith("/compressed")


class Decoder:
    """One camera topic's messages to RGB frames (CompressedImages through one PyAV decoder)."""

    def __init__(self, topic: str):
        self.topic = topic
        self._codec: av.CodecContext | None = None
        self._format = ""

    def __call__(self, msg: Image | CompressedImage) -> np.ndarray:
        if isinstance(msg, Image):
            return self._raw(msg)
        return self._compressed(msg)

    def _refuse(self, what: str) -> LgcvdError:
        return LgcvdError(
            f"{self.topic} sends {what}; lgcvd reads {READABLE}: publish one of those"
        )

    def _raw(self, msg: Image) -> np.ndarray:
        if msg.encoding not in LAYOUTS:
            raise self._refuse(f"{msg.encoding!r} images")
        data = np.frombuffer(msg.data, dtype=np.uint8)
        frame = image_rgb(msg, data)
        if frame is None:
            raise UnreadableImage(
                f"{self.topic}: a {msg.width}x{msg.height} {msg.encoding} image with step "
                f"{msg.step} in {data.size} bytes; skipped"
            )
        return frame  # (H, W, 3)

    def _codec_for(self, fmt: str) -> av.CodecContext:
        codec = codec_name(fmt)
        if codec is None:
            raise self._refuse(f"CompressedImages of format {fmt!r}")
        if self._codec is None or fmt != self._format:
            self._codec = av.CodecContext.create(codec, "r")
            self._format = fmt
        return self._codec

    def _compressed(self, msg: CompressedImage) -> np.ndarray:
        codec = self._codec_for(msg.format)
        try:
            frames = codec.decode(av.Packet(bytes(msg.data)))
        except av.FFmpegError as err:
            raise UnreadableImage(
                f"{self.topic}: a {msg.format} image PyAV cannot decode ({err.strerror}); skipped"
            ) from None
        if len(frames) != 1:
            raise UnreadableImage(f"{self.topic}: a {msg.format} image with no picture; skipped")
        return frames[0].to_ndarray(format="rgb24")  # (H, W, 3)


def forecast_image(frame: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """One made frame (h, w, 3) uint8 RGB as an rgb8 Image stamped at the time it shows."""
    height, width, _ = frame.shape
    header = Header(Time.of(stamp_ns), frame_id)
    return Image(header, height, width, "rgb8", 0, width * 3, np.ascontiguousarray(frame).tobytes())
