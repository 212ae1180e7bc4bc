"""What the benchmark scripts in tools/ share (bench_pipeline.py, bench_export.py import it as their
sibling): a random-init checkpoint of a preset and the median time of a call.

Knows nothing about what is benchmarked; timing is the runtime's own rule (`lgcvd_runtime.cli.bench`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import torch

from lgcvd_runtime.cli.bench import _latency_ms
from lgcvd_train.checkpoint import save_checkpoint
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.model import LGCVD


def random_checkpoint(name: str, run_dir: Path) -> Path:
    """A step-0 checkpoint of preset `name` in `run_dir`, seeded, with its zero-initialised output
    convolutions re-drawn so that every block contributes to what is timed."""
    torch.manual_seed(0)
    model = LGCVD(preset(name))
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and not m.weight.any():
            m.reset_parameters()
    opt = torch.optim.Adam(model.parameters())
    return save_checkpoint(run_dir, model, copy.deepcopy(model), opt, 0, TrainConfig(), {})


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of `call` in milliseconds over `repeats` calls, after one warm-up call."""
    return _latency_ms(call, repeats)["median"]
