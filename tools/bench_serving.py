"""Serving benchmark: Triton (the nvidia-pytriton wheel's server, `--graphs python`) with 1, 4 and
8 concurrent clients against the in-process library, in one run, as ratios.

    .venv-serve/bin/python tools/bench_serving.py [--clients 1,4,8] [--requests 3] [--json]

For each C: C client threads each send `--requests` one-clip requests (n frames, one window
by default), one after the other; throughput is windows per second over all clients, latency
the median time of one request. The library runs the same work in this process, once as C
sequential single-clip calls and once as one C-camera call (the batch the server can form at
best); the server is idle while the library runs and the other way round. The denoiser's batch
sizes come from Triton's statistics. Needs the serving environment (`make test` creates it).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np

import lgcvd_runtime
from benchlib import sampler_option
from lgcvd_runtime.api import default_bundle
from lgcvd_runtime.cli.options import count_option
from lgcvd_runtime.serve.client import TritonClient
from lgcvd_runtime.serve.local_server import LocalServer
from lgcvd_runtime.serve.repository import RepoOptions, write_repository


def _clips(count: int, p: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (p, 64, 64, 3), dtype=np.uint8) for _ in range(count)]


def _library(model, clips, n: int, requests: int) -> dict:
    """C sequential single-clip calls and one C-camera call, `requests` times each."""
    seq, batched = [], []
    for r in range(requests):
        for i, clip in enumerate(clips):
            t = time.perf_counter()
            list(model.predict(clip, n, seed=r * 100 + i))
            seq.append(time.perf_counter() - t)
        t = time.perf_counter()
        list(model.predict(clips, n, seed=[r * 100 + i for i in range(len(clips))]))
        batched.append(time.perf_counter() - t)
    return {"sequential_s": seq, "batched_s": batched}


def _triton(url: str, clips, n: int, requests: int) -> tuple[list[float], float]:
    """C threads, `requests` requests each; per-request latencies and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client_loop(i: int) -> None:
        with TritonClient(url) as client:
            for r in range(requests):
                t = time.perf_counter()
                list(client.predict(clips[i], n, seed=r * 100 + i))
                with lock:
                    latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(len(clips))]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start


@click.command(help=(__doc__ or "").split("\n\n")[0])
@click.option(
    "--clients", default="1,4,8", show_default=True, help="Concurrent clients, comma-separated."
)
@count_option("--requests", default=3, help="Requests per client.")
@count_option("-n", default=6, help="Frames per request (6: one window).")
@sampler_option("Sampler of every request.")
@count_option("--steps", default=4, help="Denoising steps per window.")
@count_option(
    "--queue-delay-us", default=5000, least=0, help="Triton's dynamic-batching queue delay."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def main(clients, requests, n, sampler, steps, queue_delay_us, as_json) -> None:
    counts = [int(c) for c in clients.split(",")]
    bundle = default_bundle()
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", sampler=sampler, steps=steps)
    windows_per_request = len(list(model.predict(_clips(1, 2)[0], n, seed=0)))
    options = RepoOptions(
        graphs="python",
        pipelines=max(counts),
        queue_delay_us=queue_delay_us,
        sampler=sampler,
        steps=steps,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="lgcvd-bench-") as tmp:
        repo = Path(tmp) / "repo"
        write_repository(bundle, repo, options)
        with LocalServer(repo) as server, TritonClient(server.grpc_url) as probe:
            list(probe.predict(_clips(1, 2)[0], n, seed=0))  # warm every model once
            for c in counts:
                clips = _clips(c, 2)
                lib = _library(model, clips, n, requests)
                before = probe.batch_counts()
                latencies, wall = _triton(server.grpc_url, clips, n, requests)
                after = probe.batch_counts()
                batches = {b: after.get(b, 0) - before.get(b, 0) for b in after}
                done = c * requests * windows_per_request
                calls = sum(batches.values())
                rows.append(
                    {
                        "clients": c,
                        "triton_windows_per_s": done / wall,
                        "triton_latency_s": statistics.median(latencies),
                        "library_seq_windows_per_s": done / sum(lib["sequential_s"]),
                        "library_seq_latency_s": statistics.median(lib["sequential_s"]),
                        "library_batched_windows_per_s": done / sum(lib["batched_s"]),
                        "library_batched_latency_s": statistics.median(lib["batched_s"]),
                        "denoiser_mean_batch": sum(b * k for b, k in batches.items())
                        / max(calls, 1),
                        "denoiser_batches": {b: k for b, k in sorted(batches.items()) if k},
                    }
                )
    settings = {
        "sampler": sampler,
        "steps": steps,
        "n": n,
        "requests": requests,
    }
    if as_json:
        print(json.dumps({"settings": settings, "rows": rows}, indent=2))
        return
    print(f"settings: {settings}, queue delay {queue_delay_us} µs")
    print(
        "C  triton w/s  lat s | lib seq w/s  lat s | lib C-batch w/s  lat s | triton/seq  triton/batch | mean batch"
    )
    for r in rows:
        print(
            f"{r['clients']:<2} {r['triton_windows_per_s']:10.2f} {r['triton_latency_s']:6.2f} |"
            f" {r['library_seq_windows_per_s']:11.2f} {r['library_seq_latency_s']:6.2f} |"
            f" {r['library_batched_windows_per_s']:15.2f} {r['library_batched_latency_s']:6.2f} |"
            f" {r['triton_windows_per_s'] / r['library_seq_windows_per_s']:10.2f}"
            f" {r['triton_windows_per_s'] / r['library_batched_windows_per_s']:13.2f} |"
            f" {r['denoiser_mean_batch']:5.2f} {r['denoiser_batches']}"
        )


if __name__ == "__main__":
    main()
