"""The Triton client's own checks, without a server (docs/serving.md): what to install, how a
response becomes the library's windows, and every bad argument refused before anything is sent,
in the library's one-line words (the same checks, `checks` and `pipeline.check_seed`)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from lgcvd_runtime.errors import BackendError, LgcvdError


def test_the_client_says_what_to_install_without_tritonclient(monkeypatch):
    from lgcvd_runtime.serve.client import TritonClient

    monkeypatch.setitem(sys.modules, "tritonclient", None)
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    with pytest.raises(BackendError) as err:
        TritonClient("127.0.0.1:1")
    assert str(err.value) == "tritonclient is not installed; pip install 'lgcvd[serve]'"


def test_the_client_splits_a_response_into_the_library_windows():
    from lgcvd_runtime.serve.client import _windows

    frames = np.arange(2 * 10).reshape(2, 10, 1, 1, 1)  # (S, n, ...) frames 2 .. 11
    windows = _windows(frames, [2, 8], axis=1)
    assert [(w.index, w.start, w.frames.shape[1]) for w in windows] == [(0, 2, 6), (1, 8, 4)]
    assert windows[1].frames[1, 0, 0, 0, 0] == 16


BAD_REQUESTS = {
    "float frames": (np.zeros((2, 64, 64, 3), np.float32), 1, 1, 0),
    "NaN frames": (np.full((2, 64, 64, 3), np.nan, np.float32), 1, 1, 0),
    "no frames": (np.zeros((0, 64, 64, 3), np.uint8), 1, 1, 0),
    "a camera of the wrong shape": (
        [np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 64))],
        1,
        1,
        0,
    ),
    "cameras of other lengths": (
        [np.zeros((2, 64, 64, 3), np.uint8), np.zeros((3, 64, 64, 3), np.uint8)],
        1,
        1,
        [0, 1],
    ),
    "n = 0": (np.zeros((2, 64, 64, 3), np.uint8), 0, 1, 0),
    "samples = 0": (np.zeros((2, 64, 64, 3), np.uint8), 1, 0, 0),
    "seed 1.5": (np.zeros((2, 64, 64, 3), np.uint8), 1, 1, 1.5),
    "seed 2.0": (np.zeros((2, 64, 64, 3), np.uint8), 1, 1, 2.0),
    "seed -1": (np.zeros((2, 64, 64, 3), np.uint8), 1, 1, -1),
    "seed 2**63": (np.zeros((2, 64, 64, 3), np.uint8), 1, 1, 2**63),
    "a seed past 2**63 among seeds": ([np.zeros((2, 64, 64, 3), np.uint8)] * 2, 1, 1, [3, 2**64]),
    "seed True": (np.zeros((2, 64, 64, 3), np.uint8), 1, 1, True),
    "seed text": (np.zeros((2, 64, 64, 3), np.uint8), 1, 1, "abc"),
    "a float among seeds": ([np.zeros((2, 64, 64, 3), np.uint8)] * 2, 1, 1, [3, 2.5]),
    "too few seeds": ([np.zeros((2, 64, 64, 3), np.uint8)] * 2, 1, 1, [3]),
}


def _unconnected_client():
    """A TritonClient built without a server: its checks run, and a request that passes them
    fails on being sent."""
    from lgcvd_runtime.serve.client import TritonClient

    client = object.__new__(TritonClient)
    client.settings, client.rng = {}, np.random.default_rng(0)

    def send(*args):
        raise AssertionError("sent")

    client._send = send
    return client


@pytest.mark.parametrize("what", BAD_REQUESTS)
def test_the_client_refuses_what_the_library_refuses_in_its_words_before_sending(what):
    import lgcvd_runtime

    clips, n, samples, seed = BAD_REQUESTS[what]
    with pytest.raises(LgcvdError) as library:
        lgcvd_runtime.load(steps=1).predict(clips, n, samples, seed=seed)
    with pytest.raises(LgcvdError) as client:
        _unconnected_client().predict(clips, n, samples, seed=seed)
    assert str(client.value) == str(library.value)
    assert "\n" not in str(client.value)


def test_the_client_refuses_cameras_of_other_lengths_before_sending_in_the_librarys_line():
    clips = [np.zeros((2, 64, 64, 3), np.uint8), np.zeros((3, 48, 48, 3), np.uint8)]
    with pytest.raises(LgcvdError) as err:
        _unconnected_client().predict(clips, 6, seed=[1, 2])
    assert str(err.value) == (
        "every camera needs the same number of frames, got 2 and 3; pass each camera's newest "
        "frames, as many for all"
    )


def seed_line(seed) -> str:
    return f"a seed must be a whole number 0 <= seed < 2**63, got {seed!r}; pass one in that range"


def test_the_client_sends_seeds_from_0_to_2_63_and_refuses_the_others_in_the_librarys_line():
    clip = np.zeros((2, 64, 64, 3), np.uint8)
    for seed in (0, np.int64(7), [1, 2**63 - 1]):
        with pytest.raises(AssertionError, match="sent"):
            _unconnected_client().predict(
                [clip, clip] if isinstance(seed, list) else clip, 1, seed=seed
            )
    for seed in (2**63, -1):
        with pytest.raises(LgcvdError) as err:
            _unconnected_client().predict(clip, 1, seed=seed)
        assert str(err.value) == seed_line(seed)


@pytest.mark.parametrize("seed", [-1, 2**63])
def test_a_client_seed_outside_the_range_is_refused_before_connecting(seed):
    from lgcvd_runtime.serve.client import TritonClient

    with pytest.raises(LgcvdError) as err:
        TritonClient("127.0.0.1:9", seed=seed)  # nothing listens there, nor is tritonclient here
    assert str(err.value) == seed_line(seed)


def test_predict_on_a_server_refuses_a_seed_past_2_63_in_one_line(tmp_path):
    from lgcvd_runtime.cli.run import main as run_main
    from lgcvd_runtime.media.writer import VideoWriter

    clip = tmp_path / "clip.mkv"
    with VideoWriter(clip, fps=10) as writer:
        writer.write(np.zeros((2, 32, 32, 3), np.uint8))
    args = ["predict", str(clip), "--server", "127.0.0.1:9", "--seed", str(2**63), "--quiet"]
    result = CliRunner().invoke(run_main, [*args, "-o", str(tmp_path / "o.mkv")])
    assert result.exit_code == 1
    assert result.output == f"Error: {seed_line(2**63)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
