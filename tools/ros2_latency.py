"""How long `lgcvd-ros2` takes from a camera message's arrival to its forecast published, beside
the live stream alone (push -> forecast finished, what `latest` then returns), in one run, on
loopback only (DDS on lo, multicast off):

    .venv/bin/python tools/ros2_latency.py --seconds 30 --steps 2
    .venv/bin/python tools/ros2_latency.py --seconds 600 --json soak.json   # under load, minutes

A player process (`python -m lgcvd_runtime.ros2.play`) loops a real BAIR clip on --cameras
topics at --rate; the node runs in this process (`run_node`, which a soak tool can call to hold
it under load for minutes and read its counts), and each forecast it publishes records both
times (`ledger.Latencies`, running quantiles). Prints the median and 90th percentile of each and their difference,
the node's own cost (decode, push, publishing, the outlet's polling).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "bair-real" / "clip0.mkv"
LOOPBACK = (
    '<CycloneDDS><Domain id="any"><General><Interfaces><NetworkInterface name="lo"/>'
    "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
    '<ParticipantIndex>auto</ParticipantIndex><Peers><Peer address="127.0.0.1"/></Peers>'
    "</Discovery></Domain></CycloneDDS>"
)


def run_node(model, seconds: float, cameras: int, rate: float, domain: int, clip: Path = CLIP):
    """The node on `cameras` topics fed by a player looping `clip` at `rate` for `seconds`;
    returns the node's latencies (`ledger.Latencies`) and its cameras' final states
    (`ForecastNode.states`)."""
    from lgcvd_runtime.ros2.dds import Network
    from lgcvd_runtime.ros2.node import ForecastNode, Settings

    os.environ["CYCLONEDDS_URI"] = LOOPBACK  # before the first participant of this process
    topics = [f"/latency{os.getpid()}/cam{c}/image_raw" for c in range(cameras)]
    play = [sys.executable, "-m", "lgcvd_runtime.ros2.play", str(clip), "--loop"]
    play += [a for t in topics for a in ("--topic", t)]
    play += ["--rate", str(rate), "--stagger", "7", "--wait-for", "1", "--domain-id", str(domain)]
    with ForecastNode(model, topics, Settings(p=2, seed=0), Network(domain)) as node:
        node.start()
        player = subprocess.Popen(play, env=os.environ, stderr=subprocess.DEVNULL)
        try:
            time.sleep(seconds)
        finally:
            player.terminate()
            player.wait(timeout=60)
        return node.latencies, node.states()


def _summary(summary) -> dict[str, float | None]:
    return {"median_s": summary.quantile(0.5), "p90_s": summary.quantile(0.9)}


@click.command()
@click.option("--seconds", type=float, default=30.0, show_default=True, help="Run time.")
@click.option("--cameras", type=int, default=2, show_default=True, help="Camera topics.")
@click.option("--rate", type=float, default=20.0, show_default=True, help="Frames per second.")
@click.option("--steps", type=int, default=2, show_default=True, help="Denoising steps.")
@click.option("--domain", type=int, default=97, show_default=True, help="DDS domain id.")
@click.option(
    "--json",
    "out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the numbers here.",
)
def main(seconds, cameras, rate, steps, domain, out):
    """Measure arrival -> published against push -> finished (module header)."""
    import lgcvd_runtime

    with lgcvd_runtime.load(steps=steps, seed=0) as model:
        latencies, states = run_node(model, seconds, cameras, rate, domain)
    if not latencies.count:
        raise click.ClickException("no forecast was published; run it longer")
    result = {
        "forecasts": latencies.count,
        "arrival_to_published": _summary(latencies.node),
        "push_to_finished": _summary(latencies.live),
        "node_minus_live": _summary(latencies.overhead),
        "frames_received": [s.received for s in states],
    }
    click.echo(json.dumps(result, indent=2))
    if out is not None:
        out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
