"""A subscriber process for tests/test_ros2.py: records the raw CDR payloads (encapsulation
header included, as they came off the wire) of a node's forecasts and status, then writes them
to a pickle and exits.

    python tests/ros2_listen.py OUT DOMAIN N FORECASTS CAMERA_TOPIC...

records, for each camera topic T, `T/forecast` and `T/forecast/origin` until FORECASTS origins
and FORECASTS x N frames came, and /diagnostics until a status came after that; at most
120 s. Prints "listening" once it has matched the node's writers of every topic. Reads the bytes through the binding's own raw take, so no
type of ours decodes them: the test decodes them with rosbags. The network: CYCLONEDDS_URI.
"""

from __future__ import annotations

import pickle
import sys
import time

from cyclonedds._clayer import ddspy_take
from cyclonedds.core import InstanceState, SampleState, ViewState
from cyclonedds.domain import DomainParticipant
from cyclonedds.qos import Policy, Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic

from lgcvd_runtime.ros2.messages import DiagnosticArray, Header, Image

ANY = SampleState.Any | ViewState.Any | InstanceState.Any
QOS = Qos(Policy.Reliability.Reliable(0), Policy.History.KeepLast(1000))


def main(out: str, domain: int, n: int, forecasts: int, cameras: list[str]) -> None:
    participant = DomainParticipant(domain)
    kinds = {f"{c}/forecast": Image for c in cameras}
    kinds |= {f"{c}/forecast/origin": Header for c in cameras}
    kinds["/diagnostics"] = DiagnosticArray
    readers = {
        name: DataReader(participant, Topic(participant, "rt" + name, kind), qos=QOS)
        for name, kind in kinds.items()
    }
    while any(not r.get_matched_publications() for r in readers.values()):
        time.sleep(0.02)  # every topic of the node matched: nothing it sends from now is missed
    print("listening", flush=True)
    got: dict[str, list[bytes]] = {name: [] for name in readers}
    end, statuses = time.monotonic() + 120, None  # statuses: how many came before enough
    while time.monotonic() < end and (statuses is None or len(got["/diagnostics"]) <= statuses):
        time.sleep(0.02)
        for name, reader in readers.items():
            got[name] += [bytes(data) for data, info in ddspy_take(reader._ref, ANY, 1000)]
        if statuses is None and _enough(got, cameras, n, forecasts):
            statuses = len(got["/diagnostics"])
    with open(out, "wb") as file:
        pickle.dump(got, file)


def _enough(got: dict[str, list[bytes]], cameras: list[str], n: int, forecasts: int) -> bool:
    return all(
        len(got[f"{c}/forecast/origin"]) >= forecasts and len(got[f"{c}/forecast"]) >= forecasts * n
        for c in cameras
    )


if __name__ == "__main__":
    out, domain, n, forecasts, *topics = sys.argv[1:]
    main(out, int(domain), int(n), int(forecasts), topics)
