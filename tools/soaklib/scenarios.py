"""The soak scenarios: each starts its processes under test and a load process, and names the
pids tools/soak.py watches. The load prints one JSON line per report (`judge.Sample`'s fields
but the usage); a scenario is independent of the others, so a new one (a ROS 2 node fed by a
publisher) is one more `_Scenario` with `name`, `age_label`, `KEYS` (its settings beyond the
common ones), `describe()` and `running()`, and one more choice in tools/soak.py.

- `Live`: the library's live stream; the load process is the process under test.
- `Triton`: `lgcvd-serve local` (tritonserver and its Python-backend stubs, on 127.0.0.1) under
  `--clients` concurrent clients, run in the serving environment (.venv-serve).
- `Ros2`: the `lgcvd-ros2` node on camera topics played from real clips, DDS on loopback only.
Knows nothing of how samples are judged or drawn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lgcvd_runtime.serve.local_server import free_port

HERE = Path(__file__).resolve().parent
SERVE_BIN = HERE.parents[1] / ".venv-serve" / "bin"
Running = Iterator[tuple[subprocess.Popen, dict[str, int]]]


def _load(command: list, log: Path, env: dict | None = None) -> subprocess.Popen:
    """A load process: JSON lines on its stdout (read by the harness), stderr into `log`."""
    with open(log, "ab") as err:
        return subprocess.Popen(
            [str(c) for c in command], stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    """SIGTERM (SIGKILL after `timeout`) and the exit code; an ended process just the code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def log_tail(log: Path) -> str:
    """The last line of a log, for a one-line problem."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "(nothing logged)"


@dataclass
class _Scenario:
    """What every scenario is given: the bundle, its sampler and steps, how long, which clips
    and where to write logs; its `problems` (one line each) fill as it runs."""

    bundle: Path
    sampler: str
    steps: int
    seconds: float
    videos: list[Path]
    work: Path
    problems: list[str] = field(default_factory=list, kw_only=True)
    KEYS: ClassVar[tuple[str, ...]] = ()  # the scenario's own settings, after the common ones

    @property
    def settings(self) -> dict:
        keys = ("sampler", "steps", "seconds", *self.KEYS)
        return {"bundle": str(self.bundle), **{k: getattr(self, k) for k in keys}}


@dataclass
class Live(_Scenario):
    """2 cameras x 10 Hz (by default) into `model.live` for `seconds` (live_load.py)."""

    cameras: int = 2
    rate: float = 10.0
    threads: int = 1
    leak: bool = False
    name: str = "live"
    age_label: str = "forecast age (s)"
    KEYS = ("cameras", "rate", "threads", "leak")

    def describe(self, done: int) -> str:
        return f"{self.cameras} cameras x {self.rate:g} Hz x {self.seconds / 60:.3g} min"

    @contextmanager
    def running(self) -> Running:
        log = self.work / f"{self.name}.log"
        command = [sys.executable, HERE / "live_load.py", "--bundle", self.bundle]
        command += ["--sampler", self.sampler, "--steps", self.steps, "--threads", self.threads]
        command += ["--cameras", self.cameras, "--rate", self.rate, "--seconds", self.seconds]
        command += [a for v in self.videos for a in ("--video", v)] + ["--leak"] * self.leak
        load = _load(command, log)
        try:
            yield load, {"process": load.pid}
        finally:
            if stop(load) != 0:
                self.problems.append(
                    f"the live load exited with {load.returncode}: {log_tail(log)}"
                )


def _serve(*args) -> list[str]:
    return [str(SERVE_BIN / "lgcvd-serve"), *map(str, args)]


def _wait_ready(server: subprocess.Popen, http_port: int, log: Path, timeout: float) -> None:
    """Until the server's HTTP health endpoint says ready; a server that exits is an error."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"lgcvd-serve local exited with {server.returncode}: {log_tail(log)}"
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"lgcvd-serve local was not ready after {timeout:g} s: {log_tail(log)}")


