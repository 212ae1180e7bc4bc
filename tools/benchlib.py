"""What the benchmark scripts in tools/ share (each bench_*.py imports it as its sibling): the
sampler option of two of them (their numeric settings take the shapes of
`lgcvd_runtime.cli.options`), a random-init checkpoint of a preset and the median
time of a call.

Knows nothing about what is benchmarked; timing is the runtime's own rule (`lgcvd_runtime.cli.bench`).
Torch is imported only where a checkpoint is made: bench_serving.py runs in the serving
environment, which has no torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from lgcvd_runtime.cli.bench import _latency_ms
from lgcvd_runtime.cli.options import choice_option
from lgcvd_runtime.samplers import SAMPLERS


def sampler_option(help: str):
    """--sampler, one of the runtime's samplers, dpmpp unless given."""
    return choice_option("--sampler", choices=SAMPLERS, default="dpmpp", help=help)


def random_checkpoint(name: str, run_dir: Path) -> Path:
    """A step-0 checkpoint of preset `name` in `run_dir`, seeded, with its zero-initialised output
    convolutions re-drawn so that every block contributes to what is timed."""
    import torch

    from lgcvd_train.checkpoint import save_checkpoint
    from lgcvd_train.config import TrainConfig, preset
    from lgcvd_train.model import LGCVD

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
