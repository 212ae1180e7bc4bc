"""Training data sources: generators, array files, load_dataset dispatch, the dataset tools."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from lgcvd_runtime.errors import DataError, OutputExistsError
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.arrays import load_videos, recorded_command
from lgcvd_train.data import DATA_GENERATORS, load_dataset, mnist, shapes
from lgcvd_train.data.arrays import crop_and_resize, save_video_stream, save_videos

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def tool(name: str):
    """Import a script from tools/ by name (so worker processes can unpickle its functions)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module(name)


def videos(n: int = 2, t: int = 14, h: int = 8, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)


# Generators ------------------------------------------------------------------------------------


@pytest.mark.parametrize("generate", [shapes.generate, mnist.generate])
def test_numpy_generators_give_uint8_clips_of_the_asked_shape(generate):
    clips = generate(3, 5, 32, 0)
    assert clips.shape == (3, 5, 32, 32, 3) and clips.dtype == np.uint8


@pytest.mark.parametrize("generate", [shapes.generate, mnist.generate])
def test_numpy_generators_repeat_for_a_seed_and_change_with_it(generate):
    np.testing.assert_array_equal(generate(2, 4, 64, 7), generate(2, 4, 64, 7))
    assert not np.array_equal(generate(2, 4, 64, 7), generate(2, 4, 64, 8))


@pytest.mark.parametrize("generate", [shapes.generate, mnist.generate])
def test_generators_rendered_in_chunks_match_one_call(generate):
    whole = generate(4, 3, 16, 5)
    parts = [generate(2, 3, 16, 5, first_index=0), generate(2, 3, 16, 5, first_index=2)]
    np.testing.assert_array_equal(whole, np.concatenate(parts))


def test_shapes_move_over_a_dark_background():
    clip = shapes.generate(1, 10, 64, 0)[0]
    assert np.median(clip) == shapes.BACKGROUND
    assert not np.array_equal(clip[0], clip[-1])


def test_mnist_ships_five_thousand_real_digits():
    digits = mnist.mnist_digits()
    assert digits.shape == (5000, 28, 28) and digits.dtype == np.uint8
    assert digits.max() == 255 and digits[:, 0, :].max() == 0  # ink inside, blank top row


def test_mnist_frames_show_two_grey_digits_that_move():
    clip = mnist.generate(1, 10, 64, 3)[0]
    assert np.array_equal(clip[..., 0], clip[..., 2])  # grey rendered as RGB
    ink = (clip[..., 0] > 128).mean(axis=(1, 2))  # fraction of bright pixels per frame
    assert np.all((ink > 0.02) & (ink < 0.3))
    assert not np.array_equal(clip[0], clip[-1])


# pushsim: a few short clips, rendered once for the module ---------------------------------------


@pytest.fixture(scope="module")
def push_clips():
    from lgcvd_train.data import pushsim

    return pushsim.render_clips(3, 20, 32, seed=0)


def test_pushsim_renders_uint8_clips(push_clips):
    for clip in push_clips:
        assert clip.video.shape == (20, 32, 32, 3) and clip.video.dtype == np.uint8
        assert clip.video.std() > 20  # tray, arm and objects: not a flat image


def test_pushsim_arm_moves_and_pushes_objects_in_most_clips(push_clips):
    assert all(clip.effector_travel > 0.1 for clip in push_clips)
    pushed = [clip.object_travel.max() > 0.02 for clip in push_clips]
    assert sum(pushed) >= 2
    assert all(2 <= clip.object_paths.shape[1] <= 6 for clip in push_clips)


def test_pushsim_repeats_for_a_seed_clip_by_clip(push_clips):
    from lgcvd_train.data import pushsim

    again = pushsim.generate(1, 20, 32, seed=0, first_index=2)[0]
    np.testing.assert_array_equal(again, push_clips[2].video)
    other = pushsim.generate(1, 20, 32, seed=1, first_index=2)[0]
    assert not np.array_equal(other, push_clips[2].video)


# sha256 of pushsim.generate(1, 3, 32, seed=1) as the datasets of docs/results.md were rendered
# (pybullet 3.2.x, this project's pins): a change to pushsim must leave every dataset as it was.
PUSHSIM_CLIP_SHA256 = "61fcbd9ef3297ffb44181bfb1be66a9570a9e283fd564a17708c98142ef93b70"


def test_a_pushsim_clip_renders_byte_for_byte_as_the_recorded_datasets_were():
    from lgcvd_train.data import pushsim

    video = pushsim.generate(1, 3, 32, seed=1)
    assert hashlib.sha256(video.tobytes()).hexdigest() == PUSHSIM_CLIP_SHA256


# Array files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_saved_videos_load_back_unchanged(tmp_path, suffix):
    path = tmp_path / f"sub/set{suffix}"
    save_videos(path, list(videos()))
    np.testing.assert_array_equal(load_videos(path), videos())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_streamed_npy_matches_the_clips_written(tmp_path):
    path = tmp_path / "set.npy"
    save_video_stream(path, iter(videos(3)), 3)
    np.testing.assert_array_equal(load_videos(path), videos(3))