@dataclass
class Triton(_Scenario):
    """`clients` clients against `lgcvd-serve local` for `seconds` (serve_load.py)."""

    clients: int = 4
    pipelines: int = 4
    name: str = "triton"
    age_label: str = "request latency = forecast age (s)"
    KEYS = ("clients", "pipelines")

    def describe(self, done: int) -> str:
        return f"{self.clients} clients x {done} requests in {self.seconds / 60:.3g} min"

    def _repository(self) -> Path:
        repo = self.work / "triton-repo"
        made = subprocess.run(
            _serve("triton-repo", self.bundle, "-o", repo, "--graphs", "python", "--force")
            + ["--sampler", self.sampler, "--steps", str(self.steps)]
            + ["--pipelines", str(self.pipelines)],
            capture_output=True,
            text=True,
        )
        if made.returncode != 0:
            raise RuntimeError(f"lgcvd-serve triton-repo failed: {made.stderr.strip()}")
        return repo

    @contextmanager
    def running(self) -> Running:
        log = self.work / f"{self.name}-server.log"
        grpc, http = free_port(), free_port()
        command = _serve("local", self._repository(), "--grpc-port", grpc, "--http-port", http)
        with open(log, "ab") as out:
            server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_ready(server, http, log, timeout=300)
            clients = [SERVE_BIN / "python", HERE / "serve_load.py", "--url", f"127.0.0.1:{grpc}"]
            clients += ["--clients", self.clients, "--seconds", self.seconds]
            clients += [a for v in self.videos for a in ("--video", v)]
            load_log = self.work / f"{self.name}-clients.log"
            load = _load(clients, load_log)
            try:
                yield load, {"server": server.pid, "clients": load.pid}
            finally:
                if stop(load) != 0:
                    self.problems.append(f"the Triton clients failed: {log_tail(load_log)}")
        finally:
            if stop(server) != 0:  # a stopped `local` exits 0 (the chassis's Service)
                self.problems.append(f"lgcvd-serve local exited with {server.returncode}")


# DDS on loopback only, as tools/ros2_latency.py sets it: lo, no multicast, a unicast peer.
LOOPBACK = (
    '<CycloneDDS><Domain id="any"><General><Interfaces><NetworkInterface name="lo"/>'
    "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
    '<ParticipantIndex>auto</ParticipantIndex><Peers><Peer address="127.0.0.1"/></Peers>'
    "</Discovery></Domain></CycloneDDS>"
)


@dataclass
class Ros2(_Scenario):
    """The `lgcvd-ros2` node on `cameras` topics at `rate` for `seconds` (ros2_load.py)."""

    cameras: int = 2
    rate: float = 10.0
    threads: int = 1
    name: str = "ros2"
    age_label: str = "forecast age on arrival (s)"
    KEYS = ("cameras", "rate", "threads")

    def describe(self, done: int) -> str:
        return f"{self.cameras} camera topics x {self.rate:g} Hz x {self.seconds / 60:.3g} min"

    @contextmanager
    def running(self) -> Running:
        env = {**os.environ, "CYCLONEDDS_URI": LOOPBACK}
        domain = 100 + os.getpid() % 100  # apart from other runs on this machine
        topics = [f"/soak{os.getpid()}/cam{c}/image_raw" for c in range(self.cameras)]
        node = [Path(sys.executable).with_name("lgcvd-ros2"), "--model", self.bundle, "--quiet"]
        node += ["--backend", "onnxruntime", "--sampler", self.sampler, "--steps", self.steps]
        node += ["--threads", self.threads, "--domain-id", domain, "--seed", 0]
        node += [a for t in topics for a in ("--camera", t)]
        log = self.work / f"{self.name}-node.log"
        with open(log, "ab") as out:
            under_test = subprocess.Popen(list(map(str, node)), stderr=out, env=env)
        try:
            feed = [sys.executable, HERE / "ros2_load.py", "--video", self.videos[0]]
            feed += ["--rate", self.rate, "--domain-id", domain, "--seconds", self.seconds]
            feed += [a for t in topics for a in ("--topic", t)]
            load_log = self.work / f"{self.name}-load.log"
            load = _load(feed, load_log, env)
            try:
                yield load, {"node": under_test.pid}
            finally:
                if stop(load) != 0:
                    self.problems.append(f"the ROS 2 load failed: {log_tail(load_log)}")
        finally:
            if stop(under_test) != 0:  # a stopped node exits 0 (the chassis's Service)
                code = under_test.returncode
                self.problems.append(f"lgcvd-ros2 exited with {code}: {log_tail(log)}")
