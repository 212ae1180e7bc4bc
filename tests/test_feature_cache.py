"""The I3D feature cache: a result is read back only for the same clips, batch and weights, an
unreadable file is recomputed, and `lgcvd-eval --feature-cache` reads back what an earlier run
computed. The network is replaced by a counting stand-in whose features are a fixed function of
the clips, so each test checks what is computed and what is read back."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import export_tiny_bundle

from lgcvd_train import evaluate
from lgcvd_train.evaluate import main
from lgcvd_train.metrics import feature_cache
from lgcvd_train.metrics.feature_cache import I3DFeatures
from lgcvd_train.metrics.i3d import I3D

CLIPS = 2
EVAL = ["--data", "shapes", "--clips", CLIPS, "-p", 2, "--sampler", "ddim", "--steps", 2, "--quiet"]


@pytest.fixture(scope="module")
def network() -> I3D:
    torch.manual_seed(0)
    return I3D().eval()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The run folder of the tiny random checkpoint (beside its exported bundle)."""
    return Path(export_tiny_bundle(tmp_path_factory)).with_name("tiny-run")


@pytest.fixture
def computed(monkeypatch) -> list[int]:
    """The number of clips each real I3D pass would have run on; features = clip means."""
    calls: list[int] = []

    def features(model, videos, batch=4):
        calls.append(len(videos))
        return videos.reshape(len(videos), -1).mean(axis=1, keepdims=True) * np.ones((1, 400))

    monkeypatch.setattr(feature_cache, "i3d_features", features)
    return calls


def clips(seed: int, n: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 9, 8, 8, 3), dtype=np.uint8)


def test_the_same_clips_are_read_back_and_equal_what_was_computed(tmp_path, network, computed):
    first = I3DFeatures(network, tmp_path)(clips(0))
    again = I3DFeatures(network, tmp_path)
    second = again(clips(0))
    assert computed == [3]
    assert np.array_equal(first, second) and second.dtype == np.float64
    assert (again.hits, again.misses) == (3, 0)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npy"]  # no temporary left


def test_other_clips_another_batch_or_other_weights_are_computed_again(tmp_path, network, computed):
    features = I3DFeatures(network, tmp_path)
    features(clips(0))
    one_pixel = clips(0)
    one_pixel[2, 8, 7, 7, 2] ^= 1
    features(one_pixel)
    features(clips(0)[:2])  # a subset is another set of clips
    features(clips(0), batch=2)
    other = I3D().eval()
    other.load_state_dict(network.state_dict())
    I3DFeatures(other, tmp_path)(clips(0))  # equal weights in another object: read back
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    I3DFeatures(other, tmp_path)(clips(0))
    assert computed == [3, 3, 2, 3, 3]
    assert (features.hits, features.misses) == (0, 11)


def test_an_unreadable_or_misshapen_file_is_computed_again_and_replaced(
    tmp_path, network, computed
):
    features = I3DFeatures(network, tmp_path)
    expected = features(clips(0))
    (stored,) = tmp_path.iterdir()
    stored.write_bytes(stored.read_bytes()[:50])  # truncated
    assert np.array_equal(features(clips(0)), expected)
    np.save(stored, np.zeros((2, 400)))  # a row short
    assert np.array_equal(features(clips(0)), expected)
    assert computed == [3, 3, 3]
    assert np.array_equal(np.load(stored), expected)  # replaced by the right features
    assert np.array_equal(features(clips(0)), expected) and computed == [3, 3, 3]


def test_without_a_folder_nothing_is_stored_and_every_call_computes(tmp_path, network, computed):
    features = I3DFeatures(network)
    features(clips(0))
    features(clips(0))
    assert computed == [3, 3] and (features.hits, features.misses) == (0, 6)
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_with_a_feature_cache_reads_real_and_copy_last_features_back(
    tmp_path, tiny_run, monkeypatch
):
    """An untrained I3D whose forward pass is replaced by clip means: what is computed, what is
    read back, and that read-back features give the same FVDs."""
    computed = []

    def features(model, videos, batch=4):
        computed.append(len(videos))
        return videos.reshape(len(videos), -1, 3).mean(axis=1) @ np.eye(3, 8)

    def load_i3d(weights):
        torch.manual_seed(0)  # the same weights each run
        return I3D(weights_info="untrained")

    monkeypatch.setattr(evaluate, "load_i3d", load_i3d)
    monkeypatch.setattr(feature_cache, "i3d_features", features)
    cache = tmp_path / "cache"
    args = [*EVAL, "--model", tiny_run, "-n", 7, "--no-lpips", "--feature-cache", cache]
    reports, notes = [], []
    for run, seed in (("first", 0), ("other-seed", 1), ("again", 1)):
        result = CliRunner().invoke(
            main, [str(a) for a in [*args, "--seed", seed, "--out", tmp_path / run]]
        )
        assert result.exit_code == 0, result.output
        reports.append(json.loads((tmp_path / run / "report.json").read_text()))
        notes.append([n for n in reports[-1]["notes"] if n.startswith("I3D features")])
    # another seed: only the model's clips are new; the same seed again: nothing is
    assert computed == [CLIPS, 1, 1, 1, 1, 1, 1]
    assert notes == [
        [f"I3D features of {hits} of {3 * CLIPS} clips read from {cache}"] for hits in (0, 4, 6)
    ]
    copy_last_fvds = {report["models"]["copy-last"]["fvd"] for report in reports}
    assert len(copy_last_fvds) == 1 and np.isfinite(copy_last_fvds.pop())
    assert reports[2]["models"]["tiny-run"]["fvd"] == reports[1]["models"]["tiny-run"]["fvd"]
