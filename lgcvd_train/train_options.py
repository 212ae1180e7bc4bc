"""The defaults and value checks of `lgcvd-train`'s options, in one place for the command line
and for the scripts that build training configs the same way (research/table5.py). Knows click
and the configs; nothing about training.
"""

from __future__ import annotations

import math

import click

from .config import DEFAULT_TASK_WEIGHTS, TrainConfig

TRAIN = TrainConfig()  # the defaults of every training option
MAX_SEED = 2**64 - 1  # the largest seed torch.manual_seed takes; numpy takes any seed >= 0


def parse_task_weights(text: str | None) -> dict:
    if not text:
        return dict(DEFAULT_TASK_WEIGHTS)
    hint = "'--task-weights'"
    try:
        pairs = (item.split("=") for item in text.split(","))
        weights = {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise click.BadParameter(
            "use NAME=WEIGHT pairs, e.g. prediction=0.5,unconditional=0.3,interpolation=0.1,random=0.1",
            param_hint=hint,
        ) from None
    unknown = sorted(set(weights) - set(DEFAULT_TASK_WEIGHTS))
    if unknown:
        raise click.BadParameter(
            f"unknown task {unknown[0]!r}; the tasks are {', '.join(DEFAULT_TASK_WEIGHTS)}",
            param_hint=hint,
        )
    for name, w in weights.items():
        if not (math.isfinite(w) and w >= 0):
            raise click.BadParameter(
                f"{name}={w}: weights are finite numbers >= 0", param_hint=hint
            )
    if sum(weights.values()) <= 0:
        raise click.BadParameter(
            "the weights sum to 0; give a task a positive weight", param_hint=hint
        )
    return weights


def finite(ctx, param, value: float | None) -> float | None:
    """click's FloatRange lets NaN through (every comparison with NaN is false); refuse it and
    infinities, which would train a model of NaNs."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value
