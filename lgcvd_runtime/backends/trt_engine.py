"""TensorRT engines run with pycuda from any thread.

`Gpu` holds device 0's retained primary context and makes it current around every CUDA call
(push / pop in the calling thread), so engines are loaded, run and freed from whichever thread
calls: the live stream's worker as much as the main thread. pycuda.autoinit is not used: its
context is current only in the thread that imported it.

`Engine` is one deserialized engine with device buffers for the largest batch and page-locked
host buffers of the same size (asynchronous copies need pinned memory), on the backend's one
stream. Its execution context gets its scratch memory from the backend (USER_MANAGED), so the two
engines of a bundle, which never run at the same time, share one allocation. `run` skips the
upload of inputs named in `resident` (the context tensors, already on the device for this window)
and, with `cuda_graph`, replays a CUDA graph captured once per batch size instead of enqueuing
every kernel. TensorRT and pycuda are imported inside the functions that need them, so this
module imports anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from lgcvd_runtime.bundle import GraphSpec
from lgcvd_runtime.errors import BackendError

from .graph_io import concrete_shape
from .trt_compat import attach_device_memory, device_memory_bytes

REBUILD = "delete the bundle's engines folder to rebuild it"


class Gpu:
    """Device 0's primary context, current only inside `with gpu.current() as cuda:`."""

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda: Any = cuda
        self._context = cuda.Device(0).retain_primary_context()

    @contextmanager
    def current(self) -> Iterator[Any]:
        self._context.push()
        try:
            yield self.cuda
        finally:
            self.cuda.Context.pop()


class Engine:
    """One engine's execution context, buffers and captured graphs. Call inside `gpu.current()`."""

    def __init__(self, cuda: Any, data: bytes, graph: GraphSpec, max_batch: int, stream: Any):
        import tensorrt as trt

        self.graph, self.max_batch, self._cuda, self._stream = graph, max_batch, cuda, stream
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise BackendError(f"TensorRT could not load the engine of {graph.file}; {REBUILD}")
        strategy = trt.ExecutionContextAllocationStrategy.USER_MANAGED
        self._context = self._engine.create_execution_context(strategy)
        self.scratch_bytes = device_memory_bytes(self._engine)
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, Any] = {}
        for t in (*graph.inputs, *graph.outputs):
            self._host[t.name] = cuda.pagelocked_empty(concrete_shape(t, max_batch), t.dtype)
            self._device[t.name] = cuda.mem_alloc(self._host[t.name].nbytes)
            self._context.set_tensor_address(t.name, int(self._device[t.name]))
        self._batch = 0  # the batch size the context's input shapes are set for
        self._graphs: dict[int, Any] = {}  # batch size -> instantiated CUDA graph

    def attach_scratch(self, address: int, size: int) -> None:
        attach_device_memory(self._context, address, size)

    def run(
        self, feeds: dict[str, np.ndarray], resident: frozenset[str], cuda_graph: bool
    ) -> list[np.ndarray]:
        """Checked, named inputs of one batch size -> outputs (host arrays, the graph's dtypes)."""
        batch = next(iter(feeds.values())).shape[0]
        for name, array in feeds.items():
            if name not in resident:
                pinned = self._host[name][:batch]
                pinned[...] = array
                self._cuda.memcpy_htod_async(self._device[name], pinned, self._stream)
        if batch != self._batch:
            for name, array in feeds.items():
                self._context.set_input_shape(name, tuple(array.shape))
            self._batch = batch
        if cuda_graph:
            self._graph(batch).launch(self._stream)
        else:
            self._execute()
        outputs = []
        for t in self.graph.outputs:
            pinned = self._host[t.name][:batch]
            self._cuda.memcpy_dtoh_async(pinned, self._device[t.name], self._stream)
            outputs.append(pinned)
        self._stream.synchronize()
        return [o.copy() for o in outputs]

    def _execute(self) -> None:
        if not self._context.execute_async_v3(self._stream.handle):
            raise BackendError(f"TensorRT failed to run the engine of {self.graph.file}; {REBUILD}")

    def _graph(self, batch: int) -> Any:
        """The CUDA graph of one enqueue at this batch size, captured on first use. TensorRT
        needs one ordinary enqueue after a shape change before it can be captured."""
        if batch not in self._graphs:
            self._execute()
            self._stream.begin_capture()
            try:
                self._execute()
            finally:
                captured = self._stream.end_capture()
            self._graphs[batch] = captured.instantiate()
        return self._graphs[batch]

    def free(self) -> None:
        """Release device and pinned memory now (inside `gpu.current()`), not at interpreter exit."""
        self._graphs.clear()
        for allocation in self._device.values():
            allocation.free()
        self._device.clear()
        self._host.clear()
