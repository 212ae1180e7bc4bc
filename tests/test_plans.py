"""A bundle knows how it was distilled: a student's checkpoint records its plan (sampler, steps,
exact timesteps, teacher), export writes it into the manifest (format 3) and binds it to the
graphs, and every entry point runs it unless told otherwise; an override warns once."""

from __future__ import annotations

import copy
import json
import shutil
import sys
import types
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from conftest import MODEL_SEED, export_tiny_bundle, random_model

import lgcvd_runtime
from lgcvd_runtime import api
from lgcvd_runtime.bundle import FORMAT_VERSION, load_manifest, sha256_file
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.errors import BundleError, LgcvdError
from lgcvd_runtime.plans import DEFAULT_PLAN, PlanError, SamplerPlan, choose, read_plan
from lgcvd_runtime.samplers import SAMPLERS
from lgcvd_runtime.serve.repository import RepoOptions, write_repository
from lgcvd_train.config import TrainConfig

TEACHER = {"checkpoint": "/far/away/runs/teacher/checkpoint.safetensors", "step": 100}
PLAN = {"sampler": "ddim", "steps": 2, "timesteps": [499, 999], "teacher": TEACHER}
STUDENT = SamplerPlan("ddim", 2, (499, 999), TEACHER)  # respace(2) would be (0, 999)
OVERRIDE = (
    "warning: sampling with ddim 3 steps, not the ddim 2 steps this model was distilled for: "
    "its forecasts may be worse (leave sampler, steps and spacing unset to use its plan)"
)
DEMO = Path(lgcvd_runtime.__file__).parent / "assets" / "demo.mkv"


def export_student(folder: Path, plan=PLAN) -> Path:
    """The tiny random model saved as a checkpoint whose state records `plan`, exported."""
    from lgcvd_export import ExportOptions, export_bundle
    from lgcvd_train.checkpoint import load_model, save_checkpoint

    model = random_model(MODEL_SEED)
    optimizer = torch.optim.Adam(model.parameters())
    extra = {"data": "random", "plan": plan}
    ckpt_file = save_checkpoint(
        folder / "student-run", model, copy.deepcopy(model), optimizer, 0, TrainConfig(), extra
    )
    ema, ckpt = load_model(ckpt_file)
    bundle = folder / "student.lgcvd"
    export_bundle(ema, ckpt, ckpt_file, bundle, ExportOptions(max_batch=4), echo=lambda _: None)
    return bundle


def student_bundle(tmp_path_factory) -> Path:
    """The tiny model exported as a student distilled for PLAN, once per test session; its
    checkpoint is the run folder `student-run` beside it."""
    folder = tmp_path_factory.getbasetemp() / "student"
    if not (folder / "student.lgcvd").exists():
        folder.mkdir(exist_ok=True)
        export_student(folder)
    return folder / "student.lgcvd"


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return student_bundle(tmp_path_factory)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return Path(export_tiny_bundle(tmp_path_factory))


# -- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sampler", "steps", "recorded", "plan", "source", "warned"),
    [
        (None, None, None, DEFAULT_PLAN, "default", False),
        (None, None, STUDENT, STUDENT, "bundle", False),
        ("dpmpp", None, None, replace(DEFAULT_PLAN, sampler="dpmpp"), "options", False),
        (None, 3, STUDENT, SamplerPlan("ddim", 3), "options", True),
        ("ddpm", None, STUDENT, SamplerPlan("ddpm", 2, (499, 999)), "options", True),
        ("ddim", 2, STUDENT, STUDENT, "options", False),
    ],
)
def test_an_option_beats_the_bundles_plan_which_beats_the_default(
    sampler, steps, recorded, plan, source, warned
):
    choice = choose(sampler, steps, recorded)
    assert (choice.plan, choice.source, choice.warning is not None) == (plan, source, warned)


