"""`lgcvd-run bench` with --compare and --live: the rows of one run, each at its plan, in the
order given; the live stream's forecast ages; a bad SPEC is one line before anything loads."""

from __future__ import annotations

import json

import pytest
from conftest import export_tiny_bundle
from test_cli import one_line_error, run
from test_plans import student_bundle

from lgcvd_runtime.cli.bench import SPEC_FORMS

TIMED = ["--backend", "onnxruntime", "--repeats", 1, "--seed", 0]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


def rows_of(*args) -> list[dict]:
    result = run("bench", *TIMED, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_each_compare_adds_a_row_at_its_plan_in_the_order_given(bundle):
    compare = ["--compare", "ddim:3", "--compare", "dpmpp:4", "--compare", "ddpm:2:trailing"]
    rows = rows_of("--model", bundle, "--steps", 2, *compare)
    plans = [(r["bundle"], r["sampler"], r["steps"], r["plan"]) for r in rows]
    assert plans == [
        (bundle, "ddpm", 2, "options"),
        (bundle, "ddim", 3, "options"),
        (bundle, "dpmpp", 4, "options"),
        (bundle, "ddpm", 2, "options"),
    ]
    assert rows[1]["timesteps"] == [0, 500, 999]  # 3 steps evenly over T = 1000, from t = 0
    assert rows[0]["timesteps"] == [0, 999] and rows[3]["timesteps"] == [499, 999]  # trailing
    for r in rows:
        assert 0 < r["window_ms"]["median"] <= r["window_ms"]["p90"] and r["live"] is None
        assert r["frames_per_second"] == pytest.approx(6 / (r["window_ms"]["median"] / 1e3))


def test_a_bundle_row_runs_its_recorded_plan_and_a_plan_spec_overrides_it(bundle, tmp_path_factory):
    student = str(student_bundle(tmp_path_factory))
    result = run(
        "bench", *TIMED, "--json", "--model", bundle, "--steps", 2,
        "--compare", student, "--compare", f"{student}:dpmpp:3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["bundle"], r["sampler"], r["steps"], r["plan"]) for r in rows] == [
        (bundle, "ddpm", 2, "options"),
        (student, "ddim", 2, "bundle"),
        (student, "dpmpp", 3, "options"),
    ]
    assert rows[1]["timesteps"] == [499, 999]  # the distilled plan, not respaced (0, 999)
    assert result.stderr.count("warning:") == 1  # only the student overridden by its SPEC


def test_the_table_has_a_row_per_model_and_says_the_memory_is_the_runs(bundle):
    result = run("bench", *TIMED, "--model", bundle, "--steps", 2, "--compare", "ddim:3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    name = bundle.rsplit("/", 1)[-1]
    assert lines[0].split()[:4] == ["bundle", "sampler", "steps", "plan"]
    assert lines[1].split()[:5] == [name, "ddpm", "2", "as", "given"]
    assert lines[2].split()[:5] == [name, "ddim", "3", "as", "given"]
    assert lines[1].split()[-1] == "1.00x"
    assert "the whole run's (every row, one process)" in lines[-1]


def test_live_reads_forecasts_younger_than_the_run(bundle):
    seconds = 1.5
    row = run("bench", *TIMED, "--json", "--model", bundle, "--steps", 2, "--live", 20,
              "--live-seconds", seconds, "--score-every", 3)  # fmt: skip
    assert row.exit_code == 0, row.output
    live = json.loads(row.stdout)["live"]  # one row: one object, as without --live
    assert (live["hz"], live["seconds"], live["pushes"]) == (20, seconds, 30)
    assert live["score_every"] == 3 and 0 < live["push_ms"]["median"] < 1e3
    assert live["forecasts"] > 0 and live["skipped"] >= 0
    age = live["age_ms"]
    assert 0 <= age["median"] <= age["p90"] < seconds * 1e3


def test_live_adds_the_age_columns_to_the_table(bundle):
    result = run("bench", *TIMED, "--model", bundle, "--steps", 2, "--live", 20,
                 "--live-seconds", 0.5)  # fmt: skip
    assert result.exit_code == 0, result.output
    head, row = result.stdout.splitlines()[:2]
    assert head.split()[-4:] == ["ms", "p90", "forecasts", "skipped"]
    assert int(row.split()[-2]) > 0  # forecasts


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("ddim:x", "steps 'x' is not a whole number"),
        ("nosuch:4", "'nosuch' is not a sampler (ddpm, ddim, dpmpp, dpmpp-sde)"),
        ("some.lgcvd:ddpm:", "steps '' is not a whole number"),
        ("ddpm:x:trailing", "steps 'x' is not a whole number"),
        ("2:trailing", "'' is not a sampler (ddpm, ddim, dpmpp, dpmpp-sde)"),
    ],
)
def test_a_bad_spec_is_one_line_before_any_model_loads(spec, why, tmp_path):
    missing = tmp_path / "gone.lgcvd"  # --model's error would come first if it loaded
    result = run("bench", *TIMED, "--model", missing, "--compare", spec)
    assert one_line_error(result) == f"Error: --compare {spec}: {why}; give {SPEC_FORMS}"


def test_a_missing_compare_bundle_is_named_in_one_line(bundle, tmp_path):
    missing = tmp_path / "gone.lgcvd"
    result = run("bench", *TIMED, "--model", bundle, "--steps", 2, "--compare", missing)
    assert one_line_error(result) == (
        f"Error: --compare {missing}: no such bundle directory; pass a NAME.lgcvd "
        "folder from lgcvd-export"
    )


def test_live_needs_a_positive_rate(bundle):
    result = run("bench", *TIMED, "--model", bundle, "--live", 0)
    assert result.exit_code == 2 and "Invalid value for '--live'" in result.stderr
