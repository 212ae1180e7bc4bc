"""Fake `tensorrt` and `pycuda` modules for tests on machines without a GPU.

Just enough of both APIs for `lgcvd_runtime.backends.trt_backend` / `trt_engine`: a builder that
records its network flags and has no precision flags to set, engines that compute a simple known
function of their inputs from fake device memory, pycuda contexts that are current per thread
(push / pop, as in CUDA), page-locked buffers, async copies and stream capture into replayable
graphs. Every CUDA call asserts that the primary context is current in the calling thread, so a
backend that forgets to make it current fails here as it would on a GPU. `install` puts both into
`sys.modules` through pytest's monkeypatch.
"""

from __future__ import annotations

import importlib.machinery
import itertools
import threading
import types
from pathlib import Path

import numpy as np

from lgcvd_runtime.backends.graph_io import concrete_shape


class Recorder:
    """What the fakes saw: builds, network flags, copies, captures, scratch memory."""

    def __init__(self, manifest, has_v2: bool = True):
        self.manifest, self.has_v2 = manifest, has_v2
        self.builds: list[str] = []
        self.network_flags: list[int] = []
        self.htod: list[int] = []  # device addresses written
        self.captures = 0
        self.launches = 0
        self.scratch: list[tuple[int, int]] = []
        self.memory: dict[int, np.ndarray] = {}
        self.next_address = itertools.count(1)
        self.names: dict[int, str] = {}  # device address -> tensor name, for counting copies
        self.local = threading.local()


def _stack(rec: Recorder) -> list:
    if not hasattr(rec.local, "stack"):
        rec.local.stack = []
    return rec.local.stack


def _require_context(rec: Recorder) -> None:
    assert _stack(rec) and _stack(rec)[-1] == "primary", "no CUDA context current in this thread"


def make_pycuda(rec: Recorder) -> tuple[types.ModuleType, types.ModuleType]:
    driver = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    class Context:
        def push(self) -> None:
            _stack(rec).append("primary")

        @staticmethod
        def pop() -> None:
            _stack(rec).pop()

    class Device:
        def __init__(self, index: int):
            self.index = index

        @staticmethod
        def count() -> int:
            return 1

        def name(self) -> str:
            return "Fake GPU 80GB"

        def retain_primary_context(self) -> Context:
            return Context()

    class Allocation:
        def __init__(self, nbytes: int):
            self.address = next(rec.next_address) << 32
            rec.memory[self.address] = np.zeros(nbytes, np.uint8)

        def __int__(self) -> int:
            return self.address

        def free(self) -> None:
            _require_context(rec)
            del rec.memory[self.address]

    class Graph:
        def __init__(self, ops):
            self.ops = ops

        def instantiate(self):
            return self

        def launch(self, stream=None) -> None:
            _require_context(rec)
            rec.launches += 1
            for op in self.ops:
                op()

    class Stream:
        def __init__(self):
            _require_context(rec)
            self.handle, self.captured = 77, None

        def synchronize(self) -> None:
            _require_context(rec)

        def begin_capture(self) -> None:
            self.captured = []

        def end_capture(self) -> Graph:
            rec.captures += 1
            ops, self.captured = self.captured, None
            return Graph(ops)

    def mem_alloc(nbytes: int) -> Allocation:
        _require_context(rec)
        return Allocation(int(nbytes))

    def pagelocked_empty(shape, dtype) -> np.ndarray:
        _require_context(rec)
        return np.empty(shape, dtype)

    def memcpy_htod_async(dst, src: np.ndarray, stream) -> None:
        _require_context(rec)
        rec.htod.append(int(dst))
        rec.memory[int(dst)][: src.nbytes] = np.ascontiguousarray(src).view(np.uint8).ravel()

    def memcpy_dtoh_async(dst: np.ndarray, src, stream) -> None:
        _require_context(rec)
        dst.view(np.uint8).ravel()[:] = rec.memory[int(src)][: dst.nbytes]

    for name, value in dict(locals()).items():
        if not name.startswith("_") and name not in ("rec", "driver"):
            setattr(driver, name, value)
    driver.init = lambda: None
    package = types.ModuleType("pycuda")
    package.__path__ = []  # a package, so that `import pycuda.driver` looks for a submodule
    package.driver = driver
    return package, driver


