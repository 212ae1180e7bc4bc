"""Residual models (`ModelConfig.residual`, `ModelSpec.residual`): the baseline the condition
frames give, what training regresses, what the pipeline returns, and how a bundle records it."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import export_tiny_bundle

from lgcvd_runtime.bundle import MANIFEST, load_manifest
from lgcvd_runtime.cli.info import describe
from lgcvd_runtime.conditioning import ABSENT, baseline, stack_window
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.pipeline import Pipeline, SamplerSettings, row_generators
from lgcvd_runtime.schedule import ScheduleSpec, full_alphas_cumprod, respace
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.two_stage import TwoStageStep

SPEC = ModelSpec(image_size=4, channels=3, frames=8, cond_slots=2, parameterization="v")
RESIDUAL = replace(SPEC, residual=True)


def frames_of(values: dict[int, float], n: int = 8) -> np.ndarray:
    """(1, N, 3, 2, 2) window whose frame f is the constant values[f] (NaN where not given: a
    baseline that read such a frame would show it)."""
    window = np.full((1, n, 3, 2, 2), np.nan, np.float32)
    for f, v in values.items():
        window[0, f] = v
    return window


def test_a_prediction_baseline_copies_the_last_condition_frame():
    rng = np.random.default_rng(0)
    window = rng.uniform(-1, 1, (2, 8, 3, 4, 4)).astype(np.float32)
    out = baseline(window, [[0, 1], [0, 1]])
    np.testing.assert_array_equal(out[:, 0], window[:, 0])
    for f in range(1, 8):
        np.testing.assert_array_equal(out[:, f], window[:, 1])


def test_an_interpolation_baseline_is_the_linear_cross_fade_of_its_keyframes():
    out = baseline(frames_of({0: -0.7, 7: 0.7}), [[0, 7]])
    expected = [-0.7 + 1.4 * f / 7 for f in range(8)]  # a straight line from -0.7 to 0.7
    np.testing.assert_allclose(out[0, :, 0, 0, 0], expected, atol=1e-6)


def test_condition_frames_in_any_slot_order_cross_fade_between_and_copy_outside():
    out = baseline(frames_of({2: 0.3, 5: -0.6}), [[5, 2]])
    # frames 0-2 copy frame 2; 3 and 4 lie 1/3 and 2/3 of the way to frame 5; 5-7 copy frame 5
    expected = [0.3, 0.3, 0.3, 0.0, -0.3, -0.6, -0.6, -0.6]
    np.testing.assert_allclose(out[0, :, 0, 0, 0], expected, atol=1e-6)
    one = baseline(frames_of({3: 0.25}), [[ABSENT, 3]])
    np.testing.assert_array_equal(one[0, :, 0, 0, 0], [0.25] * 8)


def test_a_window_without_condition_frames_has_the_baseline_u():
    window = np.ones((1, 8, 3, 2, 2), np.float32)
    assert not baseline(window, [[ABSENT, ABSENT]]).any()


class ResidualDenoiser:
    """Answers the v whose x0 estimate (x0 = alpha x_t - sigma v) is `x0` everywhere."""

    name = "fake"

    def __init__(self, x0: float):
        self.x0 = x0
        self.abar = full_alphas_cumprod(ScheduleSpec())

    def encode(self, prev):
        return (prev[:, :1],)

    def denoise(self, x_t, t, cond, context):
        ab = float(self.abar[int(t[0])])
        return ((math.sqrt(ab) * x_t - self.x0) / math.sqrt(1 - ab)).astype(np.float32)

    def close(self):
        pass


def run(spec: ModelSpec, x0: float, task: str, given: np.ndarray) -> np.ndarray:
    pipe = Pipeline(ResidualDenoiser(x0), spec, SamplerSettings(respace(ScheduleSpec(), 3)))
    rngs = row_generators(0, len(given))
    windows = pipe.predict(given, 9, rngs) if task == "predict" else pipe.interpolate(given, rngs)
    return np.concatenate([w.frames for w in windows], axis=1)


def test_a_residual_model_that_predicts_no_change_returns_its_baseline():
    rng = np.random.default_rng(1)
    given = rng.uniform(-1, 1, (2, 2, 3, 4, 4)).astype(np.float32)
    out = run(RESIDUAL, 0.0, "predict", given)  # frames 2..10
    for f in range(9):
        np.testing.assert_allclose(out[:, f], given[:, 1], atol=1e-6)
    # the same network output read as a window (not residual) is the grey U
    np.testing.assert_allclose(run(SPEC, 0.0, "predict", given), 0.0, atol=1e-6)
    keys = rng.uniform(-1, 1, (1, 2, 3, 4, 4)).astype(np.float32)
    between = run(RESIDUAL, 0.0, "interpolate", keys)[:, :6]  # frames 1..6
    for f in range(1, 7):
        np.testing.assert_allclose(
            between[:, f - 1], keys[:, 0] + (keys[:, 1] - keys[:, 0]) * f / 7, atol=1e-6
        )


def test_a_residual_models_frames_are_clipped_to_the_pixel_range_not_its_residual():
    given = np.full((1, 2, 3, 4, 4), -0.5, np.float32)
    # the network claims +3 everywhere: frames are -0.5 + 3 clipped to 1, not -0.5 + 1
    np.testing.assert_array_equal(run(RESIDUAL, 3.0, "predict", given), 1.0)
    np.testing.assert_array_equal(run(RESIDUAL, -3.0, "predict", given), -1.0)


class NoChange(torch.nn.Module):
    """A network answering the v of x0 = 0 (x_t is then sigma eps): v = alpha / sigma x_t."""

    def __init__(self):
        super().__init__()
        self.zero = torch.nn.Parameter(torch.zeros(()))
        self.abar = torch.from_numpy(full_alphas_cumprod(ScheduleSpec())).float()

    def forward(self, x_t, t, cond, prev):
        ab = self.abar[t].view(-1, 1, 1, 1)
        return (ab.sqrt() / (1 - ab).sqrt()) * x_t + self.zero


@pytest.mark.parametrize("task", ["prediction", "interpolation"])
def test_where_the_baseline_is_exact_a_residual_model_regresses_no_change(task):
    # prediction: a still clip; interpolation: a clip fading linearly from one image to another,
    # which the cross-fade of each window's own end frames (stage 2: frames 6 and 13) reproduces
    rng = np.random.default_rng(2)
    a, b = rng.uniform(-1, 1, (2, 1, 1, 3, 16, 16)).astype(np.float32)
    fade = np.arange(14, dtype=np.float32).reshape(1, 14, 1, 1, 1) / 13
    clip = a + (b - a) * fade if task == "interpolation" else np.repeat(a, 14, axis=1)
    clips = np.repeat(clip, 2, axis=0)  # (2, 14, 3, 16, 16)
    cfg = TrainConfig(batch_size=2, task_weights={task: 1.0})
    residual = replace(preset("tiny"), image_size=16, residual=True)
    out = TwoStageStep(residual, cfg, torch.device("cpu"))(NoChange(), clips, 0, 0)
    assert out.loss1 < 1e-5 and out.loss2 < 1e-5
    torch.testing.assert_close(out.x0_hat, torch.from_numpy(stack_window(clips[:, :8])))
    # the same network trained on the window itself (x0 = the frames) is far off
    plain = TwoStageStep(replace(residual, residual=False), cfg, torch.device("cpu"))
    assert plain(NoChange(), clips, 0, 0).loss1 > 0.05


def test_a_bundle_records_whether_its_model_is_residual(tmp_path_factory, tmp_path):
    bundle = Path(export_tiny_bundle(tmp_path_factory, residual=True))
    assert load_manifest(bundle).model.residual is True
    assert "of the residual from the condition frames" in describe(bundle, "ddpm", 10)
    older = tmp_path / "older.lgcvd"  # a bundle written before the field existed
    shutil.copytree(bundle, older)
    manifest = json.loads((older / MANIFEST).read_text())
    del manifest["model"]["residual"]
    (older / MANIFEST).write_text(json.dumps(manifest))
    # the graphs of this new export record residual=true (bound fields), so only the manifest's
    # reading is checked here, without verifying the graphs against it
    assert load_manifest(older, verify=False).model.residual is False
