"""The one place where TensorRT 10 and TensorRT 11 differ, decided by feature detection.

Both builds are strongly typed (`NetworkDefinitionCreationFlag.STRONGLY_TYPED`, in TensorRT since
10.0 and the only mode in 11): a network takes its precision from the ONNX graph's own types
(fp32, fp16 with fp32 islands, int8 Q/DQ), so no builder precision flag is ever set; TensorRT 11
removed them (docs/precision.md). Where an API was renamed, the attribute is looked up here and
nowhere else: `device_memory_size_v2` (TensorRT >= 10.1, the only name in 11) before
`device_memory_size` (10.0), `set_device_memory` (>= 10.1) before the `device_memory` property.
No version string is parsed. The TensorRT module is passed in, so this file imports nothing.
"""

from __future__ import annotations

from typing import Any


def network_flags(trt: Any) -> int:
    """`create_network` flags: strongly typed, the same bit in TensorRT 10 and 11."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def device_memory_bytes(engine: Any) -> int:
    """Scratch memory an execution context of `engine` needs, in bytes."""
    if hasattr(engine, "device_memory_size_v2"):
        return int(engine.device_memory_size_v2)
    return int(engine.device_memory_size)  # TensorRT 10.0 only


def attach_device_memory(context: Any, address: int, size: int) -> None:
    """Give a context created with USER_MANAGED allocation its scratch memory."""
    if hasattr(context, "set_device_memory"):
        context.set_device_memory(address, size)
    else:  # TensorRT 10.0 only
        context.device_memory = address
