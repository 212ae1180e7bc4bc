"""The ROS 2 scenario's load: a player process (`python -m lgcvd_runtime.ros2.play`, the
frames stamped by the wall clock from when the node is up) loops a real clip on each camera
topic at `--rate`, and this
process subscribes to each camera's `T/forecast/origin` (a header per forecast, stamped with the
camera frame it was made from): a forecast's age on arrival is the wall clock minus that stamp.
Every `--interval` s one JSON line on stdout for tools/soak.py, which watches the node's process.
DDS on loopback: CYCLONEDDS_URI, set by the harness for the node, the player and this process.
Knows the node's topics and message types; nothing of the harness.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import click
from cyclonedds.domain import DomainParticipant
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from lgcvd_runtime.ros2 import dds
from lgcvd_runtime.ros2.messages import NS, Header


def _player(video: Path, topics: list[str], rate: float, domain: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "lgcvd_runtime.ros2.play", str(video), "--loop"]
    command += [a for t in topics for a in ("--topic", t)]
    command += ["--rate", str(rate), "--stagger", "7"]
    return subprocess.Popen([*command, "--domain-id", str(domain)], stderr=subprocess.DEVNULL)


def _ages(readers: list[DataReader]) -> list[float]:
    """The age (s) of every origin header that arrived since the last call."""
    now = time.time_ns()
    return [(now - (h.stamp.sec * NS + h.stamp.nanosec)) / NS for r in readers for h in r.take(64)]


@click.command()
@click.option("--topic", "topics", multiple=True, required=True, help="Camera topic; repeat.")
@click.option("--video", required=True, type=click.Path(path_type=Path), help="Clip to loop.")
@click.option("--rate", type=float, default=10.0, show_default=True, help="Frames per second.")
@click.option("--domain-id", type=int, required=True, help="DDS domain of the node.")
@click.option("--seconds", type=float, required=True, help="How long to play.")
@click.option("--interval", type=float, default=0.5, show_default=True, help="Report period.")
def main(topics, video, rate, domain_id, seconds, interval):
    """Feed the node for SECONDS and report on stdout (module header)."""
    participant = DomainParticipant(domain_id)
    readers = [
        DataReader(
            participant,
            Topic(participant, dds.dds_topic(f"{t}/forecast/origin"), Header),
            qos=dds.default_qos(),
        )
        for t in topics
    ]
    while any(not r.get_matched_publications() for r in readers):
        time.sleep(0.1)  # the node is up: the frames' stamps (the wall clock) start now
    player = _player(video, list(topics), rate, domain_id)
    done, start = 0, time.monotonic()
    try:
        while (t := time.monotonic() - start) < seconds and player.poll() is None:
            time.sleep(interval)
            ages = _ages(readers)
            done += len(ages)
            line = {"t": t, "ages": ages, "done": done, "errors": 0}
            print(json.dumps(line), flush=True)
    finally:
        player.terminate()
        player.wait(timeout=60)
    if player.returncode not in (0, -15):
        raise click.ClickException(f"the player exited with {player.returncode}")


if __name__ == "__main__":
    sys.exit(main())
