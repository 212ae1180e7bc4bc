"""`lgcvd-run` through click's CliRunner: each command end to end on the tiny exported bundle,
outputs read back (lossless .mkv, the grid PNG, the GIF). Bad input, signals: test_cli_errors.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import debian_video, export_tiny_bundle

from lgcvd_runtime import api
from lgcvd_runtime.cli import progress
from lgcvd_runtime.cli import run as cli
from lgcvd_runtime.media.pictures import EMPTY, panel_labels
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.media.writer import VideoWriter

FAST = ["--backend", "onnxruntime", "--steps", "2", "--seed", "0", "--quiet"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


def write_video(path: Path, count: int, height: int = 40, width: int = 48) -> np.ndarray:
    """A lossless clip of `count` random frames; returns the frames."""
    video = np.random.default_rng(count).integers(0, 256, (count, height, width, 3), np.uint8)
    with VideoWriter(path, fps=5) as writer:
        writer.write(video)
    return video


@pytest.fixture
def clip(tmp_path) -> Path:
    write_video(tmp_path / "clip.mkv", 20)
    return tmp_path / "clip.mkv"


def run(*args) -> object:
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def one_line_error(result, exit_code: int = 1) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert result.exit_code == exit_code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_predict_writes_the_given_then_the_predicted_frames(tmp_path, bundle, clip):
    out = tmp_path / "out.mkv"
    result = run(
        "predict", clip, "-n", 7, "-p", 2, "--start", 3, "-o", out, "--model", bundle, *FAST
    )
    assert result.exit_code == 0, result.output
    video = read_frames(out)
    assert video.shape == (9, 32, 32, 3)
    given = read_frames(clip, start=3, count=2, size=32)
    assert np.array_equal(video[:2], given)  # the given frames are kept as given


def test_predict_from_a_real_avi_starts_from_its_frames(tmp_path, bundle):
    vtest = debian_video("vtest.avi")  # 768x576 MS-MPEG4, 795 frames: cropped and resized
    out = tmp_path / "out.mkv"
    result = run("predict", vtest, "-n", 6, "--start", 100, "-o", out, "--model", bundle, *FAST)
    assert result.exit_code == 0, result.output
    video = read_frames(out)
    assert video.shape == (8, 32, 32, 3)
    assert np.array_equal(video[:2], read_frames(vtest, start=100, count=2, size=32))


def test_predict_puts_ground_truth_left_of_every_sample(tmp_path, bundle, clip):
    out = tmp_path / "out.mkv"
    args = ["-n", 6, "--samples", 2, "--side-by-side", "-o", out, "--model", bundle]
    assert run("predict", clip, *args, *FAST).exit_code == 0
    video = read_frames(out)
    assert video.shape == (8, 32, 3 * 32 + 2 * 2, 3)  # truth | sample 1 | sample 2, 2-px lines
    truth = read_frames(clip, count=8, size=32)
    assert np.array_equal(video[:, :, :32], truth)


def test_interpolate_keeps_the_keyframes_and_fills_the_gaps(tmp_path, bundle, clip):
    out = tmp_path / "out.mkv"
    result = run(
        "interpolate", clip, "--gaps", 2, "--start", 1, "-o", out, "--model", bundle, *FAST
    )
    assert result.exit_code == 0, result.output
    video = read_frames(out)
    assert video.shape == (15, 32, 32, 3)
    source = read_frames(clip, start=1, count=15, size=32)
    assert np.array_equal(video[::7], source[::7])


def test_generate_writes_n_frames(tmp_path, bundle):
    out = tmp_path / "gen.mkv"
    assert run("generate", "-n", 9, "-o", out, "--model", bundle, *FAST).exit_code == 0
    assert read_frames(out).shape == (9, 32, 32, 3)


def test_auto_says_which_backend_it_chose_and_where_the_output_is(tmp_path, bundle, clip):
    out = tmp_path / "out.mkv"
    result = run("predict", clip, "-n", 6, "-o", out, "--model", bundle, "--steps", 2)
    assert result.exit_code == 0
    assert re.match(r"backend: [a-z-]+ \(auto", result.stderr)
    assert result.stdout == f"wrote {out} (8 frames)\n"


def test_bench_json_reports_latencies_throughput_and_memory(bundle):
    result = run(
        "bench",
        "--model",
        bundle,
        "--backend",
        "onnxruntime",
        "--steps",
        2,
        "--repeats",
        2,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["backend"] == "onnxruntime" and report["steps"] == 2
    for key in ("context_ms", "denoiser_ms", "window_ms"):
        assert 0 < report[key]["median"] <= report[key]["p90"]
    assert report["frames_per_second"] > 0 and report["peak_rss_mb"] > 0


def test_demo_writes_a_video_and_a_strip_from_the_shipped_assets(tmp_path, bundle, monkeypatch):
    assets = tmp_path / "assets"
    assets.mkdir()
    shutil.copytree(bundle, assets / "default.lgcvd")
    write_video(assets / "demo.mkv", 30)
    monkeypatch.setattr(api, "ASSETS", assets)
    result = run("demo", "--out", tmp_path / "demo", "--backend", "onnxruntime", "--quiet")
    assert result.exit_code == 0, result.output
    assert read_frames(tmp_path / "demo" / "prediction.mp4").shape == (30, 32, 32, 3)
    label_w = len("prediction") * 6 - 1 + 4  # widest label, then 2 px either side
    header = 7 + 2  # frame numbers: the 7-px font and 2 px
    strip = read_frames(tmp_path / "demo" / "prediction.png")
    assert strip.shape == (1, header + 3 * (32 + 2), label_w + 30 * (32 + 2), 3)  # 30 columns
    args = ("demo", "--out", tmp_path / "demo", "--backend", "onnxruntime", "--quiet")
    result = run(*args, "--every", 3, "--force")
    assert result.exit_code == 0, result.output
    strip = read_frames(tmp_path / "demo" / "prediction.png")[0]
    assert strip.shape == (header + 3 * 34, label_w + 12 * 34, 3)  # 2 given, frames 2, 5, .., 29
    truth = read_frames(assets / "demo.mkv", size=32)
    row = header + 34  # the truth row
    for column, index in enumerate([0, 1, *range(2, 30, 3)]):
        x = label_w + column * 34
        assert np.array_equal(strip[row : row + 32, x : x + 32], truth[index])


def test_demo_without_its_assets_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "ASSETS", tmp_path)
    line = one_line_error(run("demo", "--out", tmp_path / "demo"))
    assert line.startswith("Error: demo clip") and "is missing" in line


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_counts_windows_and_steps_with_the_time_left_unless_quiet(
    monkeypatch, capsys, quiet
):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    now = iter([100.0, 110.0, 120.0, 130.0, 140.0])  # start, then 10 s per step
    bar = progress.Progress(steps=2, windows=2, quiet=quiet, clock=lambda: next(now))
    for step in (1, 2, 1, 2):
        bar.step(step)
    bar.close()
    expected = (
        "\rwindow 1/2: step 1/2, 0:30 left"  # 1 of 4 steps in 10 s: 3 more at 10 s each
        "\rwindow 1/2: step 2/2, 0:20 left"
        "\rwindow 2/2: step 1/2, 0:10 left"
        "\rwindow 2/2: step 2/2, 0:00 left\n"
    )
    assert capsys.readouterr().err == ("" if quiet else expected)


def test_time_left_reads_as_a_clock():
    assert [progress.clock_time(s) for s in (0, 41.4, 725, 3723)] == [
        "0:00",
        "0:41",
        "12:05",
        "1:02:03",
    ]


def test_threads_option_is_passed_to_the_runtime_and_checked(tmp_path, bundle, clip, monkeypatch):
    seen = {}
    load = api.load
    monkeypatch.setattr(api, "load", lambda *a, **kw: seen.update(kw) or load(*a, **kw))
    out = tmp_path / "out.mkv"
    result = run("predict", clip, "-n", 6, "-o", out, "--model", bundle, "--threads", 1, *FAST)
    assert result.exit_code == 0, result.output
    assert seen["threads"] == 1 and read_frames(out).shape == (8, 32, 32, 3)
    result = run("predict", clip, "-n", 6, "--model", bundle, "--threads", 0, *FAST)
    assert result.exit_code == 2 and "Invalid value for '--threads'" in result.output


def test_python_m_lgcvd_runtime_is_lgcvd_run():
    result = subprocess.run(
        [sys.executable, "-m", "lgcvd_runtime", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: lgcvd-run [OPTIONS] COMMAND [ARGS]...")


def test_a_png_grid_holds_given_truth_and_each_sample_as_the_video_does(tmp_path, bundle, clip):
    """The same run as a lossless video (truth | sample 1 | sample 2) and as a grid."""
    args = ["-n", 6, "-p", 2, "--samples", 2, "--side-by-side", "--model", bundle, *FAST]
    assert run("predict", clip, "-o", tmp_path / "o.mkv", *args).exit_code == 0
    assert run("predict", clip, "-o", tmp_path / "o.png", *args).exit_code == 0
    video = read_frames(tmp_path / "o.mkv")  # (8, 32, 3 * 32 + 2 * 2, 3)
    panels = [video[:, :, 34 * k : 34 * k + 32] for k in range(3)]  # truth, sample 1, sample 2
    picture = read_frames(tmp_path / "o.png")[0]
    label_w = len("prediction 1") * 6 - 1 + 4
    header = 9
    assert picture.shape == (header + 4 * 34 - 2 + 2, label_w + 8 * 34, 3)
    for index in range(8):
        x = label_w + index * 34

        def cell(row, index=index, x=x):
            y = header + row * 34
            return picture[y : y + 32, x : x + 32]

        given = index < 2
        assert (cell(0) == (panels[0][index] if given else EMPTY)).all()  # given row
        assert (cell(1) == panels[0][index]).all()  # truth row
        for s in (1, 2):  # the prediction rows: made frames only
            assert (cell(1 + s) == (EMPTY if given else panels[s][index])).all()


def test_side_by_side_panels_are_labelled_in_videos_to_look_at_not_in_the_lossless_mkv(
    tmp_path, bundle, clip
):
    args = ["-n", 6, "-p", 2, "--samples", 2, "--side-by-side", "--model", bundle, *FAST]
    for name in ("o.mkv", "o.gif", "o.mp4"):
        assert run("predict", clip, "-o", tmp_path / name, *args).exit_code == 0
    lossless, gif = read_frames(tmp_path / "o.mkv"), read_frames(tmp_path / "o.gif")
    assert lossless.shape == (8, 32, 3 * 34 - 2, 3)  # the panels alone, to measure on
    assert gif.shape == read_frames(tmp_path / "o.mp4").shape == (8, 10 + 32, 3 * 34 - 2, 3)
    labels = panel_labels(["truth", "sample 1", "sample 2"], 32, 32)
    assert (gif[:, :10] == labels).all()  # black on white: exact in the GIF's palette
    alone = ["-n", 6, "-p", 2, "--model", bundle, *FAST]  # one panel: nothing to tell apart
    assert run("predict", clip, "-o", tmp_path / "one.gif", *alone).exit_code == 0
    assert read_frames(tmp_path / "one.gif").shape == (8, 32, 32, 3)


def test_a_gif_shows_the_frames_of_the_lossless_video_closely(tmp_path, bundle):
    clip = api.ASSETS / "demo.mkv"  # rendered robot-pushing frames, as people would look at
    args = ["-n", 12, "--side-by-side", "--model", bundle, *FAST]
    assert run("predict", clip, "-o", tmp_path / "o.mkv", *args).exit_code == 0
    assert run("predict", clip, "-o", tmp_path / "o.gif", *args).exit_code == 0
    lossless = read_frames(tmp_path / "o.mkv").astype(float).mean(-1)
    gif = read_frames(tmp_path / "o.gif")[:, 10:].astype(float).mean(-1)  # below the labels
    assert gif.shape == lossless.shape
    assert np.abs(gif - lossless).mean() < 2.0  # grey levels: 1.18 here; the fixed palette 6.35


def stand_in_server(bundle, steps: int = 2):
    """A stand-in for TritonClient that runs `bundle` here, as the server's Pipeline does."""

    class Server:
        def __init__(self, url, seed=None, timeout=None, retries=None):
            self.model = api.load(bundle, backend="onnxruntime", steps=steps, seed=seed)
            size = str(self.model.size)
            self.settings = {"sampler": "ddpm", "steps": str(steps), "image_size": size}

        @property
        def size(self):
            return int(self.settings["image_size"])

        def predict(self, clips, n, samples=1, seed=None):
            return self.model.predict(clips, n, samples, seed=seed)

        def input_warning(self, score):
            return self.model.input_warning(score)

    return Server