def test_a_short_stream_leaves_no_file(tmp_path):
    path = tmp_path / "set.npy"
    with pytest.raises(DataError, match="^expected 3 clips for .* but got 2; nothing was written$"):
        save_video_stream(path, iter(videos(2)), 3)
    assert list(tmp_path.iterdir()) == []


def test_saving_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "set.npz"
    save_videos(path, videos())
    with pytest.raises(OutputExistsError) as error:
        save_videos(path, videos(seed=1))
    assert str(error.value) == f"{path} already exists; pass --force to overwrite it"
    save_videos(path, videos(seed=1), force=True)
    np.testing.assert_array_equal(load_videos(path), videos(seed=1))


def test_an_npz_with_one_array_of_any_name_loads(tmp_path):
    np.savez(tmp_path / "a.npz", clips=videos())
    np.testing.assert_array_equal(load_videos(tmp_path / "a.npz"), videos())


def test_crop_and_resize_keeps_the_centre_square():
    video = np.zeros((2, 16, 24, 3), np.uint8)
    video[:, :, 4:20] = 100  # the centre 16x16 square; 4 columns of black each side
    out = crop_and_resize(video, 8)
    assert out.shape == (2, 8, 8, 3) and np.all(out == 100)
    assert crop_and_resize(video, 32).shape == (2, 32, 32, 3)


# load_dataset dispatch -------------------------------------------------------------------------


def test_load_dataset_runs_a_generator_by_name():
    data = load_dataset("shapes", 16, num_videos=3, frames=14, seed=2)
    assert len(data) == 3 and data[0].shape == (14, 16, 16, 3)
    np.testing.assert_array_equal(np.stack(data), DATA_GENERATORS["shapes"](3, 14, 16, 2))


def test_load_dataset_reads_an_array_and_resizes_it(tmp_path):
    save_videos(tmp_path / "a.npz", videos(2, 14, 16, 24))
    data = load_dataset(str(tmp_path / "a.npz"), 8)
    assert len(data) == 2 and data[1].shape == (14, 8, 8, 3)
    np.testing.assert_array_equal(data[0], crop_and_resize(videos(2, 14, 16, 24)[0], 8))


def test_load_dataset_hands_a_video_folder_to_the_video_loader(tmp_path, monkeypatch):
    from lgcvd_train.data import videos as video_module

    (tmp_path / "clip.mp4").write_bytes(b"")
    calls = []
    monkeypatch.setattr(
        video_module, "load_video_folder", lambda *args: calls.append(args) or ["ok"]
    )
    assert load_dataset(str(tmp_path), 32, min_frames=20) == ["ok"]
    assert calls == [(tmp_path, 32, 20, Framing(), False)]  # the crop, and whole videos


# One-line errors for bad data -------------------------------------------------------------------


def error_of(source: str, **kwargs) -> str:
    with pytest.raises(DataError) as error:
        load_dataset(source, 8, **kwargs)
    return str(error.value)


def test_unknown_generator_names_the_known_ones():
    assert error_of("pushsm") == (
        "unknown generator 'pushsm'; known generators: mnist, pushsim, shapes "
        "(or pass a folder of videos or a .npy/.npz file)"
    )


def test_missing_path_is_named(tmp_path):
    path = tmp_path / "nope.npz"
    assert error_of(str(path)) == f"{path} does not exist; check the path"


def test_empty_folder_is_named(tmp_path):
    assert error_of(str(tmp_path)) == f"folder {tmp_path} is empty; put the training videos in it"


