"""research/train_efficiency.py: variant parsing and the CPU-time budget of a study run."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click
import numpy as np
import pytest

from lgcvd_train.checkpoint import load_checkpoint
from lgcvd_train.data.arrays import save_videos

TOOLS = Path(__file__).resolve().parents[1]


def tool():
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module("train_efficiency")


def test_joined_variants_merge_their_changes():
    eff = tool()
    # the baseline is the recipe before the study, whatever the defaults are now
    assert eff.changes("baseline") == {"loss_weighting": "none", "adam": "default"}
    assert eff.changes("min-snr+adam-fused") == {"loss_weighting": "min-snr", "adam": "fused"}
    assert eff.changes("compile") == {"loss_weighting": "none", "adam": "default", "compile": True}


def test_an_unknown_variant_is_one_line_naming_the_choices():
    with pytest.raises(click.ClickException) as err:
        tool().changes("min-snr+adam-fast")
    assert err.value.message.startswith("unknown variant 'adam-fast'; choose from baseline, ")
    assert err.value.message.endswith("(join with '+')")


def test_a_budget_run_stops_on_cpu_time_not_on_steps(tmp_path):
    data = tmp_path / "clips.npy"
    rng = np.random.default_rng(0)
    save_videos(data, [rng.integers(0, 256, (14, 64, 64, 3), dtype=np.uint8) for _ in range(2)])
    job = {
        "data": str(data), "init_from": None, "steps": 2, "cpu_seconds": 3.0, "batch": 1,
        "lr": 1e-4, "tasks": "prediction=1", "seed": 0, "threads": 1, "warmup": 0,
    }  # fmt: skip
    rec = tool().train_variant("baseline+residual", job, tmp_path / "run")
    # --steps 2 is ignored under a budget: it trains until 3 CPU seconds are spent, and the
    # last step began before they were
    assert rec["cpu"] >= 3.0
    assert len(rec["times"]) == len(rec["losses"]) >= 1
    assert load_checkpoint(tmp_path / "run").model_config.residual  # a model field, not training's
