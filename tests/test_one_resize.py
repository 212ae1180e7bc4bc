"""One resize: every path that brings frames to the model's size gives serving's pixels.

Training data (array files, video folders, MNIST), the export gate's real frames and the dataset
converters all resize with the runtime's `center_crop_resize`, the function `lgcvd_runtime`
applies to camera frames (`Model.fit`, `read_frames(size=)`). These tests feed the same
non-square frames through each path and require identical bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lgcvd_runtime
from lgcvd_runtime.media.resize import center_crop_resize
from lgcvd_runtime.media.video import read_frames
from lgcvd_runtime.media.writer import VideoWriter
from lgcvd_train.data import load_dataset, mnist
from lgcvd_train.data.arrays import save_videos

T, H, W = 14, 96, 128  # a wide, non-square source; the default bundle works at 64x64


def source_frames(kind: str) -> np.ndarray:
    """(T, 96, 128, 3) uint8: smooth gradients that move, or uniform noise."""
    if kind == "noise":
        return np.random.default_rng(4).integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = [
        np.stack([x * 2 + t, y * 2.5, 128 + 100 * np.sin((x + y + 3 * t) / 17)], axis=-1)
        for t in range(T)
    ]
    return np.clip(np.rint(np.stack(frames)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def served():
    """The default bundle's `Model.fit`: what serving feeds the network."""
    return lgcvd_runtime.load(backend="onnxruntime")


@pytest.mark.parametrize("kind", ["smooth", "noise"])
def test_training_data_and_serving_see_identical_pixels(tmp_path, served, kind):
    frames = source_frames(kind)
    size = served.size
    serving = served.fit(frames)  # (T, 64, 64, 3)
    assert serving.shape == (T, size, size, 3) and size != min(H, W)

    save_videos(tmp_path / "clips.npy", frames[None])
    from_array = load_dataset(str(tmp_path / "clips.npy"), size)[0]
    np.testing.assert_array_equal(from_array, serving)

    folder = tmp_path / "videos"
    folder.mkdir()
    with VideoWriter(folder / "clip.mkv") as writer:  # FFV1: frames read back bit-exactly
        writer.write(frames)
    from_folder = load_dataset(str(folder), size)[0]
    np.testing.assert_array_equal(from_folder, serving)
    np.testing.assert_array_equal(read_frames(folder / "clip.mkv", size=size), serving)


def test_the_export_gate_reads_real_frames_as_serving_does(tmp_path, served):
    from lgcvd_export.parity import load_real_clips

    frames = source_frames("smooth")
    save_videos(tmp_path / "real.npy", frames[None])
    gate = load_real_clips(tmp_path / "real.npy", 8, served.size)[0]
    np.testing.assert_array_equal(gate, served.fit(frames[:8]))


def test_mnist_at_another_size_is_its_canvas_through_the_runtime_resize():
    native = mnist.generate(1, T, mnist.CANVAS, seed=3)[0]  # (T, 64, 64, 3)
    small = mnist.generate(1, T, 24, seed=3)[0]
    np.testing.assert_array_equal(small, np.stack([center_crop_resize(f, 24) for f in native]))


def test_the_cityscapes_converter_resizes_as_serving_does(tmp_path, served):
    from PIL import Image
    from test_data import tool

    frames = source_frames("noise")[:3]
    paths = []
    for i, frame in enumerate(frames):
        paths.append(Path(tmp_path / f"x_000000_{i:06d}_leftImg8bit.png"))
        Image.fromarray(frame).save(paths[-1])
    converted = tool("convert_cityscapes").load_sequence(paths, 3, served.size)
    np.testing.assert_array_equal(converted, served.fit(frames))