def test_unsupported_file_type_is_named(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert error_of(str(tmp_path / "a.txt")) == (
        f"{tmp_path / 'a.txt'} is neither a folder of videos nor a .npy/.npz array; "
        "pass one of those or a generator name"
    )


@pytest.mark.parametrize(
    ("array", "found"),
    [
        (np.zeros((2, 14, 8, 8, 3), np.float32), "float32 of shape 2×14×8×8×3"),
        (np.zeros((2, 14, 8, 8), np.uint8), "uint8 of shape 2×14×8×8"),
        (np.zeros((14, 8, 8, 3), np.uint8), "uint8 of shape 14×8×8×3"),
    ],
)
def test_wrong_dtype_or_shape_says_what_was_expected_and_found(tmp_path, array, found):
    np.save(tmp_path / "a.npy", array)
    assert error_of(str(tmp_path / "a.npy")) == (
        f"{tmp_path / 'a.npy'}: expected a uint8 array of shape N×T×H×W×3, found {found}; "
        "convert it to that layout and dtype and save it again"
    )


def test_an_array_without_videos_is_named(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((0, 14, 8, 8, 3), np.uint8))
    assert error_of(str(tmp_path / "a.npy")) == (
        f"{tmp_path / 'a.npy'} holds no videos (N=0); save at least one video in it"
    )


def test_too_few_frames_in_an_array_is_named(tmp_path):
    save_videos(tmp_path / "a.npz", videos(t=10))
    assert error_of(str(tmp_path / "a.npz")) == (
        f"{tmp_path / 'a.npz'}: videos have 10 frames but training needs at least 14; "
        "use clips of 14 frames or more"
    )


def test_too_few_generated_frames_is_named():
    assert error_of("shapes", frames=8) == (
        "generator 'shapes' was asked for 8 frames per video but training needs at least 14; "
        "ask for 14 frames or more"
    )


def test_npz_with_several_arrays_but_no_videos_key_names_the_keys(tmp_path):
    np.savez(tmp_path / "a.npz", a=videos(), b=videos())
    assert error_of(str(tmp_path / "a.npz")) == (
        f"{tmp_path / 'a.npz'} holds arrays [a, b], not one named 'videos'; "
        "save the videos with numpy.savez(path, videos=array)"
    )


def test_an_unreadable_array_file_is_named(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"not a zip")
    message = error_of(str(tmp_path / "a.npz"))
    assert message.startswith(f"cannot read {tmp_path / 'a.npz'} as a numpy array (")
    assert message.endswith("); write it with numpy.save/savez") and "\n" not in message


# Tools -----------------------------------------------------------------------------------------


def test_make_dataset_writes_the_generator_output_and_refuses_to_overwrite(tmp_path, monkeypatch):
    main = tool("make_dataset").main
    out = tmp_path / "s.npz"
    args = ["shapes", "-n", "10", "-o", str(out), "--frames", "4", "--size", "16", "--seed", "3"]
    monkeypatch.setattr(sys, "argv", ["tools/make_dataset.py", *args])
    result = CliRunner().invoke(main, [*args, "--workers", "2"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(load_videos(out), shapes.generate(10, 4, 16, 3))
    # the command is recorded beside the array; lgcvd-train copies it into its provenance
    assert recorded_command(out) == "python tools/make_dataset.py " + " ".join(args)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1
    assert again.output.strip().splitlines()[-1] == (
        f"Error: {out} already exists; pass --force to overwrite it"
    )
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0


def write_city_frames(root: Path, city: str, seq: int, count: int) -> None:
    folder = root / "leftImg8bit_sequence" / "val" / city
    folder.mkdir(parents=True, exist_ok=True)
    for frame in range(count):
        pixels = np.full((20, 40, 3), 10 * frame, np.uint8)
        pixels[:, 10:30] = (200, 100, 10 * frame)  # the centre square carries the colour
        name = f"{city}_{seq:06d}_{frame + 19:06d}_leftImg8bit.png"
        Image.fromarray(pixels).save(folder / name)


def test_cityscapes_sequences_become_cropped_clips_in_frame_order(tmp_path):
    write_city_frames(tmp_path, "bonn", 3, 4)
    write_city_frames(tmp_path, "aachen", 7, 4)
    out = tmp_path / "city.npy"
    args = [str(tmp_path), "--split", "val", "-o", str(out), "--size", "8", "--frames", "4"]
    result = CliRunner().invoke(tool("convert_cityscapes").main, args)
    assert result.exit_code == 0, result.output
    clips = load_videos(out)
    assert clips.shape == (2, 4, 8, 8, 3)
    assert np.all(np.abs(clips[..., 0].astype(int) - 200) <= 1)  # side columns cropped away
    np.testing.assert_allclose(clips[0, :, 4, 4, 2], [0, 10, 20, 30], atol=1)  # frame order


def test_cityscapes_errors_name_the_folder_and_the_short_sequence(tmp_path):
    main = tool("convert_cityscapes").main
    result = CliRunner().invoke(main, [str(tmp_path), "-o", str(tmp_path / "c.npz")])
    assert result.output.strip() == (
        f"Error: no leftImg8bit_sequence/train folder under {tmp_path}; pass the folder where "
        "leftImg8bit_sequence_trainvaltest.zip was unpacked"
    )
    write_city_frames(tmp_path, "bonn", 3, 2)
    args = [str(tmp_path), "--split", "val", "-o", str(tmp_path / "c.npz"), "--frames", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: sequence bonn_000003_000019 has 2 frames in a row (to frame 000020), fewer "
        "than 4; re-download it or lower --frames"
    )


def test_bair_frames_decode_from_raw_bytes_in_order():
    bair = tool("convert_bair")
    clip = np.random.default_rng(0).integers(0, 256, (30, 64, 64, 3), dtype=np.uint8)
    features = {f"{i}/image_aux1/encoded": clip[i].tobytes() for i in range(30)}
    np.testing.assert_array_equal(bair.decode_clip(features), clip)
    del features["29/image_aux1/encoded"]
    with pytest.raises(DataError, match="^record lacks a raw 64×64×3 '29/image_aux1/encoded'"):
        bair.decode_clip(features)