def _compute(rec: Recorder, graph_name: str, addresses: dict, shapes: dict) -> None:
    """The fake engines' arithmetic: context = per-sample mean of prev (+ index), denoiser =
    2 x_t + t + mean(cond) + sum of the context means."""
    graph = rec.manifest.graphs[graph_name]

    def read(name, dtype="float32"):
        n = int(np.prod(shapes[name]))
        return rec.memory[addresses[name]].view(dtype)[:n].reshape(shapes[name])

    batch = shapes[graph.inputs[0].name][0]
    if graph_name == "context":
        m = read("prev").mean(axis=(1, 2, 3))
        outs = [
            np.broadcast_to(m.reshape(-1, 1, 1, 1) + i, concrete_shape(t, batch))
            for i, t in enumerate(graph.outputs)
        ]
    else:
        ctx = sum(read(t.name).mean(axis=(1, 2, 3)) for t in graph.inputs[3:])
        extra = (read("t") + read("cond").mean(axis=(1, 2, 3)) + ctx).reshape(-1, 1, 1, 1)
        outs = [2 * read("x_t") + extra]
    for t, out in zip(graph.outputs, outs, strict=True):
        data = np.ascontiguousarray(out, dtype=t.dtype).view(np.uint8).ravel()
        rec.memory[addresses[t.name]][: data.size] = data


def make_tensorrt(rec: Recorder, stream_of) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "11.4.0"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 1

    class ExecutionContextAllocationStrategy:
        USER_MANAGED = 2

    class Dims(tuple):
        pass

    class Network:
        source = ""

    class Parser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            self.network.source = Path(path).stem
            return True

    class Config:  # TensorRT 11: no set_flag, no precision flags to set
        def add_optimization_profile(self, profile) -> None:
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags: int) -> Network:
            rec.network_flags.append(flags)
            return Network()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self):
            return types.SimpleNamespace(set_shape=lambda *a: None)

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            rec.builds.append(network.source)
            return f"engine:{network.source}".encode()

    class ExecutionContext:
        def __init__(self, name):
            self.name, self.addresses, self.shapes = name, {}, {}

        def set_tensor_address(self, name, address) -> None:
            self.addresses[name] = address
            rec.names[address] = name

        def set_input_shape(self, name, shape) -> None:
            self.shapes[name] = tuple(shape)

        def set_device_memory(self, address, size) -> None:
            rec.scratch.append((address, size))

        def execute_async_v3(self, handle) -> bool:
            _require_context(rec)
            graph = rec.manifest.graphs[self.name]
            shapes = dict(self.shapes)
            batch = shapes[graph.inputs[0].name][0]
            shapes.update({t.name: concrete_shape(t, batch) for t in graph.outputs})
            op = lambda a=dict(self.addresses), s=shapes: _compute(rec, self.name, a, s)  # noqa: E731
            stream = stream_of()
            if stream.captured is not None:
                stream.captured.append(op)
            else:
                op()
            return True

    class Engine:
        def __init__(self, name):
            self.name = name
            size = 1000 if name == "context" else 5000
            if rec.has_v2:
                self.device_memory_size_v2 = size
            else:
                self.device_memory_size = size

        def create_execution_context(self, strategy):
            assert strategy == ExecutionContextAllocationStrategy.USER_MANAGED
            return ExecutionContext(self.name)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data: bytes):
            return Engine(data.decode().split(":", 1)[1])

    for name, value in dict(locals()).items():
        if isinstance(value, type):
            setattr(trt, name, value)
    trt.OnnxParser = Parser
    return trt


def install(monkeypatch, manifest, has_v2: bool = True) -> Recorder:
    """Put fake `tensorrt`, `pycuda` and `pycuda.driver` into sys.modules; return the recorder."""
    import sys

    rec = Recorder(manifest, has_v2)
    package, driver = make_pycuda(rec)
    streams: list = []
    original = driver.Stream

    class Stream(original):  # remember the stream the backend made, for capture
        def __init__(self):
            super().__init__()
            streams.append(self)

    driver.Stream = Stream
    trt = make_tensorrt(rec, lambda: streams[-1])
    for module in (package, driver, trt):
        is_package = hasattr(module, "__path__")
        module.__spec__ = importlib.machinery.ModuleSpec(
            module.__name__, None, is_package=is_package
        )
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return rec
