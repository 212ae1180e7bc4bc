"""`lgcvd-run info` through click's CliRunner: a bundle's essentials first (model, plan, input
score, backends), a short provenance, and the whole provenance tree on request."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import export_tiny_bundle

from lgcvd_runtime.cli import info
from lgcvd_runtime.cli import run as cli


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


def run(*args) -> object:
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def test_info_describes_bundle_plan_and_backends(bundle):
    result = run("info", "--model", bundle, "--sampler", "ddpm", "--steps", 100)
    assert result.exit_code == 0, result.output
    assert "window N=8, K=2 condition slots, 6 new frames" in result.stdout
    assert "sampling    ddpm, 100 steps over t = 0, 10, 20, 30, ..., 979, 989, 999" in result.stdout
    assert "backend     onnxruntime: available" in result.stdout
    assert "input score not calibrated: no warning for inputs unlike the training data" in (
        result.stdout
    )


def test_info_puts_model_plan_score_and_backends_first_and_summarises_provenance():
    result = run("info")  # the shipped model, fine-tuned three times
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) <= 25
    labels = [line[:12].strip() for line in lines]
    plan = labels.index("sampling")
    assert labels[:plan] == ["bundle", "frames", "time", "model", "graph", "graph"]
    assert lines[2].startswith("time        frame period 0.05 s (20 Hz)")  # pushsim's rate
    assert labels[plan + 1] == "input score" and lines[plan + 1].endswith(
        "warns above 5.403, the 99th percentile on 128 held-out clips of "
        "data/pushsim_calib.npy (50th 4.234, 95th 5.0008, 99th 5.403)"
    )
    assert lines[-5:] == [
        "trained     on data/pushsim_train.npy (640 videos)",
        "steps       6000 (checkpoint runs/tune3/checkpoint.safetensors)",
        "fine-tuned  from lgcvd_runtime/assets/default.lgcvd",
        lines[-2],
        "provenance  all of it: lgcvd-run info --provenance",
    ]
    assert lines[-2].startswith("exported    with lgcvd ")


def test_info_prints_nested_provenance_as_an_indented_tree_on_request(bundle):
    result = run("info", "--model", bundle, "--provenance")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) < 200
    start = next(i for i, line in enumerate(lines) if line.startswith("provenance  "))
    assert lines[start].startswith("provenance  checkpoint: ")
    config = lines.index(" " * 12 + "training_config:")
    assert lines[config + 1] == " " * 14 + "steps: 200"
    assert " " * 16 + "prediction: 0.45" in lines  # task_weights, one level deeper
    assert " " * 14 + "mults: [1, 2]" in lines  # a list of numbers stays on one line


def test_a_provenance_tree_nests_mappings_and_lists():
    history = {"a": 1, "b": {"c": None, "d": [1, 2]}, "e": [{"f": 3}, {"g": {}}], "h": []}
    assert info.tree(history) == [
        "a: 1",
        "b:",
        "  c: none",
        "  d: [1, 2]",
        "e:",
        "  - f: 3",
        "  - g: {}",
        "h: []",
    ]
