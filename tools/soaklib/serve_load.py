"""The Triton scenario's load: `--clients` threads, each with its own `TritonClient`, sending
one-clip requests (2 real frames, 6 forecast) one after the other for `--seconds`; every
`--interval` s one JSON line on stdout for tools/soak.py: the latencies of the requests answered
since the last line (a request's frames are sent when it starts, so its forecast's age on
arrival is its latency), and running counts. Runs in the serving environment (tritonclient, no
torch) and uses the client as it is; knows nothing of the harness.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import click
import numpy as np

from lgcvd_runtime.errors import LgcvdError, first_line
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.serve.client import TritonClient


class Tally:
    """Shared by the client threads: latencies since the last report, requests, errors."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ages: list[float] = []
        self.done = self.errors = 0
        self.first_error: str | None = None

    def answered(self, latency: float) -> None:
        with self.lock:
            self.ages.append(latency)
            self.done += 1

    def error(self, err: Exception) -> None:
        with self.lock:
            self.errors += 1
            self.first_error = self.first_error or first_line(err)

    def report(self, t: float) -> None:
        with self.lock:
            line = {"t": t, "ages": self.ages, "done": self.done, "errors": self.errors}
            line["first_error"] = self.first_error
            self.ages = []
        print(json.dumps(line), flush=True)


def client_loop(url: str, clip: np.ndarray, index: int, until: float, tally: Tally) -> None:
    """Requests one after the other, each from the next 2 frames of `clip`, until `until`."""
    try:
        client = TritonClient(url, seed=index)
    except LgcvdError as err:
        tally.error(err)
        return
    with client:
        k = 0
        while time.monotonic() < until:
            start = k % (len(clip) - 1)
            begin = time.monotonic()
            try:
                list(client.predict(clip[start : start + 2], 6, seed=k))
            except LgcvdError as err:
                tally.error(err)
                time.sleep(0.5)  # a refusing server is not hammered
            else:
                tally.answered(time.monotonic() - begin)
            k += 1


@click.command()
@click.option("--url", required=True, help="HOST:PORT of the server's gRPC endpoint.")
@click.option("--clients", type=int, default=4, show_default=True, help="Client threads.")
@click.option("--seconds", type=float, required=True, help="How long to send requests.")
@click.option("--interval", type=float, default=0.5, show_default=True, help="Report period.")
@click.option("--video", "videos", multiple=True, type=click.Path(path_type=Path), required=True)
def main(url, clients, seconds, interval, videos):
    """Load the server for SECONDS and report on stdout (module header)."""
    clips = [read_frames(v) for v in videos]
    tally, start = Tally(), time.monotonic()
    threads = [
        threading.Thread(
            target=client_loop, args=(url, clips[i % len(clips)], i, start + seconds, tally)
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(interval)
        tally.report(time.monotonic() - start)


if __name__ == "__main__":
    sys.exit(main())
