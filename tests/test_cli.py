"""`lgcvd-run` through click's CliRunner: each command end to end on the tiny exported bundle,
outputs read back (lossless .mkv), and every bad input ending in one line and an exit code."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import debian_video, export_tiny_bundle

from lgcvd_runtime import api, cli
from lgcvd_runtime.bundle import MANIFEST
from lgcvd_runtime.video import VideoWriter, read_frames

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


def test_predict_writes_a_png_strip_of_all_frames(tmp_path, bundle, clip):
    out = tmp_path / "strip.png"
    assert run("predict", clip, "-n", 6, "-o", out, "--model", bundle, *FAST).exit_code == 0
    assert read_frames(out).shape == (1, 32, 8 * 32, 3)


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
    strip = read_frames(tmp_path / "demo" / "prediction.png")
    assert strip.shape == (1, 3 * 32 + 2 * 2, 28 * 32, 3)  # rows: given, truth, prediction
    args = ("demo", "--out", tmp_path / "demo", "--backend", "onnxruntime", "--quiet")
    result = run(*args, "--every", 3, "--force")
    assert result.exit_code == 0, result.output
    strip = read_frames(tmp_path / "demo" / "prediction.png")[0]
    assert strip.shape == (3 * 32 + 2 * 2, 10 * 32, 3)  # frames 3, 6, ..., 30 of 28 predicted
    truth = read_frames(assets / "demo.mkv", size=32)
    assert np.array_equal(strip[34:66], np.concatenate(list(truth[2::3]), axis=1))


def test_demo_without_its_assets_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "ASSETS", tmp_path)
    line = one_line_error(run("demo", "--out", tmp_path / "demo"))
    assert line.startswith("Error: demo clip") and "is missing" in line


def test_ctrl_c_exits_130_and_leaves_no_output(tmp_path, bundle, clip, monkeypatch):
    def interrupt(self, window):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._Assembler, "add", interrupt)
    out = tmp_path / "out.mkv"
    result = run("predict", clip, "-n", 6, "-o", out, "--model", bundle, *FAST)
    assert result.exit_code == 130
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
    assert not (tmp_path / "o.mkv").exists()


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
def test_progress_counts_windows_and_steps_on_a_terminal_unless_quiet(monkeypatch, capsys, quiet):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    progress = cli._Progress(steps=2, quiet=quiet)
    for step in (1, 2, 1, 2):
        progress.step(step)
    progress.close()
    expected = "\rwindow 1: step 1/2\rwindow 1: step 2/2\rwindow 2: step 1/2\rwindow 2: step 2/2\n"
    assert capsys.readouterr().err == ("" if quiet else expected)


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
