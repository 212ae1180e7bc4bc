"""Scoring only some live forecasts (`live.LiveStream(score_every=k)`, `Model.predict(score=)`):
each camera's forecasts 1, 1+k, 1+2k, ... carry the input score, the others None and no score
call; a batch with any camera due is scored whole; a camera that starts afresh, or a scored
batch that fails, is scored again; bad values are one line; the CLI options reach the stream and
the status shows the newest score with its age. Score calls are counted as the denoiser calls
at the score's timestep (`ood.T_SCORE`) on a calibrated tiny random bundle."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import export_tiny_bundle
from test_live_faults import Echo, frame

from lgcvd_runtime.api import load
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.live import LiveStream
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_runtime.ood import T_SCORE
from lgcvd_runtime.ros2.messages import OK, WARN
from lgcvd_runtime.ros2.status import CameraState, camera_status
from lgcvd_train.data import shapes
from lgcvd_train.data.arrays import save_videos

STEPS = 2  # ddim steps: the forecast's own denoiser calls, none at T_SCORE
SCORE_CALLS = 2  # a score of p = 2 frames: 2 still windows, in calls of a 1-camera batch (1)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> str:
    bundle = tmp_path_factory.mktemp("score_every") / "tiny.lgcvd"
    shutil.copytree(export_tiny_bundle(tmp_path_factory), bundle)
    clips = bundle.with_name("shapes.npy")
    save_videos(clips, shapes.generate(24, 16, 32, seed=0))
    result = CliRunner().invoke(run_main, ["calibrate", str(bundle), "--data", str(clips)])
    assert result.exit_code == 0, result.output
    return str(bundle)


def counted(bundle: str):
    """The bundle loaded, and the list of the timesteps of its denoiser calls."""
    model = load(bundle, backend="onnxruntime", sampler="ddim", steps=STEPS)
    calls: list[int] = []
    denoise = model.backend.denoise
    model.backend.denoise = lambda x_t, t, *rest: calls.append(int(t[0])) or denoise(x_t, t, *rest)
    return model, calls


VIDEO = shapes.generate(2, 8, 32, seed=5)  # (camera, frame, H, W, 3)


def run_alternately(bundle: str, k: int) -> tuple[list[list[float | None]], int]:
    """Cameras 0 and 1 pushed in turn, each forecast a batch of one: each camera's 7 forecasts'
    scores, and the score calls."""
    model, calls = counted(bundle)
    scores: list[list[float | None]] = [[], []]
    with model.live(p=2, n=6, cameras=2, seed=[1, 2], score_every=k) as live:
        for i in range(8):
            for c in (0, 1):
                live.push(VIDEO[c, i], camera=c)
                assert live.wait(60)
                if i >= 1:
                    scores[c].append(live.latest(c).input_score)
    score_calls = calls.count(T_SCORE)
    assert len(calls) - score_calls == STEPS * 14  # the forecasts' own calls, all there
    return scores, score_calls


@pytest.mark.parametrize(("k", "scored"), [(1, range(1, 8)), (3, (1, 4, 7)), (0, (1,))])
def test_each_camera_scores_its_forecasts_1_then_every_kth(calibrated, k, scored):
    scores, score_calls = run_alternately(calibrated, k)
    for c in (0, 1):
        got = [f for f, s in enumerate(scores[c], start=1) if s is not None]
        assert got == list(scored), (c, scores[c])
    assert score_calls == 2 * len(scored) * SCORE_CALLS


def test_a_kth_forecasts_score_is_the_one_scoring_every_forecast_gives(calibrated):
    every, _ = run_alternately(calibrated, 1)
    third, _ = run_alternately(calibrated, 3)
    model = load(calibrated, backend="onnxruntime")
    for c in (0, 1):
        assert [third[c][f - 1] for f in (1, 4, 7)] == [every[c][f - 1] for f in (1, 4, 7)]
        expected = [model.input_score(VIDEO[c, f - 1 : f + 1]) for f in range(1, 8)]
        assert every[c] == pytest.approx(expected, rel=1e-6)


def test_predict_without_the_score_makes_no_score_call_and_the_same_frames(calibrated):
    model, calls = counted(calibrated)
    given = list(VIDEO[:, :2])
    (scored,) = model.predict(given, n=6, seed=[1, 2])
    assert scored.input_score.shape == (2,) and calls.count(T_SCORE) > 0
    calls.clear()
    (plain,) = model.predict(given, n=6, seed=[1, 2], score=False)
    assert plain.input_score is None and calls.count(T_SCORE) == 0 and len(calls) == STEPS
    assert np.array_equal(plain.frames, scored.frames)


def push_together(live: LiveStream, frames: dict[int, np.ndarray]) -> None:
    """Push each camera's frame while holding the stream's lock, so that the worker takes them
    as one batch, then wait for it."""
    with live._cond:
        for c, f in frames.items():
            live.push(f, camera=c)
    assert live.wait(10)


def test_a_batch_with_any_camera_due_is_scored_for_every_camera_in_it():
    echo = Echo()
    with LiveStream(echo, p=1, n=2, cameras=2, score_every=3) as live:
        push_together(live, {0: frame(0)})  # camera 0's forecast 1
        for i in range(1, 7):  # camera 0's forecast i+1 with camera 1's forecast i
            push_together(live, {0: frame(i), 1: frame(i)})
    assert [len(clips) for clips in echo.clips] == [1, 2, 2, 2, 2, 2, 2]
    # camera 0 is due at 1, 4, 7 (batches 1, 4, 7); camera 1 at 1, 4 (batches 2, 5)
    assert echo.scored == [True, True, False, True, True, False, True]


def test_a_camera_that_starts_afresh_or_a_scored_batch_that_fails_is_scored_again():
    echo = Echo(period_s=0.1, outcomes=["raise"])
    with LiveStream(echo, p=1, n=2, cameras=1, score_every=0) as live:
        live.push(frame(0), stamp=0.0)
        with pytest.raises(LgcvdError, match="failed and was dropped"):
            live.wait(10)
        for i, stamp in enumerate([0.1, 0.2, 0.3, 0.0, 0.1], start=1):  # 0.0: back in time
            live.push(frame(i), stamp=stamp)
            assert live.wait(10)
    assert echo.scored == [True, True, False, False, True, False]


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_a_bad_score_every_is_one_line(bad):
    with pytest.raises(LgcvdError) as err:
        LiveStream(Echo(), p=2, n=2, cameras=1, score_every=bad)
    assert str(err.value) == (
        f"score_every must be a whole number of at least 0, got {bad!r}; "
        "0 scores only each camera's first forecast"
    )


@pytest.mark.parametrize(("k", "lines_scored"), [(1, "all"), (0, "first")])
def test_lgcvd_run_live_score_every_reaches_the_stream_and_only_scored_lines_show_a_score(
    calibrated, tmp_path, monkeypatch, k, lines_scored
):
    from lgcvd_runtime.api import Model

    video, asked, live = tmp_path / "cam.mkv", [], Model.live
    with VideoWriter(video, fps=10) as writer:
        writer.write(VIDEO[0])
    monkeypatch.setattr(Model, "live", lambda *a, **kw: asked.append(kw) or live(*a, **kw))
    args = ["live", video, "--model", calibrated, "--backend", "onnxruntime", "--steps", "1"]
    result = CliRunner().invoke(run_main, [*map(str, args), "--score-every", str(k), "--quiet"])
    assert result.exit_code == 0, result.output
    assert [kw["score_every"] for kw in asked] == [k]
    lines = result.stdout.splitlines()
    shown = [", input score " in line for line in lines]
    assert lines and shown == ([True] * len(lines) if k else [True] + [False] * (len(lines) - 1))


def test_lgcvd_run_live_refuses_a_negative_score_every():
    result = CliRunner().invoke(run_main, ["live", "x.mkv", "--score-every", "-1"])
    assert result.exit_code == 2 and "'--score-every': -1 is not in the range x>=0" in result.output


def test_lgcvd_ros2_score_every_reaches_the_nodes_settings(calibrated, monkeypatch):
    pytest.importorskip("cyclonedds")
    from lgcvd_runtime.ros2 import node
    from lgcvd_runtime.ros2.cli import main

    got = []

    class Node:
        def __init__(self, model, cameras, settings, network, log):
            got.append(settings)
            self.cameras = []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def serve(self):
            pass

    monkeypatch.setattr(node, "ForecastNode", Node)
    args = ["--camera", "/c", "--model", calibrated, "--backend", "onnxruntime", "--seed", "4"]
    result = CliRunner().invoke(main, [*args, "--score-every", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert [(s.score_every, s.seed) for s in got] == [(3, 4)]


def state(score: float | None, score_age: float | None) -> CameraState:
    return CameraState("/c", 5, 2, 4, None, 0, 0.5, score, score_age, 0.1)


def test_the_status_shows_the_newest_score_with_its_age_and_none_before_one():
    warning = SimpleNamespace(of=lambda s: None if s is None or s < 10 else f"score {s} is high")
    for score, age, level, shown in [
        (None, None, OK, ("none", "none")),
        (3.0, 0.5, OK, ("3", "0.5")),
        (12.0, 2.5, WARN, ("12", "2.5")),  # an older forecast's score still warns
    ]:
        status = camera_status(state(score, age), 0, warning.of)
        values = {v.key: v.value for v in status.values}
        assert (values["input score"], values["input score age (s)"]) == shown
        assert status.level == level


def test_lgcvd_run_live_warns_once_each_time_the_input_turns_unlike_the_training_data(capsys):
    from lgcvd_runtime.cli.live import Feed
    from lgcvd_runtime.live import Forecast

    scores = iter([1.0, None, 9.0, 8.0, None, 1.0, 9.0])  # None: a forecast not scored
    forecasts = [
        Forecast(0, np.zeros((1, 6, 4, 4, 3), np.uint8), i, 0.0, 0.0, score)
        for i, score in enumerate(scores)
    ]
    stream = SimpleNamespace(push=lambda image: None, latest=lambda: forecasts.pop(0))
    feed = Feed(None, stream, None, lambda score: f"unlike: {score}" if score > 5 else None)
    for _ in range(7):
        feed._step(np.zeros((4, 4, 3), np.uint8))
    assert capsys.readouterr().err.splitlines() == ["unlike: 9.0", "unlike: 9.0"]
