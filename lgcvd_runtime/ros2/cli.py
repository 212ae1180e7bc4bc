"""`lgcvd-ros2`: the forecasting node as a command line (README, "Use it with ROS 2").

    lgcvd-ros2 --camera /front/image_raw --camera /wrist/image_raw/compressed --model bair.lgcvd

A `chassis.Service`: Ctrl-C and SIGTERM (ros2 launch, systemd) stop it, "stopped", exit 0; an
error ends it with one line and exit 1. The node's threads and topics are `node.py`; the
network options and QoS `dds.py`. cyclonedds (the ros extra) is imported only once the command
runs, so --help works without it and its absence is a one-line error.
"""

from __future__ import annotations

import importlib.util

import click

from lgcvd_runtime.cli.chassis import Service
from lgcvd_runtime.cli.options import count_option, load_model, model_options, score_every_option
from lgcvd_runtime.errors import LgcvdError

ROS_EXTRA = "lgcvd-ros2 needs the ros extra (cyclonedds): pip install 'lgcvd[ros]'"


def domain_id_option(what: str):
    """--domain-id: `what` the domain is; $ROS_DOMAIN_ID by default, as every ROS 2 node."""
    help = f"{what} (default: $ROS_DOMAIN_ID, else 0)."
    return count_option("--domain-id", default=0, least=0, envvar="ROS_DOMAIN_ID", help=help)


@click.command(cls=Service)
@click.option(
    "--camera",
    "cameras",
    multiple=True,
    required=True,
    help="Camera topic (sensor_msgs/Image, or CompressedImage where the name ends in "
    "/compressed); repeat for more cameras, forecast together as one batch.",
)
@model_options
@count_option("-p", "p", default=2, help="Given frames: each forecast starts from the newest p.")
@count_option("-n", "n", default=None, help="Frames to forecast (default: one window).")
@count_option("--samples", default=1, help="Forecasts per camera frame (one topic each).")
@score_every_option
@domain_id_option("DDS domain of the ROS 2 system to join")
@click.option(
    "--interface",
    default=None,
    help="Network interface for DDS, e.g. eth0 or lo (default: CYCLONEDDS_URI's, else Cyclone's choice).",
)
@click.option(
    "--peer",
    "peers",
    multiple=True,
    help="Address of a host to discover peers on by unicast; repeat for more (e.g. where "
    "multicast does not work, as on many Wi-Fi networks).",
)
@click.option("--no-multicast", is_flag=True, help="Use no multicast (discovery through --peer).")
@click.option("--quiet", is_flag=True, help="No notes on stderr.")
def main(
    cameras, p, n, samples, score_every, domain_id, interface, peers, no_multicast, quiet, **load
):
    """Forecast the frames of ROS 2 camera topics: publish each forecast on TOPIC/forecast,
    stamped at the future times it shows, and the status on /diagnostics, until Ctrl-C or
    SIGTERM (then exit 0)."""
    if importlib.util.find_spec("cyclonedds") is None:
        raise LgcvdError(ROS_EXTRA)
    from lgcvd_runtime.ros2.dds import Network
    from lgcvd_runtime.ros2.node import ForecastNode, Settings

    network = Network(domain_id, interface, tuple(peers), False if no_multicast else None)
    log = None if quiet else (lambda line: click.echo(line, err=True))
    with load_model(quiet=quiet, **load) as model:
        settings = Settings(p, n, samples, load["seed"], score_every=score_every)
        with ForecastNode(model, cameras, settings, network, log) as node:
            if log is not None:
                topics = ", ".join(f"{c.topic}/forecast" for c in node.cameras)
                log(f"ready: DDS domain {network.domain_id}, forecasts on {topics}")
            node.serve()
