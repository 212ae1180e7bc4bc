"""Options that make a training step faster without changing what it computes: the
Adam implementation, channels-last memory format, torch.compile, and a background thread that
prepares the next batch while the step runs.

Knows the TrainConfig speed fields and torch; nothing about the loss, checkpoints or the loop.
Checkpoints are always written from the plain module, so compiled runs keep the plain weight
names (no `_orig_mod.` prefix).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from lgcvd_runtime.errors import LgcvdError

from .config import ADAMS


class SpeedOptionError(LgcvdError):
    """A speed option this machine or torch cannot run."""


def make_adam(params, lr: float, implementation: str, device: torch.device) -> torch.optim.Adam:
    """torch.optim.Adam, fused (one kernel per parameter group) or torch's default (foreach,
    multi-tensor, on CUDA; per-parameter loops on the CPU). A separate foreach choice was
    dropped: on the CPU it was no faster than fused, on CUDA it is the default already."""
    if implementation not in ADAMS:
        raise SpeedOptionError(
            f"--adam {implementation}: unknown implementation; choose one of {', '.join(ADAMS)}"
        )
    flags = {"fused": True} if implementation == "fused" else {}
    try:
        return torch.optim.Adam(params, lr=lr, **flags)
    except RuntimeError as e:  # fused is not implemented for every device and dtype
        raise SpeedOptionError(
            f"--adam fused does not run on {device.type} with torch {torch.__version__} ({e}); "
            "use --adam default"
        ) from None


def prepare_model(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """The model in the run's memory format (weights keep their values and names)."""
    return model.to(memory_format=torch.channels_last) if channels_last else model


def maybe_compile(net: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`torch.compile(net)` for the forward and backward passes; the caller keeps `net` itself
    for state dicts."""
    return torch.compile(net) if enabled else net


class BatchSource:
    """batch(step): `make(step)`, computed one step ahead on a background thread when `ahead`.
    Batches depend only on the step (they are drawn from the step's seeds), so a run gets the
    same batches with or without the thread, and after a resume."""

    def __init__(self, make: Callable[[int], object], ahead: bool, last_step: int):
        self.make, self.last_step = make, last_step
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="lgcvd-batch") if ahead else None
        self.next: tuple[int, Future] | None = None

    def batch(self, step: int):
        if self.pool is None:
            return self.make(step)
        if self.next is not None and self.next[0] == step:
            batch = self.next[1].result()
        else:  # the first step, or a step other than the one prepared
            if self.next is not None:
                self.next[1].cancel()
            batch = self.make(step)
        self.next = (
            (step + 1, self.pool.submit(self.make, step + 1)) if step + 1 < self.last_step else None
        )
        return batch

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.next = None
