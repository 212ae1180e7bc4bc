"""The input score (lgcvd_runtime.ood): its arithmetic against a denoiser whose answer is known,
its call budget and a flagged input on a tiny random model, and its calibration written by
lgcvd-run calibrate and lgcvd-export --calibrate, read back and scored against."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import error_line, export_tiny_bundle

from lgcvd_runtime.api import load
from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.errors import BundleError
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_runtime.ood import SCORE, Calibration, calibration_inputs, ood_scores, scores_of_clips
from lgcvd_runtime.schedule import ScheduleSpec
from lgcvd_train.data import shapes
from lgcvd_train.data.arrays import save_videos

SPEC = ModelSpec(image_size=8, channels=3, frames=4, cond_slots=2, parameterization="v")


def lgcvd_run(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def cosine_abar(t: int) -> float:
    """abar_t = f((t+1)/T) / f(0), f(u) = cos^2((u + s)/(1 + s) pi/2), T = 1000, s = 0.008: the
    product of the betas up to t, none clipped below t = 990."""

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return f((t + 1) / 1000) / f(0)


class OneImageDenoiser:
    """A denoiser that believes every window is `image`: it answers the v for which
    x0_hat = alpha x_t - sigma v equals `image`, with alpha, sigma from the cosine closed form."""

    def __init__(self, image: np.ndarray):
        self.image, self.seen, self.calls = image, [], {"encode": 0, "denoise": 0}

    def encode(self, prev):
        self.calls["encode"] += 1
        self.seen.append(("prev", prev.copy()))
        return ()

    def denoise(self, x_t, t, cond, context):
        self.calls["denoise"] += 1
        self.seen.append(("cond", cond.copy()))
        abar = cosine_abar(int(t[0]))
        alpha, sigma = math.sqrt(abar), math.sqrt(1 - abar)
        return ((alpha * x_t - self.image) / sigma).astype(np.float32)


def test_the_score_is_the_grey_level_error_of_the_denoisers_x0_on_still_windows():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1.2, 1.2, (1, 3 * SPEC.frames, 8, 8)).astype(np.float32)
    given = rng.uniform(-1, 1, (2, 3, 3, 8, 8)).astype(np.float32)  # 2 clips, p = 3 frames
    backend = OneImageDenoiser(image)
    scores = ood_scores(backend, SPEC, ScheduleSpec(), given)
    assert backend.calls == {"encode": 1, "denoise": 1}
    # what the score must be, written out: the last K=2 frames of each clip, each as a still
    # window of N frames, against the denoiser's x0 clipped to [-1, 1], in grey levels
    believed = np.clip(image, -1, 1).reshape(SPEC.frames, 3, 8, 8)
    expected = [
        np.mean([np.abs(believed - given[c, f]).mean() for f in (1, 2)]) * 127.5 for c in (0, 1)
    ]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    (_, prev), (_, cond) = backend.seen
    assert prev.shape == (4, 12, 8, 8) and not prev.any()  # U for 2 clips x 2 frames
    assert cond.shape == (4, 8, 8, 8) and not cond.any()  # no frame in any slot: all planes 0


def test_the_score_does_not_depend_on_frames_before_the_last_k():
    rng = np.random.default_rng(1)
    backend = OneImageDenoiser(rng.uniform(-1, 1, (1, 12, 8, 8)).astype(np.float32))
    given = rng.uniform(-1, 1, (1, 5, 3, 8, 8)).astype(np.float32)
    changed = given.copy()
    changed[:, :3] = 0.0
    a = ood_scores(backend, SPEC, ScheduleSpec(), given)
    b = ood_scores(backend, SPEC, ScheduleSpec(), changed)
    assert a == pytest.approx(b)


@pytest.mark.parametrize("batch", [1, 3, 4, 5])
def test_scores_in_calls_of_a_fixed_batch_equal_the_scores_in_one_call(batch):
    """6 windows (3 clips x 2 frames) in calls of `batch` windows: every call has exactly that
    batch (the last padded), and the scores are those of one call on all windows."""
    rng = np.random.default_rng(2)
    image = rng.uniform(-1, 1, (1, 12, 8, 8)).astype(np.float32)
    given = rng.uniform(-1, 1, (3, 2, 3, 8, 8)).astype(np.float32)
    whole = ood_scores(OneImageDenoiser(image), SPEC, ScheduleSpec(), given)
    backend = OneImageDenoiser(image)
    chunked = ood_scores(backend, SPEC, ScheduleSpec(), given, batch=batch)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)
    assert {len(seen) for _, seen in backend.seen} == {batch}
    assert backend.calls["denoise"] == -(-6 // batch)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return Path(export_tiny_bundle(tmp_path_factory))


@pytest.fixture(scope="module")
def calib_clips(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "shapes.npy"
    save_videos(path, shapes.generate(24, 16, 32, seed=0))
    return path


@pytest.fixture()
def calibrated(tiny, calib_clips, tmp_path) -> Path:
    bundle = tmp_path / "tiny.lgcvd"
    shutil.copytree(tiny, bundle)
    result = lgcvd_run("calibrate", bundle, "--data", calib_clips)
    assert result.exit_code == 0, result.output
    return bundle


def test_on_a_tiny_random_model_one_denoiser_call_scores_a_clip_and_noise_is_flagged(calibrated):
    manifest = load_manifest(calibrated)
    calibration = Calibration.of(manifest)
    backend = load_backend("onnxruntime", calibrated, manifest)
    noise = np.random.default_rng(1).integers(0, 256, (1, 2, 32, 32, 3), dtype=np.uint8)
    (score,) = scores_of_clips(backend, manifest, noise)
    assert backend.calls["denoise"] <= 2 and backend.calls["denoise"] == 1
    assert calibration.warning(score) is not None
    held_out = calibration_inputs(shapes.generate(4, 16, 32, seed=7), manifest.model.frames)
    held_out_scores = scores_of_clips(backend, manifest, held_out)
    assert (held_out_scores < score).all()


def test_calibration_is_recorded_in_the_manifest_and_read_back(tiny, calibrated, calib_clips):
    before, after = load_manifest(tiny), load_manifest(calibrated)  # hashes verified
    assert after.graphs == before.graphs and after.provenance == before.provenance
    record = json.loads((calibrated / "manifest.json").read_text())["ood"]
    assert record["score"] == SCORE and record["clips"] == 24
    assert record["inputs"] == 24 * 3  # starts 0, 7, 14 of 16-frame clips (N = 8)
    assert record["data"] == f"{calib_clips.parent.name}/{calib_clips.name}"  # no machine path
    assert set(record["percentiles"]) == {"50", "95", "99"}
    p = record["percentiles"]
    assert p["50"] <= p["95"] <= p["99"]
    calibration = Calibration.of(after)
    assert calibration.threshold == p["99"] and calibration.clips == 24
    assert calibration.warning(p["99"]) is None
    assert calibration.warning(p["99"] + 0.5) == (
        "input looks unlike this model's training data: "
        f"score {p['99'] + 0.5:.1f}, 99th percentile {p['99']:.1f}"
    )


def test_calibrating_again_needs_force(calibrated, calib_clips):
    args = ["calibrate", calibrated, "--data", calib_clips]
    result = lgcvd_run(*args)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {calibrated} is already calibrated (ood score {SCORE}); "
        "pass --force to replace it\n"
    )
    assert lgcvd_run(*args, "--force").exit_code == 0


def test_too_few_clips_are_refused_in_one_line(tiny, tmp_path):
    bundle = tmp_path / "tiny.lgcvd"
    shutil.copytree(tiny, bundle)
    data = tmp_path / "clips.npy"
    save_videos(data, shapes.generate(5, 16, 48, seed=0))  # another size: fitted, then counted
    assert error_line(lgcvd_run("calibrate", bundle, "--data", data)) == (
        "calibration needs at least 20 held-out clips for a 99th percentile, got 5"
    )


def test_a_bundle_without_calibration_or_for_another_score_has_none(tiny):
    manifest = load_manifest(tiny)
    assert manifest.ood is None and Calibration.of(manifest) is None
    other = replace(manifest, ood={"score": "another", "percentiles": {"99": 1.0}, "clips": 9})
    assert Calibration.of(other) is None


def test_a_corrupt_calibration_is_one_line(tiny):
    broken = replace(load_manifest(tiny), ood={"score": SCORE, "percentiles": {"50": 1.0}})
    with pytest.raises(BundleError) as err:
        Calibration.of(broken)
    assert str(err.value) == (
        "the manifest's ood calibration is corrupt (KeyError: 'no 99th percentile'); calibrate "
        "the bundle again with lgcvd-run calibrate BUNDLE --data CLIPS --force"
    )


def test_export_with_calibrate_records_the_calibration(tiny_checkpoint, calib_clips, tmp_path):
    from lgcvd_export import ExportOptions, export_bundle
    from lgcvd_train.checkpoint import load_model

    model, ckpt = load_model(tiny_checkpoint)
    out = tmp_path / "calibrated.lgcvd"
    opts = ExportOptions(max_batch=4, calibrate=calib_clips)
    lines: list[str] = []
    export_bundle(model, ckpt, tiny_checkpoint, out, opts, echo=lines.append)
    calibration = Calibration.of(load_manifest(out))
    assert calibration is not None and calibration.clips == 24
    assert lines[-1].startswith("ood score calibrated on 24 clips: {'50': ")


def test_a_forecast_scores_its_input_in_calls_of_its_own_batch(calibrated):
    """The engine meets one input shape per forecast: a second one made onnxruntime keep a
    second set of buffers (docs/results.md, peak memory of a forecast)."""
    model = load(calibrated, backend="onnxruntime", sampler="ddim", steps=2)
    batches: list[int] = []
    denoise = model.backend.denoise
    model.backend.denoise = lambda x_t, *rest: batches.append(len(x_t)) or denoise(x_t, *rest)
    given = shapes.generate(2, 4, 32, seed=3)[:, :2]
    for clips, samples in ((given[0], 1), (list(given), 1), (given[0], 3)):
        batches.clear()
        (window,) = model.predict(clips, n=6, samples=samples, seed=0)
        assert window.input_score is not None
        assert set(batches) == {min(len(given) if isinstance(clips, list) else 1, 4) * samples}


def test_results_of_a_calibrated_bundle_carry_the_input_score(calibrated, tiny):
    model = load(calibrated, backend="onnxruntime", sampler="ddim", steps=2)
    given = shapes.generate(2, 4, 32, seed=3)[:, :2]  # two clips of 2 frames
    (window,) = model.predict(given[0], n=6, seed=0)
    assert window.input_score == pytest.approx(model.input_score(given[0]))
    (both,) = model.predict(list(given), n=6, seed=0)
    assert both.input_score.shape == (2,) and both.input_score[0] == window.input_score
    (filled,) = model.interpolate(shapes.generate(1, 8, 32, seed=4)[0, [0, 7]], seed=0)
    assert isinstance(filled.input_score, float)
    (generated,) = model.generate(6, seed=0)
    assert generated.input_score is None
    with model.live(p=2, n=6) as live:
        for frame in given[0]:
            live.push(frame)
        live.wait()
        assert live.latest().input_score == pytest.approx(window.input_score)
    plain = load(tiny, backend="onnxruntime", sampler="ddim", steps=2)
    (window,) = plain.predict(given[0], n=6, seed=0)
    assert window.input_score is None and plain.backend.calls == {"encode": 1, "denoise": 2}


DEFAULT = Path(__file__).resolve().parents[1] / "lgcvd_runtime" / "assets" / "default.lgcvd"
BAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real" / "clip0.mkv"


@pytest.mark.slow
def test_lgcvd_run_warns_on_a_real_bair_clip_and_not_on_a_pushsim_clip(tmp_path):
    if not BAIR.is_file():
        pytest.skip(f"{BAIR} (the project's shared real BAIR clips) is not here")
    from lgcvd_runtime.cli.run import main as run_main

    fast = ["-n", "6", "--sampler", "ddim", "--steps", "2", "--quiet", "--threads", "1"]
    demo = DEFAULT.parent / "demo.mkv"  # a held-out pushsim clip
    results = [
        CliRunner().invoke(
            run_main, ["predict", str(clip), "-o", str(tmp_path / f"{i}.mkv"), *fast]
        )
        for i, clip in enumerate((BAIR, demo))
    ]
    assert [r.exit_code for r in results] == [0, 0], [r.output for r in results]
    threshold = Calibration.of(load_manifest(DEFAULT)).threshold
    line = results[0].stderr.strip()
    assert line.startswith("input looks unlike this model's training data: score ")
    assert line.endswith(f", 99th percentile {threshold:.1f}")
    assert float(line.split("score ")[1].split(",")[0]) > 5 * threshold
    assert results[1].stderr == ""


def test_calibrate_scores_arrays_videos_and_folders_of_videos_against_the_calibration(
    calibrated, calib_clips, tmp_path
):
    folder = tmp_path / "videos"
    folder.mkdir()
    with VideoWriter(folder / "clip.mkv") as writer:  # FFV1: read back bit-exactly
        writer.write(shapes.generate(1, 12, 32, seed=5)[0])
    result = lgcvd_run("calibrate", calibrated, calib_clips, folder, "--starts", "0,4", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["threshold"] == Calibration.of(load_manifest(calibrated)).threshold
    assert list(report["scores"]) == [str(calib_clips), str(folder / "clip.mkv")]
    assert len(report["scores"][str(calib_clips)]) == 24 * 3  # every (N-1)-th frame of each clip
    assert list(report["scores"][str(folder / "clip.mkv")]) == ["clip.mkv@0", "clip.mkv@4"]


def test_calibrate_with_nothing_to_record_or_score_is_a_usage_error(calibrated):
    result = lgcvd_run("calibrate", calibrated)
    assert result.exit_code == 2
    assert "pass --data CLIPS to calibrate, or INPUTs to score, or both" in result.output


def test_scoring_against_an_uncalibrated_bundle_says_to_calibrate_first(tiny, calib_clips):
    result = lgcvd_run("calibrate", tiny, calib_clips)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tiny} has no calibration for this score; pass --data CLIPS first\n"
    )
