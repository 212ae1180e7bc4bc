"""A video played as ROS 2 camera topics, to try `lgcvd-ros2` without a camera (and for the
tests and tools/ros2_latency.py):

    python -m lgcvd_runtime.ros2.play demo.mkv --topic /front/image_raw --topic /wrist/image_raw

Each frame goes out as an rgb8 `sensor_msgs/Image` at `--rate` frames per second (reliable,
keep-last 10, as a driver on rclcpp's default QoS), frame i of a topic stamped
`--first-stamp` + i periods: the stamps of a camera at that rate, whenever the message
leaves, like a bag played with `ros2 bag play`. Topic j starts `--stagger` j frames into the
video, so cameras differ. A Service: Ctrl-C or SIGTERM ends it with exit 0.
Knows the message types, the DDS settings and PyAV's video reader; nothing of models.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.cli.chassis import Service
from lgcvd_runtime.cli.options import count_option
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.ros2 import dds
from lgcvd_runtime.ros2.cli import domain_id_option
from lgcvd_runtime.ros2.images import forecast_image
from lgcvd_runtime.ros2.messages import NS, Image


def play(
    frames: np.ndarray,
    topics: list[str],
    network: dds.Network,
    rate: float,
    first_stamp: int,
    stagger: int = 0,
    loop: bool = False,
    subscribers: int = 0,
    frame_id: str = "camera",
) -> int:
    """Publish `frames` (T, H, W, 3) uint8 on each topic as the module header says, once each
    topic has `subscribers` subscribers; returns the number of frames each topic got (once
    through, or until stopped with `loop`)."""
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    participant, _domain = dds.join(network)
    try:
        writers = [
            DataWriter(participant, Topic(participant, dds.dds_topic(t), Image), dds.default_qos())
            for t in topics
        ]
        _wait_for(writers, subscribers)
        period_ns, start = round(NS / rate), time.monotonic()
        i = 0
        while loop or i < len(frames):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            for j, writer in enumerate(writers):
                frame = frames[(i + j * stagger) % len(frames)]
                writer.write(forecast_image(frame, first_stamp + i * period_ns, frame_id))
            i += 1
        return i
    finally:
        dds.close([participant])


def _wait_for(writers: list, subscribers: int, timeout_s: float = 60.0) -> None:
    """Wait until every writer has matched `subscribers` readers, or raise a one-line error."""
    end = time.monotonic() + timeout_s
    while any(len(w.get_matched_subscriptions()) < subscribers for w in writers):
        if time.monotonic() > end:
            raise LgcvdError(
                f"no {subscribers} subscribers on every topic after {timeout_s:.0f} s; start "
                "them in the same DDS domain and network, or pass --wait-for 0"
            )
        time.sleep(0.02)


@click.command(cls=Service)
@click.argument("video", type=click.Path(path_type=Path))
@click.option("--topic", "topics", multiple=True, required=True, help="Camera topic; repeat.")
@click.option(
    "--rate",
    type=click.FloatRange(0, 1000, min_open=True),
    default=20.0,
    show_default=True,
    help="Frames per second.",
)
@count_option(
    "--first-stamp",
    default=None,
    least=0,
    help="Header stamp of the first frame, ns (default: the wall clock now).",
)
@count_option("--stagger", default=0, least=0, help="Topic j starts this many times j frames in.")
@click.option("--loop", is_flag=True, help="Start over at the end, until stopped.")
@count_option(
    "--wait-for",
    "subscribers",
    default=0,
    least=0,
    help="Subscribers each topic must have before the first frame.",
)
@domain_id_option("DDS domain")
def main(video, topics, rate, first_stamp, stagger, loop, subscribers, domain_id):
    """Play VIDEO's frames as rgb8 Images on each --topic (network: CYCLONEDDS_URI)."""
    frames = read_frames(video)
    stamp = time.time_ns() if first_stamp is None else first_stamp
    network = dds.Network(domain_id)
    sent = play(frames, list(topics), network, rate, stamp, stagger, loop, subscribers)
    click.echo(f"played {sent} frames on {len(topics)} topics", err=True)


if __name__ == "__main__":  # importing the module (e.g. to check imports) runs nothing
    main(prog_name="python -m lgcvd_runtime.ros2.play")
