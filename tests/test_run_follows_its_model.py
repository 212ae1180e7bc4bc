"""A run's rules travel with it: the schedule it trains with, and the data of a resumed or
fine-tuned run, come from the config it records, never from command-line defaults.

- The noise schedule is `TrainConfig.schedule`: the trainer's tables are built from it, the
  checkpoint records it, the exported bundle's manifest carries it, a resumed run keeps it and a
  run fine-tuned from another model takes that model's.
- `lgcvd-train --resume` and `--init-from` load the data at the resolution of the model they
  will train; a --preset (or --no-context, --parameterization, data option) that contradicts
  the recorded model is a one-line error.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_training import moving_squares

from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.schedule import ScheduleSpec
from lgcvd_train import trainer as trainer_module
from lgcvd_train.checkpoint import load_checkpoint, load_model
from lgcvd_train.cli import main
from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.trainer import Trainer

SPEC = ScheduleSpec(T=400, s=0.02)  # neither the default T nor the default cosine offset


def cosine_alpha_bar(t: int, spec: ScheduleSpec) -> float:
    """abar after step t, written from Nichol & Dhariwal's definition f(u) / f(0) with
    f(u) = cos^2((u + s) / (1 + s) * pi / 2), u = (t + 1) / T (the beta clip acts only near T)."""

    def f(u: float) -> float:
        return math.cos((u + spec.s) / (1 + spec.s) * math.pi / 2) ** 2

    return f((t + 1) / spec.T) / f(0.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-step tiny run trained with SPEC, and its Trainer."""
    run = tmp_path_factory.mktemp("schedule") / "run"
    cfg = TrainConfig(steps=1, batch_size=1, schedule=SPEC, amp=False)
    trainer = Trainer(preset("tiny"), cfg, moving_squares(1), run, {}, progress=False)
    trainer.fit()
    return run, trainer


def test_the_trainer_noises_with_the_configured_schedule(trained):
    _, trainer = trained
    sched = trainer.step_fn.sched
    assert sched.T == SPEC.T and len(sched.alpha) == SPEC.T
    for t in (0, 10, 100, 199, 300):
        want = cosine_alpha_bar(t, SPEC)
        assert sched.alpha[t].item() ** 2 == pytest.approx(want, rel=1e-5)
        assert sched.sigma[t].item() ** 2 == pytest.approx(1 - want, rel=1e-4)
    assert cosine_alpha_bar(100, SPEC) != pytest.approx(cosine_alpha_bar(100, ScheduleSpec()))


def test_the_checkpoint_records_the_schedule_trained_with(trained):
    run, _ = trained
    assert load_checkpoint(run).schedule == SPEC
    readable = json.loads((run / "checkpoint.json").read_text())
    assert readable["train_config"]["schedule"] == SPEC.to_dict()


def test_a_config_written_before_it_held_a_schedule_reads_as_the_default():
    old = TrainConfig().to_dict()
    del old["schedule"]
    assert TrainConfig.from_dict(old).schedule == ScheduleSpec()
    assert TrainConfig.from_dict(TrainConfig(schedule=SPEC).to_dict()).schedule == SPEC


def test_a_config_written_before_the_loss_weighting_reads_as_unweighted():
    # min-SNR became the default later; a run recorded before that trained every t alike
    old = TrainConfig().to_dict()
    del old["loss_weighting"]
    assert TrainConfig().loss_weighting == "min-snr"
    assert TrainConfig.from_dict(old).loss_weighting == "none"
    recorded = TrainConfig(loss_weighting="min-snr").to_dict()
    assert TrainConfig.from_dict(recorded).loss_weighting == "min-snr"


def test_the_exported_bundle_carries_the_schedule_trained_with(trained):
    from lgcvd_export import ExportOptions, export_bundle

    run, _ = trained
    model, ckpt = load_model(run)
    bundle = run.parent / "b.lgcvd"
    export_bundle(model, ckpt, run, bundle, ExportOptions(max_batch=1), echo=lambda _: None)
    assert json.loads((bundle / "manifest.json").read_text())["schedule"] == SPEC.to_dict()
    assert load_manifest(bundle).schedule == SPEC


def test_a_resumed_run_keeps_its_schedule(trained):
    run, _ = trained
    longer = TrainConfig(steps=2, batch_size=1, amp=False)  # the default schedule, as the CLI's
    resumed = Trainer(preset("tiny"), longer, moving_squares(1), run, {}, resume=True)
    assert resumed.step_fn.sched.T == SPEC.T
    resumed.fit()
    assert load_checkpoint(run).schedule == SPEC


def test_a_run_fine_tuned_from_a_checkpoint_keeps_its_schedule(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "tuned"
    args = ["--data", "shapes", "--num-videos", "2", "--steps", "1", "--batch-size", "1"]
    result = CliRunner().invoke(
        main, [*args, "--out", str(out), "--init-from", str(run), "--quiet", "--no-amp"]
    )
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).schedule == SPEC


# --resume / --init-from: the data follow the recorded model ----------------------------------


@pytest.fixture
def data_sizes(monkeypatch):
    """The frame size of the clips each Trainer is built with."""
    sizes = []
    build = trainer_module.Trainer.__init__

    def spy(self, mcfg, tcfg, videos, *args, **kwargs):
        sizes.append({np.shape(v)[1:3] for v in videos})
        build(self, mcfg, tcfg, videos, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "__init__", spy)
    return sizes


