"""`lgcvd-run` given what a robot stack or a hurried person throws at it: bad input videos,
bad bundles, bad or existing outputs, bad options, Ctrl-C and SIGTERM. Each ends in one line
and an exit code, leaves nothing behind (temporary files included), and output checks happen
before the model loads."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import export_tiny_bundle
from test_cli import FAST, one_line_error, run, write_video

from lgcvd_runtime import api
from lgcvd_runtime.bundle import MANIFEST
from lgcvd_runtime.cli import outputs
from lgcvd_runtime.cli.outputs import SUFFIXES
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.media.writer import VideoWriter


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


@pytest.fixture
def clip(tmp_path) -> Path:
    write_video(tmp_path / "clip.mkv", 20)
    return tmp_path / "clip.mkv"


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
        (
            one_frame,
            ["-p", 2],
            "short.mkv gives 1 frame from frame 0; the task needs 2: pass an earlier --start",
        ),
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
    assert (
        "clip.mkv gives 20 frames from frame 0; the task needs 22: pass an earlier --start or a longer input"
        in one_line_error(result)
    )


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
        (newer_version, "bundle format version 99 is newer than this runtime's (3); upgrade lgcvd"),
        (
            lambda p: (p / MANIFEST).write_text("[1, 2]"),
            "not an lgcvd bundle manifest (a JSON list, not an object); export the bundle again",
        ),
        (
            lambda p: edit_manifest(p, lambda m: m["model"].update(depth=3)),
            "written by a newer lgcvd (the bundle's model has fields depth that this version "
            "does not know); upgrade lgcvd (pip install -U lgcvd)",
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
        (["--every", 2], "a frame step (--every 2) applies to a .png grid, not to o.mkv"),
        (["-o", "/sys/o.mkv"], "cannot write /sys/o.mkv (Permission denied); choose a folder"),
        (["-o", "nowhere/o.mkv"], "folder nowhere does not exist; create it or choose another"),
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


@pytest.mark.parametrize("fps", ["1e9", "1000.5", "inf", "0", "-3"])
def test_a_frame_rate_beyond_0_to_1000_is_refused_before_anything_runs(
    tmp_path, clip, monkeypatch, fps
):
    monkeypatch.chdir(tmp_path)
    refuse_to_load(monkeypatch)
    result = run("predict", clip, "-o", "o.mp4", "--fps", fps, "--quiet")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for '--fps': {float(fps)} is not in the range 0<x<=1000.0."
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def test_an_unknown_output_suffix_lists_every_suffix_there_is_the_png_grid_included(
    tmp_path, clip, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    refuse_to_load(monkeypatch)
    result = run("predict", clip, "-o", "o.avi", "--quiet")
    assert one_line_error(result) == (
        f"Error: cannot write o.avi: unknown suffix '.avi'; use one of {', '.join(SUFFIXES)}"
    )
    assert ", ".join(SUFFIXES) == ".mp4, .mkv, .gif, .png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def test_an_existing_output_is_refused_before_the_model_loads(tmp_path, clip, monkeypatch):
    refuse_to_load(monkeypatch)
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    result = run("generate", "-o", out, "--quiet")
    assert one_line_error(result) == f"Error: {out} already exists; pass --force to overwrite it"
    assert out.read_bytes() == b"keep me"


def test_a_folder_as_output_of_a_video_is_a_one_line_error(tmp_path, clip):
    # a folder output is a rosbag2 bag of forecasts, which only a bag input can give
    result = run("predict", clip, "-o", tmp_path)
    assert one_line_error(result) == (
        f"Error: {tmp_path} is a robot log, which needs a bag INPUT (its topic and stamps); "
        "write a video (.mp4, .mkv, .gif) or a .png"
    )


def test_a_negative_seed_is_a_one_line_error_and_writes_nothing(tmp_path, bundle, clip):
    out = tmp_path / "o.mkv"
    result = run("predict", clip, "-o", out, "--model", bundle, "--seed", -1, "--quiet")
    assert one_line_error(result) == (
        "Error: a seed must be a whole number 0 <= seed < 2**63, got -1; pass one in that range"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def test_a_start_beyond_the_clip_is_a_one_line_error(tmp_path, bundle, clip):
    result = run("predict", clip, "--start", 50, "-o", tmp_path / "o.mkv", "--model", bundle, *FAST)
    assert one_line_error(result) == (
        f"Error: {clip} has 20 frames; start frame 50 is beyond the end: pass a start below 20"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


def test_predict_on_a_server_refuses_local_model_options(tmp_path, clip):
    result = run("predict", clip, "--server", "h:1", "--steps", 5, "--model", "x.lgcvd")
    assert result.exit_code == 2
    assert (
        "--model, --steps choose a local model; with --server the server's model, sampler and "
        "steps apply: drop them" in result.stderr
    )


def test_predict_on_an_unreachable_server_is_one_line_and_writes_nothing(tmp_path, clip):
    result = run("predict", clip, "--server", "127.0.0.1:9", "-o", tmp_path / "o.mkv", "--quiet")
    line = one_line_error(result)
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        assert line == "Error: tritonclient is not installed; pip install 'lgcvd[serve]'"
    else:
        assert line.startswith("Error: no Triton server answers at 127.0.0.1:9 (")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