def test_overriding_a_students_steps_says_so_in_one_line():
    assert choose(None, 3, STUDENT).warning == OVERRIDE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timesteps": [499, 1000]}, "timesteps must lie in 0..999, got [499, 1000]"),
        ({"timesteps": [999, 499]}, "timesteps must be strictly ascending, got [999, 499]"),
        ({"steps": 3}, "steps is 3 but 2 timesteps are given"),
        ({"sampler": "euler"}, f"sampler 'euler' is not one of {', '.join(SAMPLERS)}"),
        (
            {"timesteps": [499.5, 999]},
            "timesteps must be a list of whole numbers, got [499.5, 999]",
        ),
        ({"teacher": "x"}, "teacher must be a JSON object, got 'x'"),
    ],
)
def test_a_plan_that_cannot_run_names_its_fault(change, message):
    with pytest.raises(PlanError) as err:
        read_plan({**PLAN, **change}, 1000)
    assert str(err.value) == message


# -- the bundle -------------------------------------------------------------------------------


def test_export_records_the_plan_its_teacher_made_portable_and_binds_it(student):
    manifest = json.loads((student / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 3
    teacher = {"checkpoint": "teacher/checkpoint.safetensors", "step": 100}
    assert manifest["plan"] == {**PLAN, "teacher": teacher}
    bound = {"sampler": "ddim", "steps": 2, "timesteps": [499, 999]}
    for graph in manifest["graphs"].values():
        meta = {p.key: p.value for p in onnx.load(str(student / graph["file"])).metadata_props}
        assert json.loads(meta["lgcvd.plan"]) == bound


def edited(bundle: Path, folder: Path, edit) -> Path:
    copy_ = folder / "edited.lgcvd"
    shutil.copytree(bundle, copy_)
    manifest = json.loads((copy_ / "manifest.json").read_text())
    edit(manifest)
    (copy_ / "manifest.json").write_text(json.dumps(manifest))
    return copy_


@pytest.mark.parametrize(
    ("change", "fault"),
    [
        ({"timesteps": [0, 1000]}, "timesteps must lie in 0..999, got [0, 1000]"),
        ({"timesteps": [999, 0]}, "timesteps must be strictly ascending, got [999, 0]"),
        ({"steps": 4}, "steps is 4 but 2 timesteps are given"),
        ({"sampler": "euler"}, f"sampler 'euler' is not one of {', '.join(SAMPLERS)}"),
    ],
)
def test_a_version_3_bundle_with_a_bad_plan_is_refused_in_one_line(
    student, tmp_path, change, fault
):
    bundle = edited(student, tmp_path, lambda m: m["plan"].update(change))
    result = CliRunner().invoke(run_main, ["info", "--model", str(bundle)])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {bundle / 'manifest.json'}: bad plan ({fault}); export the bundle again\n"
    )


def test_an_edited_plan_that_could_run_is_refused_as_edited(student, tmp_path):
    bundle = edited(student, tmp_path, lambda m: m["plan"].update(timesteps=[0, 999]))
    with pytest.raises(BundleError) as err:
        load_manifest(bundle)
    assert str(err.value) == (
        f"{bundle / 'manifest.json'}: plan is "
        '{"sampler": "ddim", "steps": 2, "timesteps": [0, 999]} in the manifest but '
        '{"sampler": "ddim", "steps": 2, "timesteps": [499, 999]} in context.onnx; the '
        "manifest was edited, export the bundle again"
    )


def test_a_plan_added_to_a_teachers_manifest_is_refused(teacher, tmp_path):
    bundle = edited(teacher, tmp_path, lambda m: m.update(plan=PLAN))
    with pytest.raises(BundleError) as err:
        load_manifest(bundle)
    assert " in the manifest but null in context.onnx; the manifest was edited" in str(err.value)


def as_version_2(bundle: Path, folder: Path) -> Path:
    """`bundle` as format 2 wrote it: no plan in the manifest or the graphs' metadata."""
    old = folder / "v2.lgcvd"
    shutil.copytree(bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for graph in manifest["graphs"].values():
        model = onnx.load(str(old / graph["file"]))
        keep = [(p.key, p.value) for p in model.metadata_props if p.key != "lgcvd.plan"]
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, dict(keep))
        onnx.save(model, str(old / graph["file"]))
        graph["sha256"] = sha256_file(old / graph["file"])
    manifest["format_version"] = 2
    del manifest["plan"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    return old


def test_version_2_and_3_bundles_load_and_a_version_2_plan_is_refused(teacher, tmp_path):
    assert load_manifest(teacher).format_version == 3 and load_manifest(teacher).plan is None
    old = as_version_2(teacher, tmp_path)
    assert load_manifest(old).format_version == 2 and load_manifest(old).plan is None
    with_plan = edited(old, tmp_path / "p", lambda m: m.update(plan=PLAN))
    with pytest.raises(BundleError) as err:
        load_manifest(with_plan)
    assert str(err.value) == (
        f"{with_plan / 'manifest.json'}: bad plan (format version 2 has no plan, 3 does); "
        "export the bundle again"
    )


def test_the_shipped_version_2_bundle_loads_with_the_default_plan():
    model = api.load(backend="onnxruntime")
    assert model.manifest.format_version == 2 and model.manifest.plan is None
    assert (model.plan.plan, model.plan.source) == (DEFAULT_PLAN, "default")


# -- the entry points -------------------------------------------------------------------------


def test_the_library_runs_exactly_the_students_timesteps(student):
    model = api.load(student, backend="onnxruntime", seed=0)
    seen: list[float] = []
    denoise = model.backend.denoise
    model.pipeline.backend.denoise = lambda x, t, *rest: (
        seen.append(float(t[0])) or denoise(x, t, *rest)
    )
    frames = np.zeros((2, model.size, model.size, 3), np.uint8)
    list(model.predict(frames, n=model.manifest.model.new_frames))
    assert seen == [999.0, 499.0]
    assert (model.plan.plan, model.plan.source) == (STUDENT, "bundle")


def test_the_library_warns_once_when_told_other_steps(student):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = api.load(student, backend="onnxruntime", steps=3, seed=0)
        list(model.predict(np.zeros((2, model.size, model.size, 3), np.uint8), n=12))
    plans = [w for w in caught if issubclass(w.category, api.PlanWarning)]
    assert [str(w.message) for w in plans] == [OVERRIDE]
    assert model.pipeline.settings.plan.steps == 3
    lines: list[str] = []
    api.load(student, backend="onnxruntime", steps=3, warn=lines.append)
    assert lines == [OVERRIDE]


def run(*args) -> object:
    return CliRunner().invoke(run_main, [str(a) for a in args])


def test_lgcvd_run_predicts_with_the_plan_and_warns_once_even_if_quiet(student, tmp_path):
    args = ["predict", DEMO, "-n", 12, "--model", student, "--backend", "onnxruntime"]
    plain = run(*args, "-o", tmp_path / "a.mkv", "--quiet")
    assert plain.exit_code == 0 and plain.stderr == ""
    told = run(*args, "-o", tmp_path / "b.mkv", "--quiet", "--steps", 3)
    assert told.exit_code == 0 and told.stderr == OVERRIDE + "\n"


def test_lgcvd_run_bench_times_the_bundles_plan_unless_told(student):
    base = ["bench", "--model", student, "--backend", "onnxruntime", "--repeats", 1, "--json"]
    report = json.loads(run(*base).stdout)
    assert (report["sampler"], report["steps"], report["timesteps"]) == ("ddim", 2, [499, 999])
    assert report["plan"] == "bundle"
    told = run(*base, "--sampler", "dpmpp")
    assert json.loads(told.stdout)["plan"] == "options" and told.stderr.count("warning:") == 1


def test_lgcvd_run_info_shows_the_plan_and_where_it_came_from(student, teacher):
    lines = run("info", "--model", student).stdout.splitlines()
    assert (
        "sampling    ddim, 2 steps at t = 499, 999 (the plan the bundle was distilled for)" in lines
    )
    assert (
        "distilled   for ddim 2 steps at t = [499, 999], from teacher/checkpoint.safetensors"
        in lines
    )
    told = run("info", "--model", student, "--steps", 3).stdout
    assert "ddim, 3 steps at t = 0, 500, 999 (as given; the bundle was distilled for ddim 2" in told
    plain = run("info", "--model", teacher).stdout
    assert (
        "sampling    ddpm, 12 steps over t = 82, 166, 249, 332, ..., 832, 916, 999 (the default: "
        in plain
    )


def test_the_help_says_where_the_plan_comes_from():
    text = " ".join(run("predict", "--help").stdout.split())
    assert "[default: the bundle's plan, else ddpm 12]" in text
    assert "Denoising steps per window [default: the bundle's plan, else 12]" in text
    assert "[default: the bundle's plan, else trailing for 12 steps, even for other counts]" in text


def test_lgcvd_eval_runs_each_model_on_its_own_plan_and_records_it(student, tmp_path):
    from lgcvd_train.evaluate import main as eval_main

    out = tmp_path / "eval"
    args = ["--data", "shapes", "--clips", 2, "-p", 2, "-n", 6, "--no-lpips", "--no-fvd"]
    models = ["--model", f"b={student}", "--model", f"c={student.with_name('student-run')}"]
    result = CliRunner().invoke(eval_main, [str(a) for a in [*args, *models, "--out", out]])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    plan = {"sampler": "ddim", "steps": 2, "name": "ddim 2 steps", "spacing": None}
    plan |= {"timesteps": [499, 999], "source": "bundle"}
    assert report["models"]["b"]["plan"] == report["models"]["c"]["plan"] == plan
    assert "2 clips, p=2, n=6, 1 sample per clip, ddim 2 steps, seed 0" in result.stdout


def served_timesteps(repo: Path, params: dict, monkeypatch) -> list[int]:
    """The timesteps the repository's lgcvd model samples at, built from config `params` (the
    Triton Python backend's own module stubbed: only `initialize` runs)."""
    from lgcvd_runtime.serve.triton_models import PipelineModel

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("pb"))
    model = PipelineModel()
    config = {"parameters": {k: {"string_value": v} for k, v in params.items()}}
    model.initialize(
        {
            "model_config": json.dumps(config),
            "model_repository": str(repo / "lgcvd"),
            "model_version": "1",
        }
    )
    return model.model.pipeline.settings.plan.timesteps.tolist()


def test_a_triton_repository_serves_the_students_timesteps(student, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    write_repository(student, repo, RepoOptions(graphs="python"))
    config = (repo / "lgcvd" / "config.pbtxt").read_text()
    assert (
        'string_value: "ddim"' in config
        and 'key: "steps"\n    value: { string_value: "2"' in config
    )
    params = {"sampler": "ddim", "steps": "2", "graphs": "context,denoiser"}
    assert served_timesteps(repo, params, monkeypatch) == [499, 999]
    with pytest.warns(api.PlanWarning, match="not the ddim 2 steps"):
        write_repository(student, tmp_path / "r3", RepoOptions(graphs="python", steps=3))


def test_export_refuses_a_checkpoint_whose_plan_cannot_run(tmp_path):
    with pytest.raises(LgcvdError) as err:
        export_student(tmp_path, {**PLAN, "timesteps": [999, 499]})
    assert str(err.value) == (
        f"{tmp_path / 'student-run' / 'checkpoint.safetensors'}: bad plan (timesteps must be "
        "strictly ascending, got [999, 499]); distil the student again"
    )
    assert not (tmp_path / "student.lgcvd").exists()
