"""What the ROS 2 node remembers of the messages it handled, in memory that stays bounded
however long it runs: each camera's recent arrivals (`Arrivals`: the frames a forecast may
still be made from), and the latencies of the forecasts it published (`Latencies`: running
counts and quantiles, not the values).

A forecast is made from the newest frame pushed when it starts (the live stream's latest wins),
and a camera's forecasts finish in frame order, so once one is published no frame before its
own is needed again but for the camera's period (the step of its newest `PERIOD_FRAMES` stamps).

Knows the node's records of frames and forecasts; nothing of DDS, messages or models.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

HISTORY = 8192  # most arrivals kept while no forecast is published (minutes at 60 Hz)
PERIOD_FRAMES = 32  # newest stamps a camera's period is measured from
LOW_S, HIGH_S = 1e-5, 1e4  # latency histogram range (seconds); values beyond fall in the end bins
BINS_PER_DECADE = 100  # a quantile is within 10 ** (0.5 / 100) - 1 = 1.2 % of the true one


@dataclass(frozen=True, slots=True)
class Arrival:
    """One camera frame pushed to the live stream: its index there, header stamp (ns),
    frame_id, when the intake took it from DDS and when it pushed it (time.monotonic())."""

    index: int
    stamp_ns: int
    frame_id: str
    taken: float
    pushed: float


@dataclass(frozen=True, slots=True)
class Latency:
    """One published forecast: `live_s` from its newest frame's push to the forecast finished
    (the live stream alone: push -> latest), `node_s` from that frame's arrival (taken from
    DDS) to the forecast published."""

    live_s: float
    node_s: float


class Arrivals:
    """A camera's arrivals from the newest published forecast's frame on, and at least the
    newest `PERIOD_FRAMES`; at most `HISTORY` (module header). Indices follow one another."""

    def __init__(self) -> None:
        self._kept: deque[Arrival] = deque(maxlen=HISTORY)

    def __len__(self) -> int:
        return len(self._kept)

    def add(self, arrival: Arrival) -> None:
        self._kept.append(arrival)

    def get(self, index: int) -> Arrival | None:
        """Frame `index`'s arrival (None: gone, or not come)."""
        at = index - self._kept[0].index if self._kept else -1
        return self._kept[at] if 0 <= at < len(self._kept) else None

    def forget_before(self, index: int) -> None:
        """Frame `index`'s forecast is published: drop the frames no later one can need."""
        while len(self._kept) > PERIOD_FRAMES and self._kept[0].index < index:
            self._kept.popleft()

    def stamps(self) -> list[int]:
        """Header stamps (ns) of the newest `PERIOD_FRAMES` frames, oldest first."""
        return [a.stamp_ns for a in list(self._kept)[-PERIOD_FRAMES:]]


class Summary:
    """Count and quantiles of a duration (seconds) in constant memory: a histogram of
    `BINS_PER_DECADE` log-spaced bins per decade from `LOW_S` to `HIGH_S`."""

    def __init__(self) -> None:
        self.counts = np.zeros(round(math.log10(HIGH_S / LOW_S) * BINS_PER_DECADE), np.int64)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def add(self, seconds: float) -> None:
        at = math.floor(math.log10(max(seconds, LOW_S) / LOW_S) * BINS_PER_DECADE)
        self.counts[min(at, len(self.counts) - 1)] += 1

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 < q <= 1, nearest rank) as its bin's geometric centre; None: empty."""
        cumulative = np.cumsum(self.counts)
        if not cumulative[-1]:
            return None
        at = int(np.searchsorted(cumulative, math.ceil(q * cumulative[-1])))
        return LOW_S * 10 ** ((at + 0.5) / BINS_PER_DECADE)


class Latencies:
    """The published forecasts' latencies (`Latency`): the live stream's, the node's and the
    node's own cost (node - live), each a `Summary`."""

    def __init__(self) -> None:
        self.live, self.node, self.overhead = Summary(), Summary(), Summary()

    @property
    def count(self) -> int:
        return self.node.count

    def add(self, latency: Latency) -> None:
        self.live.add(latency.live_s)
        self.node.add(latency.node_s)
        self.overhead.add(latency.node_s - latency.live_s)
