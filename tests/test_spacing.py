"""The steps' grid is part of a plan (`--spacing`, `plans.SamplerPlan.spacing`): even from t = 0,
trailing above it, or uniform in log-SNR; an option beats the bundle's plan, which beats the
default, field by field, and every entry point (library, lgcvd-run, lgcvd-eval, the Triton
repository) samples on the grid it was given."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import error_line, export_tiny_bundle
from test_plans import DEMO, STUDENT, served_timesteps, student_bundle

from lgcvd_runtime import api, plans
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.plans import DEFAULT_PLAN, SamplerPlan, choose
from lgcvd_runtime.serve.repository import RepoOptions, write_repository

# trailing: t_k = round(1000 k / S) - 1 by hand; log-snr: golden, from `spaced_timesteps`
TRAILING_4, TRAILING_2, LOG_SNR_4 = [249, 499, 749, 999], [499, 999], [44, 503, 950, 995]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return student_bundle(tmp_path_factory)


@pytest.mark.parametrize(
    ("steps", "spacing", "recorded", "plan", "warned"),
    [
        (None, "trailing", None, replace(DEFAULT_PLAN, spacing="trailing"), False),
        (2, "trailing", None, SamplerPlan("ddpm", 2, spacing="trailing"), False),
        (None, None, None, DEFAULT_PLAN, False),
        (None, "even", STUDENT, SamplerPlan("ddim", 2), True),  # the recorded timesteps go
        (2, None, STUDENT, STUDENT, False),  # same steps, no grid given: the recorded ones stay
    ],
)
def test_a_given_spacing_beats_the_bundles_timesteps_and_the_default_grid(
    steps, spacing, recorded, plan, warned
):
    choice = choose(None, steps, recorded, spacing)
    assert (choice.plan, choice.plan.timesteps, choice.warning is not None) == (
        plan,
        plan.timesteps,
        warned,
    )


@pytest.mark.parametrize(
    ("sampler", "steps", "plan"),
    [
        (None, None, SamplerPlan("ddpm", 2, spacing="trailing")),
        ("ddim", None, SamplerPlan("ddim", 2, spacing="trailing")),
        (None, 2, SamplerPlan("ddpm", 2, spacing="trailing")),
        (None, 10, SamplerPlan("ddpm", 10)),  # another count: the even grid, as ever
    ],
)
def test_a_default_grid_goes_with_the_defaults_step_count(sampler, steps, plan, monkeypatch):
    monkeypatch.setattr(plans, "DEFAULT_PLAN", SamplerPlan("ddpm", 2, spacing="trailing"))
    chosen = choose(sampler, steps, None).plan
    assert (chosen, chosen.spacing, chosen.timesteps) == (plan, plan.spacing, None)


def test_a_students_grid_overridden_alone_is_named_in_the_warning():
    assert choose(None, None, STUDENT, "even").warning == (
        "warning: sampling with ddim 2 steps on the even grid, not the ddim 2 steps this model "
        "was distilled for: its forecasts may be worse (leave sampler, steps and spacing unset "
        "to use its plan)"
    )


@pytest.mark.parametrize(
    ("sampler", "spacing", "grid"),
    [("ddim", "trailing", TRAILING_4), ("dpmpp-sde", "log-snr", LOG_SNR_4), ("ddim", "even", None)],
)
def test_the_library_calls_the_denoiser_at_the_grids_timesteps(bundle, sampler, spacing, grid):
    model = api.load(bundle, "onnxruntime", sampler, 4, seed=0, spacing=spacing)
    seen: list[float] = []
    denoise = model.backend.denoise
    model.pipeline.backend.denoise = lambda x, t, *rest: (
        seen.append(float(t[0])) or denoise(x, t, *rest)
    )
    list(model.predict(np.zeros((2, model.size, model.size, 3), np.uint8), n=6))
    assert seen == [float(t) for t in reversed(grid or [0, 333, 666, 999])]
    assert model.plan.plan.spacing == spacing and model.pipeline.settings.sampler == sampler


def run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def test_lgcvd_run_info_shows_the_grid_and_refuses_one_that_cannot_be_built(bundle):
    lines = run("info", "--model", bundle, "--steps", 2, "--spacing", "trailing").stdout
    assert "sampling    ddpm, 2 steps at t = 499, 999 (as given; the bundle records no plan)" in (
        lines.splitlines()
    )
    crowded = run("info", "--model", bundle, "--steps", 999, "--spacing", "log-snr")
    assert crowded.exit_code == 1
    assert error_line(crowded) == (
        "999 steps uniform in log-SNR put two on one timestep; use fewer"
    )
    unknown = run("info", "--model", bundle, "--spacing", "odd")
    assert unknown.exit_code == 2 and "'odd' is not one of 'even', 'trailing', 'log-snr'" in (
        unknown.output
    )


def test_the_library_refuses_an_unknown_spacing_in_one_line(bundle):
    with pytest.raises(api.LgcvdError) as err:
        api.load(bundle, "onnxruntime", spacing="odd")
    assert str(err.value) == "unknown spacing 'odd'; choose one of even, trailing, log-snr"


def test_lgcvd_run_predict_on_a_grid_equals_the_library(bundle, tmp_path):
    from lgcvd_runtime.media.video import read_frames

    def library(**plan) -> np.ndarray:  # lgcvd-run's --seed seeds the model, as here
        model = api.load(bundle, "onnxruntime", seed=3, **plan)
        return np.concatenate([w.frames[0] for w in model.predict(given, 6)])

    out = tmp_path / "p.mkv"
    plan = ["--steps", 2, "--spacing", "trailing", "--seed", 3, "--backend", "onnxruntime"]
    result = run("predict", DEMO, "-n", 6, "--model", bundle, "-o", out, "--quiet", *plan)
    assert result.exit_code == 0, result.output
    given = read_frames(DEMO, count=2, size=32)
    written = read_frames(out)[2:]  # lossless: the given frames, then the forecast
    assert np.array_equal(written, library(steps=2, spacing="trailing"))
    assert not np.array_equal(written, library(steps=2))  # the even grid forecasts otherwise


def test_lgcvd_eval_runs_bundles_and_checkpoints_on_the_given_grid(student, tmp_path):
    from lgcvd_train.evaluate import main as eval_main

    out = tmp_path / "eval"
    args = ["--data", "shapes", "--clips", 2, "-p", 2, "-n", 6, "--no-lpips", "--no-fvd"]
    models = ["--model", f"b={student}", "--model", f"c={student.with_name('student-run')}"]
    grid = ["--steps", 4, "--spacing", "trailing"]
    result = CliRunner().invoke(eval_main, [str(a) for a in [*args, *models, *grid, "--out", out]])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    plan = {"sampler": "ddim", "steps": 4, "name": "ddim 4 trailing steps"}
    plan |= {"spacing": "trailing", "timesteps": None, "source": "options"}
    assert report["models"]["b"]["plan"] == report["models"]["c"]["plan"] == plan


def test_a_triton_repository_serves_the_given_grid(bundle, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    write_repository(bundle, repo, RepoOptions(graphs="python", steps=2, spacing="trailing"))
    config = (repo / "lgcvd" / "config.pbtxt").read_text()
    assert 'key: "spacing"\n    value: { string_value: "trailing"' in config
    assert "sampler ddpm with 2 steps on the trailing grid" in (repo / "README.md").read_text()
    params = {"sampler": "ddpm", "steps": "2", "spacing": "trailing", "graphs": "context,denoiser"}
    assert served_timesteps(repo, params, monkeypatch) == TRAILING_2


def test_a_students_repository_names_no_grid(student, tmp_path):
    repo = tmp_path / "repo"
    write_repository(student, repo, RepoOptions(graphs="python"))
    config = (repo / "lgcvd" / "config.pbtxt").read_text()
    assert 'key: "spacing"\n    value: { string_value: ""' in config
    assert "at the recorded timesteps" in (repo / "README.md").read_text()
