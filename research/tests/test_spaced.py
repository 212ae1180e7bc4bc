"""research/spaced.py: a bundle loaded the way lgcvd-eval and eval_tasks.py load it samples on
the chosen grid, with the chosen sampler."""

from __future__ import annotations

import pytest
from conftest import export_tiny_bundle

import lgcvd_runtime.api as api
import lgcvd_runtime.plans as plans
from spaced import use_spacing

pytestmark = pytest.mark.research


@pytest.mark.parametrize(
    ("spacing", "sampler", "grid"),
    [("trailing", "ddim", [249, 499, 749, 999]), ("log-snr", "dpmpp-sde", [44, 503, 950, 995])],
)
def test_a_bundle_loaded_under_a_spacing_samples_on_its_grid(
    spacing, sampler, grid, tmp_path_factory, monkeypatch
):
    for module in (api, plans):  # restored after the test
        if hasattr(module, "respace"):
            monkeypatch.setattr(module, "respace", module.respace)
    built = use_spacing(spacing)
    model = api.load(export_tiny_bundle(tmp_path_factory), "onnxruntime", sampler, 4, threads=1)
    assert model.pipeline.settings.plan.timesteps.tolist() == grid
    assert model.pipeline.settings.sampler == sampler and len(built) == 1
