"""Faults against one real `tritonserver` (run by tests/test_triton_faults.py in `.venv-serve`).

    .venv-serve/bin/python tests/triton_faults_check.py REPO CLIP.mkv

In one server's life: bad requests through `TritonClient` (refused before sending) and through
raw `tritonclient` (refused by Triton or the model), a request past its timeout, then a good
request; then the server killed (SIGKILL) with two requests in flight, one client without
retries and one with, and restarted on the same ports; a closed port, through the client and
`lgcvd-run predict --server`.
Prints one JSON report (the last line of stdout); the test asserts on it. Knows no pytest.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from click.testing import CliRunner

from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.serve.client import TritonClient
from lgcvd_runtime.serve.local_server import LocalServer, free_port

CLIP = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
LONG_N = 48  # eight windows: still running a second after it was sent


def _error(call) -> str:
    """The one-line error `call()` raises ("ANSWERED" if it raises none)."""
    try:
        call()
    except LgcvdError as err:
        return str(err)
    return "ANSWERED"


def _frames(client: TritonClient, n: int = 6, seed: int = 7) -> np.ndarray:
    return np.concatenate([w.frames for w in client.predict(CLIP, n, seed=seed)], axis=1)


def client_refusals(client: TritonClient) -> dict:
    """Bad arguments to `TritonClient.predict`: the one-line error of each."""
    nan = np.full((2, 64, 64, 3), np.nan, np.float32)
    bad = {
        "wrong shape": lambda: client.predict(CLIP[0], 6, seed=1),
        "wrong dtype": lambda: client.predict(CLIP.astype(np.float32), 6, seed=1),
        "NaN frames": lambda: client.predict(nan, 6, seed=1),
        "n = 0": lambda: client.predict(CLIP, 0, seed=1),
        "n huge": lambda: client.predict(CLIP, 10**9, seed=1),
        "cameras of other lengths": lambda: client.predict([CLIP, CLIP[:1]], 6, seed=1),
        "seed text": lambda: client.predict(CLIP, 6, seed="abc"),
        "seed float": lambda: client.predict(CLIP, 6, seed=1.5),
        "seed negative": lambda: client.predict(CLIP, 6, seed=-1),
        "seed past int64": lambda: client.predict(CLIP, 6, seed=2**63),
    }
    return {name: _error(call) for name, call in bad.items()}


def _raw_inputs(frames: np.ndarray, **scalars) -> list:
    """A request's inputs as raw tritonclient tensors: frames, then n and seed (`scalars`
    overrides any as an array, or drops it with None)."""
    arrays = {"n": np.array([6], np.int32), "seed": np.array([1], np.int64)} | scalars
    types = {"u": "UINT8", "f": "FP32", "i": "INT32", "O": "BYTES"}
    inputs = []
    for name, array in {"frames": frames, **arrays}.items():
        if array is None:
            continue
        dtype = "INT64" if array.dtype == np.int64 else types[array.dtype.kind]
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def raw_refusals(url: str) -> dict:
    """Bad requests sent with tritonclient itself (no lgcvd check on the way): the error text
    and the seconds each took."""
    nan = np.full((2, 64, 64, 3), np.nan, np.float32)
    bad = {
        "wrong shape": _raw_inputs(CLIP[0]),
        "four channels": _raw_inputs(np.zeros((2, 64, 64, 4), np.uint8)),
        "no frames": _raw_inputs(CLIP[:0]),
        "NaN frames": _raw_inputs(nan),
        "n = 0": _raw_inputs(CLIP, n=np.array([0], np.int32)),
        "n huge": _raw_inputs(CLIP, n=np.array([2**31 - 1], np.int32)),
        "n of two values": _raw_inputs(CLIP, n=np.array([6, 6], np.int32)),
        "n missing": _raw_inputs(CLIP, n=None),
        "samples = 0": _raw_inputs(CLIP, samples=np.array([0], np.int32)),
        "seed float": _raw_inputs(CLIP, seed=np.array([1.5], np.float32)),
        "seed text": _raw_inputs(CLIP, seed=np.array([b"abc"], dtype=object)),
        "seed negative": _raw_inputs(CLIP, seed=np.array([-1], np.int64)),
    }
    report = {}
    with grpcclient.InferenceServerClient(url) as raw:
        for name, inputs in bad.items():
            start = time.monotonic()
            try:
                raw.infer("lgcvd", inputs, client_timeout=60)
                line = "ANSWERED"
            except grpcclient.InferenceServerException as err:
                line = err.message()
            report[name] = [line, round(time.monotonic() - start, 2)]
    return report


def closed_port(clip: Path) -> dict:
    """A port nobody listens on: the client without and with its default retries, and the CLI."""
    url = f"127.0.0.1:{free_port()}"
    report: dict = {"url": url}
    for retries in (0, 2):
        start = time.monotonic()
        line = _error(lambda r=retries: TritonClient(url, retries=r))
        report[f"retries {retries}"] = [line, round(time.monotonic() - start, 2)]
    out = clip.parent / "closed.mkv"
    result = CliRunner().invoke(run_main, ["predict", str(clip), "--server", url, "-o", str(out)])
    report["cli"] = [result.exit_code, result.output, out.exists()]
    return report


def _ask(client: TritonClient, expected: np.ndarray, answers: dict, key: str) -> None:
    """One long request; in `answers[key]`: its frames equal `expected`, or its error, and
    the seconds it took."""
    start = time.monotonic()
    try:
        answers[key] = ["frames", bool(np.array_equal(_frames(client, LONG_N), expected))]
    except LgcvdError as err:
        answers[key] = ["error", str(err)]
    answers[key].append(round(time.monotonic() - start, 2))


def kill_and_restart(server: LocalServer, expected: list[np.ndarray]) -> tuple[dict, LocalServer]:
    """SIGKILL the server with two long requests in flight (retries 0 and 10), restart it on
    the same ports; then the first client's next (short) request. `expected`: the frames of
    the short and the long request. Returns the report and the new server."""
    plain = TritonClient(server.grpc_url, retries=0)
    patient = TritonClient(server.grpc_url, retries=10)  # 0.5 s .. 4 s apart: 31.5 s in all
    report: dict = {}
    threads = [
        threading.Thread(target=_ask, args=(c, expected[1], report, k))
        for c, k in ((plain, "no retries"), (patient, "10 retries"))
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    os.kill(server.process.pid, signal.SIGKILL)
    report["killed_code"] = server.stop()  # its group's stubs, shm and workspace
    start = time.monotonic()
    restarted = LocalServer(server.repo, server.grpc_port, server.http_port).start()
    report["restart_s"] = round(time.monotonic() - start, 1)
    for thread in threads:
        thread.join()
    report["next"] = bool(np.array_equal(_frames(plain), expected[0]))
    plain.close()
    patient.close()
    return report, restarted


def live(groups: list[int]) -> list[int]:
    """The processes of these process groups that run (zombies left out)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def refusals(server: LocalServer, expected: np.ndarray) -> dict:
    """The client's and raw refusals, and a request past its timeout; whether the server then
    answers as before (`expected`), with the same processes (no backend stub died and was
    replaced)."""
    before = live([server.process.pid])
    with TritonClient(server.grpc_url) as client:
        report = {"client": client_refusals(client), "raw": raw_refusals(server.grpc_url)}
    with TritonClient(server.grpc_url, timeout=0.5) as hasty:  # a long request: it times out
        start = time.monotonic()
        line = _error(lambda: _frames(hasty, LONG_N))
        report["timeout"] = [line, round(time.monotonic() - start, 2)]
    with TritonClient(server.grpc_url) as client:
        report["answers_after"] = bool(np.array_equal(_frames(client), expected))
    report["same_processes"] = live([server.process.pid]) == before
    report["processes"] = len(before)
    return report


def main(repo: Path, clip: Path) -> dict:
    server = LocalServer(repo).start()
    groups, workspaces, prefix = [server.process.pid], [server.workspace], server.shm_prefix
    report: dict = {"url": server.grpc_url}
    try:
        with TritonClient(server.grpc_url) as client:
            expected = [_frames(client), _frames(client, LONG_N)]
        report |= refusals(server, expected[0])
        report["kill"], server = kill_and_restart(server, expected)
        groups.append(server.process.pid)
        workspaces.append(server.workspace)
    finally:
        server.stop()
    report["closed"] = closed_port(clip)
    report["left"] = {
        "processes": live(groups),
        "shm": sorted(p.name for p in Path("/dev/shm").glob(prefix + "*")),
        "workspaces": [str(w) for w in workspaces if w.exists()],
    }
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
