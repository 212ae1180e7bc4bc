"""Starts the `tritonserver` of the `nvidia-pytriton` wheel on this machine, for tests and trials.

The wheel carries Triton 2.51 with the Python backend only (so repositories made with
`--graphs python`), and one backend stub per Python version. Starting it outside PyTriton needs
what docs/serving.md records: a backend folder holding the stub of *this* Python, the
wheel's bundled libraries and this interpreter's own libpython first on LD_LIBRARY_PATH, and this
environment's `bin` first on PATH (the stub runs Python in isolated mode and finds its packages
from there). The server listens on 127.0.0.1 only, in a process group of its own with its
backend stubs; stopping sends SIGTERM (a backgrounded server ignores SIGINT), then kills what is
left of the group (the stubs of a server that was killed outlive it), and removes the workspace
and the shared-memory regions it made.
This module knows nothing of lgcvd's models; it needs no Triton Python package but the wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

from lgcvd_runtime.errors import BackendError

INSTALL = 'pip install "numpy<2" nvidia-pytriton'


def wheel_root() -> Path:
    """The `tritonserver` folder inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise BackendError(f"nvidia-pytriton is not installed; {INSTALL}")
    return Path(spec.origin).parent / "tritonserver"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True if something holds TCP `port` on 127.0.0.1 (binding it fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind, TIME_WAIT ok
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _backend_folder(root: Path, workspace: Path) -> Path:
    """workspace/backends/python: the wheel's Python backend with this Python's stub beside it."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise BackendError(
            f"nvidia-pytriton has no Python backend stub for Python {version}; "
            "use Python 3.8-3.13 for the serving environment"
        )
    backends = workspace / "backends"
    shutil.copytree(root / "backends", backends)
    shutil.copy2(stub, backends / "python" / "triton_python_backend_stub")
    return backends


def server_env(root: Path) -> dict[str, str]:
    """The environment the server and its Python stubs need (see the module docstring)."""
    env = dict(os.environ)
    libs = [sysconfig.get_config_var("LIBDIR"), str(root.parent.parent / "nvidia_pytriton.libs")]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def _kill_group(group: int) -> None:
    """SIGKILL whatever is left in process group `group` (none after a clean stop)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


class LocalServer:
    """One tritonserver serving `repo` on 127.0.0.1; a context manager that starts and stops it.

    `grpc_port` / `http_port` None: free ports are chosen. `log` is the server's log file
    (default: inside the workspace, removed on stop)."""

    def __init__(self, repo: Path, grpc_port: int | None = None, http_port: int | None = None):
        self.repo = Path(repo).resolve()
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.process: subprocess.Popen | None = None
        self.returncode: int | None = None  # the server's exit code, once stopped
        self.workspace: Path | None = None
        self.shm_prefix = f"lgcvd_{os.getpid()}_{self.grpc_port}_"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_file(self) -> Path | None:
        return self.workspace / "server.log" if self.workspace else None

    def start(self, timeout: float = 180.0) -> LocalServer:
        """Start the server and wait until it and every model are ready."""
        if not (self.repo / "lgcvd" / "config.pbtxt").is_file():
            raise BackendError(
                f"{self.repo} is not a repository from lgcvd-serve triton-repo; generate one first"
            )
        self._refuse_busy_ports(port_in_use)
        root = wheel_root()
        self.workspace = Path(tempfile.mkdtemp(prefix="lgcvd-triton-"))
        try:
            backends = _backend_folder(root, self.workspace)
            command = [
                str(root / "bin" / "tritonserver"),
                f"--model-repository={self.repo}",
                f"--backend-directory={backends}",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                "--http-address=127.0.0.1",
                f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1",
                f"--grpc-port={self.grpc_port}",
                "--allow-metrics=false",
                "--allow-sagemaker=false",
                "--exit-on-error=true",
            ]
            with open(self.log_file, "wb") as log:
                self.process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=server_env(root),
                    cwd=self.workspace,
                    start_new_session=True,  # its group: the stubs, killed with it in stop()
                )
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _refuse_busy_ports(self, busy) -> None:
        """A one-line BackendError if `busy(port)` says the gRPC or HTTP port is taken."""
        for what, port in (("gRPC", self.grpc_port), ("HTTP", self.http_port)):
            if busy(port):
                raise BackendError(
                    f"{what} port {port} on 127.0.0.1 is already in use; stop what listens "
                    f"there or pass another --{what.lower()}-port"
                )

    def _log_says_in_use(self, port: int) -> bool:
        """True if the server's log says it could not bind `port` (taken after the check)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return False
        return f"127.0.0.1:{port}' already in use" in text

    def _wait_ready(self, timeout: float) -> None:
        url = f"http://127.0.0.1:{self.http_port}/v2/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._refuse_busy_ports(self._log_says_in_use)
                raise BackendError(
                    f"tritonserver exited with code {self.process.returncode} before it was "
                    f"ready; its log ends: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise BackendError(
            f"tritonserver was not ready after {timeout:.0f} s; its log ends: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server log, joined on one line (for one-line errors)."""
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except (OSError, AttributeError):
            return "(no log)"
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait (SIGKILL after `timeout`), SIGKILL the rest of its process group, then
        remove the workspace and shared memory. Returns the server's exit code (None if it
        never started); a server that was killed has a negative one and may be stopped too."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            code = self.returncode = self.process.returncode
            _kill_group(self.process.pid)
            self.process = None
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)
        if self.workspace is not None:
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.workspace = None
        return code

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
