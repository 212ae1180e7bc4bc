"""Joining a ROS 2 graph as a plain DDS participant (Cyclone DDS, no rclpy): the domain and its
network settings, ROS topic names as DDS topic names, and the QoS of each kind of topic.

Network: the domain id (ROS_DOMAIN_ID by default, as every ROS 2 node), and optionally the
network interface, unicast discovery peers and multicast off, as a Cyclone XML fragment read
after the standard `CYCLONEDDS_URI`: Cyclone merges the two, a setting given by both takes the
option's value, and lists add up (peers; an interface named in both is refused).

QoS, chosen to match what ROS 2 nodes use on each side:
  - cameras: best-effort, keep-last, volatile. A best-effort reader matches every writer, both
    drivers that publish reliably (rclcpp's default) and those using the sensor-data profile;
    a late frame is worth nothing, and a reliable reader would make a camera driver resend.
  - forecasts: reliable, keep-last `n` (one whole forecast), volatile. A reliable writer matches
    both rclpy's default subscription (reliable, keep-last 10) and the sensor-data profile
    (best-effort); volatile, so a subscriber that joins late gets no stale forecast.
  - status (`/diagnostics`): reliable, keep-last 10, rclpy's default, as diagnostic_aggregator
    expects.

Knows the cyclonedds package (the ros extra); nothing of models or frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from cyclonedds.core import DDSException
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.qos import Policy, Qos
from cyclonedds.util import duration

from lgcvd_runtime.errors import LgcvdError

MAX_DOMAIN_ID = 232  # the highest id whose RTPS ports fit in 16 bits (ROS 2's documented range)
CAMERA_DEPTH = 10  # frames a camera reader holds until the intake takes them
DEFAULT_DEPTH = 10
_NAME = re.compile(r"^/?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Network:
    """Where the participant talks: DDS domain `domain_id`; `interface` (a name such as eth0 or
    lo, None: Cyclone's choice), unicast discovery `peers` (addresses or host names) and
    `multicast` (False: off; None: as configured)."""

    domain_id: int = 0
    interface: str | None = None
    peers: tuple[str, ...] = ()
    multicast: bool | None = None

    def fragment(self) -> str | None:
        """These settings as a Cyclone XML configuration, None where there are none."""
        general = ""
        if self.interface is not None:
            general += (
                f"<Interfaces><NetworkInterface name={quoteattr(self.interface)}/></Interfaces>"
            )
        if self.multicast is not None:
            general += f"<AllowMulticast>{str(self.multicast).lower()}</AllowMulticast>"
        discovery = ""
        if self.peers:
            peers = "".join(f"<Peer address={quoteattr(p)}/>" for p in self.peers)
            discovery = f"<ParticipantIndex>auto</ParticipantIndex><Peers>{peers}</Peers>"
        if not (general or discovery):
            return None
        return (
            f'<CycloneDDS><Domain id="any"><General>{general}</General>'
            f"<Discovery>{discovery}</Discovery></Domain></CycloneDDS>"
        )

    def config(self) -> str | None:
        """`CYCLONEDDS_URI`, then the options' fragment (None: Cyclone reads the variable)."""
        ours = self.fragment()
        if ours is None:
            return None
        return ",".join(c for c in (os.environ.get("CYCLONEDDS_URI", "").strip(), ours) if c)


def check_domain_id(domain_id: int) -> int:
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise LgcvdError(
            f"DDS domain id {domain_id} is out of range; use 0..{MAX_DOMAIN_ID} "
            "(the ROS_DOMAIN_ID of the ROS 2 system to join)"
        )
    return domain_id


def join(network: Network) -> tuple[DomainParticipant, Domain | None]:
    """A participant in the network's domain, and the Domain holding the options' settings
    (keep it as long as the participant)."""
    domain_id = check_domain_id(network.domain_id)
    config = network.config()
    try:
        domain = Domain(domain_id, config) if config is not None else None
        return DomainParticipant(domain_id), domain
    except DDSException:
        raise LgcvdError(
            f"cannot join DDS domain {domain_id}: Cyclone DDS refused its configuration (its "
            "line above says why); check --interface, --peer and CYCLONEDDS_URI, which must "
            "not name the same interface"
        ) from None


def dds_topic(name: str) -> str:
    """The DDS topic of the ROS 2 topic `name`: /camera/image_raw -> rt/camera/image_raw."""
    return "rt/" + ros_topic(name).lstrip("/")


def ros_topic(name: str) -> str:
    """`name` as an absolute ROS 2 topic name (a relative one is under /, the node's namespace),
    or a one-line error."""
    if not _NAME.match(name):
        raise LgcvdError(
            f"{name!r} is not a ROS 2 topic name; use letters, digits, _ and /, each part "
            "starting with a letter or _, e.g. /camera/image_raw"
        )
    return "/" + name.lstrip("/")


def camera_qos() -> Qos:
    return Qos(
        Policy.Reliability.BestEffort,
        Policy.History.KeepLast(CAMERA_DEPTH),
        Policy.Durability.Volatile,
    )


def forecast_qos(n: int) -> Qos:
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
        Policy.History.KeepLast(n),
        Policy.Durability.Volatile,
    )


def default_qos() -> Qos:
    """rclpy's and rclcpp's default: reliable, keep-last 10, volatile (the status; the player)."""
    return forecast_qos(DEFAULT_DEPTH)


def close(entities: Sequence[object]) -> None:
    """Delete DDS entities now (the binding keeps every entity alive until deleted; deleting a
    participant deletes what it holds)."""
    for entity in entities:
        entity.__del__()
