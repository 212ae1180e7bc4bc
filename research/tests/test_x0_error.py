"""research/x0_error.py: the one-step x0 error of an exact denoiser is zero at every timestep,
and a bundle scores as the run it was exported from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import export_tiny_bundle

from lgcvd_runtime.conditioning import stack_window, to_model
from lgcvd_runtime.schedule import ScheduleSpec
from lgcvd_train.config import preset
from lgcvd_train.data import shapes
from lgcvd_train.diffusion import Schedule
from x0_error import TIMESTEPS, main, x0_errors

pytestmark = pytest.mark.research  # every test here (pyproject's markers)


def clips() -> np.ndarray:
    """2 clips of 8 frames of bouncing shapes, 32x32: (2, 8, 32, 32, 3) uint8."""
    return shapes.generate(2, 8, 32, seed=0)


def test_an_oracle_denoiser_scores_an_x0_error_of_zero_at_every_timestep():
    videos = clips()
    cfg = preset("tiny")
    truth = torch.from_numpy(stack_window(to_model(videos)))

    class Oracle:  # returns the exact v for the clips' first window
        def __init__(self):
            self.cfg = cfg

        def __call__(self, x_t, t, cond, prev):
            alpha, sigma = Schedule(ScheduleSpec()).coefficients(t)
            return (alpha * x_t - truth) / sigma

    rows = x0_errors(Oracle(), ScheduleSpec(), videos, seed=0)
    assert [r[0] for r in rows] == list(TIMESTEPS)
    for _, err, hf_hat, hf_true in rows:
        assert err < 1e-5 and hf_hat == pytest.approx(hf_true, abs=1e-5) and hf_true > 0.02


def test_a_bundle_scores_like_the_run_it_was_exported_from(tmp_path, tmp_path_factory):
    bundle = Path(export_tiny_bundle(tmp_path_factory))  # fp32: its graphs hold the run's weights
    run = bundle.with_name("tiny-run")
    data = tmp_path / "clips.npy"
    np.save(data, clips())
    tables = []
    for model in (run, bundle):
        result = CliRunner().invoke(main, [str(model), "--data", str(data), "--clips", "2"])
        assert result.exit_code == 0, result.output
        lines = result.output.strip().splitlines()
        assert lines[0].endswith(": step 0, width 32, mults (1, 2)")
        tables.append(lines[2:])
    assert len(tables[0]) == len(TIMESTEPS) and tables[0] == tables[1]