def tiny_run(out: Path, *extra: str) -> list[str]:
    """lgcvd-train arguments of a one-step tiny run on 2 generated clips."""
    base = ["--data", "shapes", "--num-videos", "2", "--batch-size", "1", "--out", str(out)]
    return [*base, "--steps", "1", "--quiet", "--no-amp", *extra]


def test_a_resumed_run_loads_its_data_at_the_checkpoint_resolution(tmp_path, data_sizes):
    out = tmp_path / "C2"
    first = CliRunner().invoke(main, tiny_run(out, "--preset", "tiny"))
    assert first.exit_code == 0, first.output
    # the command: no --preset, so the default (64x64 'base') must not decide the data
    args = ["--data", "shapes", "--out", str(out), "--steps", "2", "--resume", "--quiet"]
    more = CliRunner().invoke(main, [*args, "--batch-size", "1", "--no-amp"])
    assert more.exit_code == 0, more.output
    assert data_sizes == [{(32, 32)}, {(32, 32)}]
    ckpt = load_checkpoint(out)
    assert ckpt.step == 2 and ckpt.model_config == preset("tiny")
    assert ckpt.state["provenance"]["num_videos"] == 2  # --num-videos 2 followed the checkpoint


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--preset", "base"],
            "{out} holds a 32x32 'tiny' model (v-prediction); --preset base asks for a 64x64 "
            "'base' model (v-prediction): drop --preset (a resumed run keeps its checkpoint's "
            "architecture)",
        ),
        (
            ["--no-context", "--parameterization", "eps"],
            "{out} holds a 32x32 'tiny' model (v-prediction); --no-context --parameterization "
            "eps asks for a 32x32 'tiny' model (eps-prediction, no context): drop --no-context "
            "--parameterization (a resumed run keeps its checkpoint's architecture)",
        ),
        (
            ["--residual"],
            "{out} holds a 32x32 'tiny' model (v-prediction); --residual asks for a 32x32 "
            "'tiny' model (v-prediction, residual): drop --residual (a resumed run keeps its "
            "checkpoint's architecture)",
        ),
        (
            ["--num-videos", "3"],
            "{out} was trained with --num-videos 2; --num-videos 3 asks for other training "
            "data: drop --num-videos (a resumed run keeps its data and seed)",
        ),
        (
            ["--seed", "1"],
            "{out} was trained with --seed 0; --seed 1 asks for other training data: drop "
            "--seed (a resumed run keeps its data and seed)",
        ),
    ],
    ids=["preset", "model-flags", "residual", "num-videos", "seed"],
)
def test_resume_refuses_options_that_contradict_the_checkpoint(tmp_path, extra, message):
    out = tmp_path / "run"
    first = CliRunner().invoke(main, tiny_run(out, "--preset", "tiny"))
    assert first.exit_code == 0, first.output
    before = (out / "checkpoint.json").read_text()
    args = ["--data", "shapes", "--out", str(out), "--steps", "2", "--resume", *extra]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip() == "Error: " + message.format(out=out)
    assert (out / "checkpoint.json").read_text() == before  # nothing trained, nothing written


def test_resume_accepts_options_that_agree_with_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert CliRunner().invoke(main, tiny_run(out, "--preset", "tiny")).exit_code == 0
    again = tiny_run(out, "--preset", "tiny", "--parameterization", "v", "--seed", "0")
    result = CliRunner().invoke(main, [*again[:-6], "--steps", "2", "--resume", *again[-4:]])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).step == 2


def test_a_fine_tuned_run_loads_its_data_at_the_source_resolution(tmp_path, data_sizes):
    source = tmp_path / "source"
    assert CliRunner().invoke(main, tiny_run(source, "--preset", "tiny")).exit_code == 0
    tuned = CliRunner().invoke(main, tiny_run(tmp_path / "tuned", "--init-from", str(source)))
    assert tuned.exit_code == 0, tuned.output
    assert data_sizes == [{(32, 32)}, {(32, 32)}]
    refused = CliRunner().invoke(
        main, tiny_run(tmp_path / "other", "--init-from", str(source), "--preset", "small")
    )
    assert refused.exit_code == 1
    assert refused.output.strip() == (
        f"Error: {source} holds a 32x32 'tiny' model (v-prediction); --preset small asks for a "
        "64x64 'small' model (v-prediction): drop --preset (fine-tuning keeps the architecture "
        "of the model it starts from)"
    )
    assert not (tmp_path / "other").exists()


def test_a_fine_tuned_run_may_denoise_the_residual_its_source_did_not(tmp_path):
    source, tuned = tmp_path / "source", tmp_path / "tuned"
    assert CliRunner().invoke(main, tiny_run(source, "--preset", "tiny")).exit_code == 0
    result = CliRunner().invoke(main, tiny_run(tuned, "--init-from", str(source), "--residual"))
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tuned).model_config == replace(preset("tiny"), residual=True)
    # resumed, it keeps what it denoises
    again = CliRunner().invoke(
        main, ["--data", "shapes", "--out", str(tuned), "--steps", "2", "--resume", "--no-residual"]
    )
    assert again.exit_code == 1
    assert again.output.strip() == (
        f"Error: {tuned} holds a 32x32 'tiny' model (v-prediction, residual); --no-residual asks "
        "for a 32x32 'tiny' model (v-prediction): drop --no-residual (a resumed run keeps its "
        "checkpoint's architecture)"
    )
