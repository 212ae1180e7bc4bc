"""lgcvd-export calibrates the input score on clips of the run's own data (lgcvd_export.calibration):
a fine-tuned model gets its own calibration, never its source's; where the run's data cannot be
had, the export says the bundle is uncalibrated and how to calibrate it."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import export_tiny_bundle, random_model

from lgcvd_export import calibration
from lgcvd_export.cli import main as export_main
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.ood import SCORE
from lgcvd_runtime.portable import portable
from lgcvd_train.checkpoint import save_checkpoint
from lgcvd_train.cli import main as train_main
from lgcvd_train.config import TrainConfig
from lgcvd_train.data import shapes
from lgcvd_train.data.arrays import save_videos

CLIPS = 20  # the fewest calibrate takes, and short clips, to keep these exports fast
FRAMES = 14  # a training clip: what a data file must hold
SIZE = 32  # the tiny preset's frames


@pytest.fixture(autouse=True)
def few_clips(monkeypatch):
    monkeypatch.setattr(calibration, "CLIPS", CLIPS)
    monkeypatch.setattr(calibration, "GENERATED_FRAMES", FRAMES)


def invoke(main, *args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def ood(bundle: Path) -> dict | None:
    return json.loads((bundle / "manifest.json").read_text()).get("ood")


def calibrated_by_hand(bundle: Path, clips, folder: Path) -> dict:
    """The calibration `lgcvd-run calibrate` records on `clips` for a copy of `bundle`."""
    data, copied = folder / "clips.npy", folder / "by-hand.lgcvd"
    save_videos(data, clips, force=True)
    shutil.copytree(bundle, copied)
    invoke(run_main, "calibrate", copied, "--data", data, "--force")
    return ood(copied)


def test_a_fine_tuned_bundle_is_calibrated_on_held_out_clips_of_its_own_run(
    tmp_path_factory, tmp_path
):
    source = tmp_path / "source.lgcvd"
    shutil.copytree(export_tiny_bundle(tmp_path_factory), source)
    manifest = json.loads((source / "manifest.json").read_text())
    source_ood = {"score": SCORE, "percentiles": {"50": 1.0, "95": 2.0, "99": 3.0}, "clips": 20}
    (source / "manifest.json").write_text(json.dumps({**manifest, "ood": source_ood}))
    run, tuned = tmp_path / "run", tmp_path / "tuned.lgcvd"
    invoke(
        train_main,
        *("--init-from", source, "--data", "shapes", "--num-videos", 2, "--seed", 3),
        *("--steps", 1, "--batch-size", 1, "--out", run, "--quiet"),
    )
    result = invoke(export_main, run, "-o", tuned)
    record = ood(tuned)
    # the run trained on shapes clips 0 and 1 of seed 3: the next CLIPS are held out
    held_out = shapes.generate(CLIPS, FRAMES, SIZE, 3, first_index=2)
    by_hand = calibrated_by_hand(tuned, held_out, tmp_path)
    assert record["data"] == "shapes seed 3, clips 2..21" and "held_out" not in record
    assert record["percentiles"] == by_hand["percentiles"] != source_ood["percentiles"]
    assert f"ood score calibrated on {CLIPS} held-out clips of shapes seed 3" in result.output


def run_on(folder: Path, data: str) -> Path:
    """A run directory whose checkpoint says it trained on `data` (as lgcvd-train records it)."""
    model = random_model()
    optimizer = torch.optim.Adam(model.parameters())
    extra = {"provenance": {"data": data, "num_videos": CLIPS, "data_seed": 0}}
    save_checkpoint(folder, model, copy.deepcopy(model), optimizer, 1, TrainConfig(), extra)
    return folder


def test_a_run_without_a_split_is_calibrated_on_its_training_clips_and_says_so(tmp_path):
    clips = shapes.generate(CLIPS, FRAMES, SIZE, 5)
    data = tmp_path / "train.npy"
    save_videos(data, clips)
    bundle = tmp_path / "b.lgcvd"
    invoke(export_main, run_on(tmp_path / "run", str(data)), "-o", bundle)
    record = ood(bundle)
    assert record["held_out"] is False and record["clips"] == CLIPS
    assert record["percentiles"] == calibrated_by_hand(bundle, clips, tmp_path)["percentiles"]
    info = invoke(run_main, "info", "--model", bundle).output
    assert f"on {CLIPS} training clips of {portable(str(data))} (50th " in info


def test_a_run_whose_data_is_gone_gives_an_uncalibrated_bundle_and_the_command(tmp_path):
    gone = tmp_path / "gone.npy"
    bundle = tmp_path / "b.lgcvd"
    result = invoke(export_main, run_on(tmp_path / "run", str(gone)), "-o", bundle)
    assert (
        f"{bundle} is uncalibrated (its training data {gone} is not here); calibrate it with: "
        f"lgcvd-run calibrate {bundle} --data CLIPS\n"
    ) in result.output
    assert ood(bundle) is None
    info = invoke(run_main, "info", "--model", bundle).output
    assert "input score not calibrated" in info


def test_export_calibrates_on_a_given_bag_as_lgcvd_run_calibrate_does(tmp_path):
    from bag_messages import camera_bag

    bag = camera_bag(tmp_path / "held_out", shapes.generate(1, CLIPS * FRAMES, SIZE, 7)[0])
    bundle = tmp_path / "b.lgcvd"
    topic = ("--calibrate-topic", "/cam/image_raw")
    result = invoke(
        export_main, run_on(tmp_path / "run", "gone"), "-o", bundle, "--calibrate", bag, *topic
    )
    record = ood(bundle)
    assert record["clips"] == CLIPS and record["topic"] == "/cam/image_raw"
    assert f"ood score calibrated on {CLIPS} clips: " in result.output
    copied = tmp_path / "by-hand.lgcvd"
    shutil.copytree(bundle, copied)
    invoke(run_main, "calibrate", copied, "--data", bag, "--topic", "/cam/image_raw", "--force")
    assert ood(copied) == record
