"""lgcvd-train --init-from: a new run starts from a bundle's or a run's weights (fine-tuning)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import MODEL_SEED, export_tiny_bundle, random_model
from test_plans import student_bundle
from test_training import moving_squares

from lgcvd_train.checkpoint import load_checkpoint
from lgcvd_train.cli import main
from lgcvd_train.config import ModelConfig, TrainConfig, preset
from lgcvd_train.init_weights import InitError, init_model, module_path, norm_owner
from lgcvd_train.trainer import Trainer


def assert_same_weights(model, expected, atol=0.0):
    got, want = model.state_dict(), expected.state_dict()
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=atol, msg=name)


def test_node_scopes_name_their_modules():
    assert module_path("/unet/head/head.0/Mul") == "unet.head.0"
    assert module_path("/encoder/down/levels.2.0/norm1/Add") == "encoder.down.levels.2.0.norm1"
    norms = ["unet.mid_cross.norm_z", "unet.up_cross.1.norm_z", "unet.head.0"]
    assert norm_owner("norm_z", norms) == "unet.mid_cross.norm_z"
    assert norm_owner("norm_z_1", norms) == "unet.up_cross.1.norm_z"
    assert norm_owner("norm_z_2", norms) is None
    assert norm_owner("unet.head.0", norms) == "unet.head.0"


@pytest.mark.parametrize(
    "overrides", [{}, {"cross_attn_levels": ("mid", "16", "32")}], ids=["mid", "three-levels"]
)
def test_a_bundle_gives_back_exactly_the_weights_it_was_exported_from(tmp_path_factory, overrides):
    bundle = Path(export_tiny_bundle(tmp_path_factory, **overrides))
    model, source = init_model(bundle, preset("small"))  # the bundle's own config wins
    assert_same_weights(model, random_model(MODEL_SEED, **overrides))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert source["sha256"] == {k: g["sha256"] for k, g in manifest["graphs"].items()}
    assert ModelConfig.from_dict(source["provenance"]["model_config"]) == model.cfg


def test_an_fp16_bundle_gives_back_its_weights_rounded_to_half(tmp_path, tiny_checkpoint):
    from lgcvd_export import ExportOptions, export_bundle
    from lgcvd_train.checkpoint import load_model

    ema, ckpt = load_model(tiny_checkpoint)
    options = ExportOptions(precision="fp16", max_batch=2)
    export_bundle(ema, ckpt, tiny_checkpoint, tmp_path / "h.lgcvd", options, echo=lambda _: None)
    model, _ = init_model(tmp_path / "h.lgcvd", preset("tiny"))
    # the converter lifts magnitudes under 1e-7 to 1e-7; everything else is float16 rounding
    assert_same_weights(model, random_model().half().float(), atol=1e-7)


def test_a_bundle_without_a_recorded_config_must_fit_the_preset(tmp_path_factory, tmp_path):
    bundle = tmp_path / "old.lgcvd"
    shutil.copytree(export_tiny_bundle(tmp_path_factory), bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["provenance"]["model_config"]  # as written before bundles recorded it
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    model, _ = init_model(bundle, preset("tiny"))
    assert_same_weights(model, random_model(MODEL_SEED))
    with pytest.raises(InitError, match=r"do not fit this model .*pass the --preset it was"):
        init_model(bundle, preset("small"))


def test_a_run_directory_gives_its_ema_weights(tiny_checkpoint):
    model, source = init_model(tiny_checkpoint.parent, preset("small"))
    assert_same_weights(model, random_model())
    assert source["step"] == 0 and source["checkpoint"] == str(tiny_checkpoint)


def test_a_new_run_starts_from_the_bundle_and_records_it(tmp_path_factory, tmp_path):
    bundle = Path(export_tiny_bundle(tmp_path_factory))
    cfg = TrainConfig(steps=1, batch_size=2, save_every=100)
    trainer = Trainer(
        preset("tiny"),
        cfg,
        moving_squares(),
        tmp_path / "run",
        {"data": "squares"},
        progress=False,
        init_from=bundle,
    )
    assert_same_weights(trainer.model, random_model(MODEL_SEED))
    assert_same_weights(trainer.ema, random_model(MODEL_SEED))
    assert trainer.step == 0 and not trainer.opt.state  # a fresh optimizer
    trainer.fit()
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 1
    assert ckpt.state["provenance"]["init_from"]["bundle"] == str(bundle)
    assert ckpt.state["provenance"]["data"] == "squares"


def test_lgcvd_train_init_from_something_without_weights_is_one_line(tmp_path):
    out = tmp_path / "run"
    args = ["--data", "shapes", "--num-videos", "2", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--init-from", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {tmp_path}: neither a bundle (manifest.json) nor a run directory "
        "(checkpoint.safetensors); pass a .lgcvd bundle or a run directory to --init-from"
    )
    assert not (out / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("what", ["bundle", "run"])
def test_init_from_a_distilled_student_is_refused_in_one_line_naming_its_teacher(
    tmp_path_factory, tmp_path, what
):
    bundle = student_bundle(tmp_path_factory)
    source = bundle if what == "bundle" else bundle.with_name("student-run")
    out = tmp_path / "run"
    args = ["--data", "shapes", "--num-videos", "2", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(main, [*args, "--init-from", str(source)])
    assert result.exit_code == 1
    # the bundle's record is portable (export shortens far paths); the checkpoint's is as made
    teacher = {"bundle": "teacher", "run": "/far/away/runs/teacher"}[what]
    assert result.output == (
        f"Error: {source}: a student distilled for ddim 2 steps (its plan), not a model to "
        f"fine-tune: the ordinary loss would undo its distillation; pass "
        f"{teacher}/checkpoint.safetensors to --init-from and distil the result again\n"
    )
    assert not (out / "checkpoint.safetensors").exists()
    with pytest.raises(InitError):  # the trainer's own path, given a student
        init_model(source, preset("tiny"))
