"""The ROS 2 node's memory of frames and forecasts (lgcvd_runtime/ros2/ledger.py) stays bounded
however many messages it handles (a soak found it growing): a camera's arrivals after hours of
frames, and the latencies' quantiles against the nearest-rank quantiles computed here from the
values themselves."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np

from lgcvd_runtime.ros2.ledger import (
    BINS_PER_DECADE,
    PERIOD_FRAMES,
    Arrival,
    Arrivals,
    Latencies,
    Latency,
)

PERIOD_NS = 100_000_000  # a 10 Hz camera


def _arrival(index: int) -> Arrival:
    return Arrival(index, 5 * 10**9 + index * PERIOD_NS, "cam", index / 10, index / 10)


def test_a_cameras_arrivals_stay_few_when_forecasts_keep_up_over_an_hour_of_frames():
    arrivals, lag = Arrivals(), 3  # each forecast is published 3 frames after its own
    for index in range(36_000):  # an hour at 10 Hz
        arrivals.add(_arrival(index))
        origin = index - lag
        if origin >= 0:
            assert arrivals.get(origin) == _arrival(origin)  # the origin is still there
            arrivals.forget_before(origin)
        assert len(arrivals) <= max(PERIOD_FRAMES, lag + 1)
    assert arrivals.stamps() == [_arrival(i).stamp_ns for i in range(36_000 - 32, 36_000)]
    assert arrivals.get(36_000 - PERIOD_FRAMES - 1) is None and arrivals.get(36_000) is None


def test_a_forecast_that_finishes_late_still_finds_its_frame_and_frees_the_older_ones():
    arrivals = Arrivals()
    for index in range(500):  # the forecast of frame 100 takes 400 frames
        arrivals.add(_arrival(index))
    assert arrivals.get(100) == _arrival(100)
    arrivals.forget_before(100)
    assert len(arrivals) == 400 and arrivals.get(99) is None
    arrivals.forget_before(499)
    assert len(arrivals) == PERIOD_FRAMES


def _nearest_rank(values: list[float], q: float) -> float:
    return sorted(values)[math.ceil(q * len(values)) - 1]


def test_latency_quantiles_are_within_half_a_bin_of_the_values_and_take_no_memory_per_value():
    rng = np.random.default_rng(0)
    live = rng.lognormal(math.log(0.05), 0.8, 20_000).tolist()
    node = [x + y for x, y in zip(live, rng.exponential(0.003, 20_000).tolist(), strict=True)]
    latencies = Latencies()
    for x, y in zip(live, node, strict=True):
        latencies.add(Latency(x, y))
    assert latencies.count == 20_000
    half_bin = 10 ** (0.5 / BINS_PER_DECADE)  # the true value lies in the bin quoted
    overhead = [y - x for x, y in zip(live, node, strict=True)]
    for summary, values in ((latencies.live, live), (latencies.node, node)):
        for q in (0.01, 0.5, 0.9, 0.99, 1.0):
            want = _nearest_rank(values, q)
            assert want / half_bin <= summary.quantile(q) <= want * half_bin, q
    q90 = latencies.overhead.quantile(0.9)
    assert _nearest_rank(overhead, 0.9) / half_bin <= q90 <= _nearest_rank(overhead, 0.9) * half_bin
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for x, y in zip(live, node, strict=True):  # 20,000 more
        latencies.add(Latency(x, y))
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 4096 and latencies.count == 40_000
