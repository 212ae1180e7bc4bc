"""The I3D feature cache: a result is read back only for the same clips, batch and weights, and
an unreadable file is recomputed. The network is replaced by a counting stand-in whose features
are a fixed function of the clips, so each test checks what is computed and what is read back."""

import numpy as np
import pytest
import torch

from lgcvd_train.metrics import feature_cache
from lgcvd_train.metrics.feature_cache import I3DFeatures
from lgcvd_train.metrics.i3d import I3D


@pytest.fixture(scope="module")
def network() -> I3D:
    torch.manual_seed(0)
    return I3D().eval()


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
