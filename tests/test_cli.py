"""`lgcvd-run` through click's CliRunner: each command end to end on the tiny exported bundle,
outputs read back (lossless .mkv), and every bad input ending in one line and an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import debian_video, export_tiny_bundle

from lgcvd_runtime import api, cli, info, outputs, progress
from lgcvd_runtime.bundle import MANIFEST
from lgcvd_runtime.pictures import EMPTY
from lgcvd_runtime.video import read_frames
from lgcvd_runtime.writer import VideoWriter

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


def test_info_describes_bundle_plan_and_backends(bundle):
    result = run("info", "--model", bundle, "--sampler", "ddpm", "--steps", 100)
    assert result.exit_code == 0, result.output
    assert "window N=8, K=2 condition slots, 6 new frames" in result.stdout
    assert "sampling    ddpm, 100 steps over t = 0, 10, 20, 30, ..., 979, 989, 999" in result.stdout
    assert "backend     onnxruntime: available" in result.stdout


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


def test_ctrl_c_exits_130_and_leaves_no_output(tmp_path, bundle, clip, monkeypatch):
    def interrupt(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs.VideoOutput, "update", interrupt)
    out = tmp_path / "out.mkv"
    result = run("predict", clip, "-n", 6, "-o", out, "--model", bundle, *FAST)
    assert one_line_error(result, 130) == "interrupted; no output was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def truncated(tmp_path: Path) -> Path:
    path = tmp_path / "cut.mkv"
    write_video(path, 30)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    return path


def not_a_video(tmp_path: Path) -> Path:
    path = tmp_path / "notes.mp4"
    path.write_text("hello")
    return path


def empty_file(tmp_path: Path) -> Path:
    (tmp_path / "empty.mkv").touch()
    return tmp_path / "empty.mkv"


def one_frame(tmp_path: Path) -> Path:
    write_video(tmp_path / "short.mkv", 1)
    return tmp_path / "short.mkv"


def huge(tmp_path: Path) -> Path:
    path = tmp_path / "huge.mkv"
    with VideoWriter(path) as writer:
        writer.write(np.zeros((1, 2, 8200, 3), np.uint8))
    return path


@pytest.mark.parametrize(
    ("make_input", "args", "message"),
    [
        (lambda d: d / "missing.mp4", [], "missing.mp4 does not exist; check the path"),
        (lambda d: d, [], "is not a file; pass a video file"),
        (empty_file, [], "empty.mkv is not a readable video"),
        (not_a_video, [], "notes.mp4 is not a readable video"),
        (truncated, ["-p", 2, "-n", 26], "cut.mkv is truncated or corrupt"),
        (one_frame, ["-p", 2], "short.mkv has 1 frames from frame 0; the task needs 2"),
        (huge, [], "has frames of 8200x2 pixels; lgcvd reads 1 to 8192 pixels per side"),
    ],
)
def test_a_bad_input_video_is_a_one_line_error(tmp_path, bundle, make_input, args, message):
    path = make_input(tmp_path)
    result = run(
        "predict", path, *args, "--side-by-side", "-o", tmp_path / "o.mkv", "--model", bundle, *FAST
    )
    assert message in one_line_error(result)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".o.mkv", "o.mkv"))]


def test_interpolation_needs_every_frame_up_to_the_last_keyframe(tmp_path, bundle, clip):
    result = run("interpolate", clip, "--gaps", 3, "--model", bundle, *FAST)  # 22 frames
    assert "clip.mkv has 20 frames from frame 0; the task needs 22" in one_line_error(result)


def test_a_non_positive_frame_count_is_a_usage_error(clip):
    result = run("predict", clip, "-n", 0)
    assert result.exit_code == 2
    assert "Invalid value for '-n': 0 is not in the range x>=1" in result.stderr


def tamper(bundle: str, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy.lgcvd"
    shutil.copytree(bundle, copy)
    change(copy)
    return copy


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    change(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def swap_graphs(path: Path) -> None:
    """The two graph files swapped on disk, their hashes too: only their I/O tells."""
    (path / "context.onnx").rename(path / "swap")
    (path / "denoiser.onnx").rename(path / "context.onnx")
    (path / "swap").rename(path / "denoiser.onnx")

    def swap(m):
        graphs = m["graphs"]
        graphs["context"]["sha256"], graphs["denoiser"]["sha256"] = (
            graphs["denoiser"]["sha256"],
            graphs["context"]["sha256"],
        )

    edit_manifest(path, swap)


def newer_version(path: Path) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["format_version"] = 99
    (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: shutil.rmtree(p), "no such bundle directory; pass a NAME.lgcvd folder"),
        (lambda p: (p / MANIFEST).write_text("{not json"), "corrupt manifest"),
        (lambda p: (p / "denoiser.onnx").write_bytes(b"x"), "sha256 does not match the manifest"),
        (newer_version, "bundle format version 99 is newer than this runtime's (1); upgrade lgcvd"),
        (
            lambda p: (p / MANIFEST).write_text("[1, 2]"),
            "not an lgcvd bundle manifest (a JSON list, not an object); export the bundle again",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m["model"].update(depth=3)),
            "model has fields this lgcvd does not know (depth); it was made by a newer lgcvd: "
            "upgrade lgcvd",
        ),
        (
            swap_graphs,
            "context.onnx has inputs (x_t, t, cond, ctx_k0, ctx_v0) but the manifest names "
            "(prev); the bundle's graphs do not match its manifest (files swapped or edited?); "
            "export it again",
        ),
        (
            lambda p: edit_manifest(
                p, lambda m: m["graphs"]["denoiser"]["inputs"][0].update(dtype="float16")
            ),
            "denoiser.onnx input 'x_t' is float32 [?, 24, 32, 32] but the manifest says float16 "
            "[batch, 24, 32, 32]",
        ),
    ],
)
def test_a_bad_bundle_is_a_one_line_error(tmp_path, bundle, clip, change, message):
    broken = tamper(bundle, tmp_path, change)
    result = run("predict", clip, "-n", 6, "--model", broken, "-o", tmp_path / "o.mkv", *FAST)
    assert message in one_line_error(result)


def test_an_existing_output_is_kept_without_force(tmp_path, bundle, clip):
    out = tmp_path / "out.mkv"
    out.write_bytes(b"keep me")
    result = run("predict", clip, "-n", 6, "-o", out, "--model", bundle, *FAST)
    assert one_line_error(result) == f"Error: {out} already exists; pass --force to overwrite it"
    assert out.read_bytes() == b"keep me"
    assert (
        run("predict", clip, "-n", 6, "-o", out, "--model", bundle, "--force", *FAST).exit_code == 0
    )
    assert read_frames(out).shape == (8, 32, 32, 3)


def test_an_unavailable_backend_is_a_one_line_error_naming_the_package(tmp_path, bundle, clip):
    from lgcvd_runtime.backends import unavailable

    if unavailable("tensorrt") is None:
        pytest.skip("tensorrt is available here")
    result = run("predict", clip, "--model", bundle, "--backend", "tensorrt", "--quiet")
    assert "pip install 'lgcvd[tensorrt]'" in one_line_error(result)


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


def test_sigterm_mid_run_exits_143_and_leaves_no_output_or_temporary_file(tmp_path, bundle):
    """A real process on a terminal (a pty, so progress shows): SIGTERM once denoising runs."""
    write_video(tmp_path / "clip.mkv", 4)
    out = tmp_path / "out.mkv"
    command = [sys.executable, "-m", "lgcvd_runtime", "predict", tmp_path / "clip.mkv", "-n", 120]
    command += ["-o", out, "--model", bundle, "--backend", "onnxruntime", "--steps", 100]
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(c) for c in command], stdout=subprocess.PIPE, stderr=follower, text=True
    )
    os.close(follower)
    seen = b""
    while b"step 2/100" not in seen:  # progress of the first window: denoising is running
        ready, _, _ = select.select([leader], [], [], 120)
        assert ready, seen
        seen += os.read(leader, 1024)
    assert b"window 1/20: step 2/100" in seen  # 120 frames, 6 new per window
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.mkv.")]  # its temp
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=60)
    with contextlib.suppress(OSError):  # EIO once the process has closed the terminal
        while chunk := os.read(leader, 1024):
            seen += chunk
    os.close(leader)
    assert process.returncode == 143
    assert seen.decode().splitlines()[-1] == "terminated; no output was written"
    assert stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def refuse_to_load(monkeypatch):
    """Make loading a model fail loudly: a test then shows a check ran before the load."""

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(api, "load", fail)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "nan"], "frame rate nan is not a positive number of frames per second"),
        (["--fps", "inf"], "frame rate inf is not a positive number of frames per second"),
        (["--fps", "-3"], "frame rate -3.0 is not a positive number of frames per second"),
        (["--every", 2], "a frame step (--every 2) applies to a .png grid, not to o.mkv"),
        (["-o", "/sys/o.mkv"], "cannot write /sys/o.mkv (Permission denied); choose a folder"),
        (["-o", "nowhere/o.mkv"], "folder nowhere does not exist; create it or choose another"),
        (["-o", "o.avi"], "cannot write o.avi: unknown suffix '.avi'; use one of .mp4, .mkv"),
    ],
)
def test_a_bad_output_is_a_one_line_error_before_the_model_loads(
    tmp_path, clip, monkeypatch, args, message
):
    monkeypatch.chdir(tmp_path)
    refuse_to_load(monkeypatch)
    result = run("predict", clip, "-o", "o.mkv", *args, "--quiet")
    assert message in one_line_error(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def test_an_existing_output_is_refused_before_the_model_loads(tmp_path, clip, monkeypatch):
    refuse_to_load(monkeypatch)
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = run("generate", "-o", out, "--quiet")
    assert one_line_error(result) == f"Error: {out} already exists; pass --force to overwrite it"
    assert out.read_bytes() == b"keep me"


def test_a_directory_as_output_is_a_usage_error(tmp_path, clip):
    result = run("predict", clip, "-o", tmp_path)
    assert result.exit_code == 2 and "is a directory" in result.stderr


def test_a_negative_seed_is_a_one_line_error_and_writes_nothing(tmp_path, bundle, clip):
    out = tmp_path / "o.mkv"
    result = run("predict", clip, "-o", out, "--model", bundle, "--seed", -1, "--quiet")
    assert one_line_error(result) == "Error: a seed must be a non-negative integer, got -1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def test_a_start_beyond_the_clip_is_a_one_line_error(tmp_path, bundle, clip):
    result = run("predict", clip, "--start", 50, "-o", tmp_path / "o.mkv", "--model", bundle, *FAST)
    assert one_line_error(result) == (
        f"Error: {clip} has 20 frames; start frame 50 is beyond the end: pass a start below 20"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


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


def test_a_gif_shows_the_frames_of_the_lossless_video_closely(tmp_path, bundle):
    clip = api.ASSETS / "demo.mkv"  # rendered robot-pushing frames, as people would look at
    args = ["-n", 12, "--side-by-side", "--model", bundle, *FAST]
    assert run("predict", clip, "-o", tmp_path / "o.mkv", *args).exit_code == 0
    assert run("predict", clip, "-o", tmp_path / "o.gif", *args).exit_code == 0
    lossless = read_frames(tmp_path / "o.mkv").astype(float).mean(-1)
    gif = read_frames(tmp_path / "o.gif").astype(float).mean(-1)
    assert gif.shape == lossless.shape
    assert np.abs(gif - lossless).mean() < 2.0  # grey levels: 1.19 here; the fixed palette 6.35


def test_info_prints_nested_provenance_as_an_indented_tree(bundle):
    result = run("info", "--model", bundle)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) < 200
    start = next(i for i, line in enumerate(lines) if line.startswith("provenance  "))
    assert lines[start].startswith("provenance  checkpoint: ")
    config = lines.index(" " * 12 + "training_config:")
    assert lines[config + 1] == " " * 14 + "steps: 200"
    assert " " * 16 + "prediction: 0.45" in lines  # task_weights, one level deeper
    assert " " * 14 + "mults: [1, 2]" in lines  # a list of numbers stays on one line


def test_a_provenance_tree_nests_mappings_and_lists():
    history = {"a": 1, "b": {"c": None, "d": [1, 2]}, "e": [{"f": 3}, {"g": {}}], "h": []}
    assert info.tree(history) == [
        "a: 1",
        "b:",
        "  c: none",
        "  d: [1, 2]",
        "e:",
        "  - f: 3",
        "  - g: {}",
        "h: []",
    ]