def test_predict_on_a_server_writes_what_the_same_model_writes_here(
    tmp_path, bundle, clip, monkeypatch
):
    from lgcvd_runtime.serve import client

    monkeypatch.setattr(client, "TritonClient", stand_in_server(bundle))
    args = ["-n", 8, "--samples", 2, "--seed", 5, "--quiet"]
    result = run("predict", clip, "--server", "gpu-box:8001", "-o", tmp_path / "a.mkv", *args)
    assert result.exit_code == 0, result.output
    local = ["--model", bundle, "--backend", "onnxruntime", "--steps", 2]
    assert run("predict", clip, *local, "-o", tmp_path / "b.mkv", *args).exit_code == 0
    np.testing.assert_array_equal(read_frames(tmp_path / "a.mkv"), read_frames(tmp_path / "b.mkv"))


def test_predict_on_a_server_warns_of_an_unlike_input_as_a_local_model_does(
    tmp_path, clip, monkeypatch
):
    """Random frames are far outside the shipped (calibrated) model's training data. The clip is
    at the shipped model's 20 Hz: a local model would resample another rate, a served one not."""
    from lgcvd_runtime.serve import client

    clip = tmp_path / "clip20.mkv"
    with VideoWriter(clip, fps=20) as writer:
        writer.write(np.random.default_rng(20).integers(0, 256, (20, 40, 48, 3), np.uint8))

    monkeypatch.setattr(client, "TritonClient", stand_in_server(api.default_bundle(), steps=1))
    args = ["-n", 6, "--seed", 5, "--quiet"]
    served = run("predict", clip, "--server", "gpu-box:8001", "-o", tmp_path / "a.mkv", *args)
    local = run(
        "predict", clip, "--steps", 1, "--backend", "onnxruntime", "-o", tmp_path / "b.mkv", *args
    )
    assert served.exit_code == 0 and local.exit_code == 0, served.output + local.output
    assert served.stderr.startswith("input looks unlike this model's training data: score ")
    assert served.stderr == local.stderr and served.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("command", "labels"),
    [
        (["interpolate", "{clip}", "--gaps", 2], ["given", "filled"]),  # keyframes 0, 7, 14
        (["generate", "-n", 9, "--samples", 2], ["generated 1", "generated 2"]),
    ],
)
def test_interpolate_and_generate_write_labelled_grids(tmp_path, bundle, clip, command, labels):
    out = tmp_path / "o.png"
    args = [str(clip) if a == "{clip}" else a for a in command]
    assert run(*args, "-o", out, "--model", bundle, *FAST).exit_code == 0
    picture = read_frames(out)[0]
    frames = 15 if command[0] == "interpolate" else 9
    label_w = max(len(label) for label in ["frame", *labels]) * 6 - 1 + 4
    assert picture.shape == (9 + len(labels) * 34, label_w + frames * 34, 3)
