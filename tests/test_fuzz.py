"""Fuzzed inputs, property-based (hypothesis): whatever frame arrays the embedding API is given
(dtypes, shapes, strides, views, empty, extreme values) and whatever a bundle's manifest.json
says (fields removed, retyped, out of range, added), the outcome is a result or a one-line
LgcvdError, never another exception. The video reader's fuzzing is tests/test_fuzz_video.py.

Runs are derandomized (the same cases every run) and write no example database; each target runs
a fixed number of cases (`CASES`), counted, so that the README's reliability table can say how
many."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import export_tiny_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lgcvd_runtime.api import load
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.info import describe
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.framing import FITS, Framing
from lgcvd_runtime.ood import SCORE

CASES = {"predict": 120, "interpolate": 60, "stream": 60, "manifest": 120}
SIZE = 32  # the tiny model's frames
# Hypothesis caches what it reads of the sources in a folder (.hypothesis in the current one,
# unless told otherwise, read when a test first runs): outside the checkout.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "lgcvd-hypothesis")
)


def fuzz(cases: int):
    """Hypothesis settings of every fuzz target (here and in test_fuzz_video.py): derandomized,
    no example database, no deadline."""
    return settings(
        max_examples=cases,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def outcome(call) -> object:
    """The result of `call()`, or the LgcvdError it raised, checked to be one line."""
    try:
        return call()
    except LgcvdError as err:
        message = str(err)
        assert message and "\n" not in message, repr(message)
        return err


# ----------------------------------------------------------------------------- frame arrays

DTYPES = ["uint8"] * 6 + ["int8", "uint16", "int64", "float16", "float32", "float64", "bool"]
DTYPES += ["complex64", "<U2", "object", "datetime64[s]"]
FILLS = ("random", "zeros", "max", "min", "nan", "inf", "huge", "negative zero")


def values(dtype: np.dtype, shape: tuple[int, ...], fill: str, seed: int) -> np.ndarray:
    """An array of `dtype` and `shape` filled as `fill` says: random values, or an extreme."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        extreme = {"max": info.max, "min": info.min}.get(fill)
    elif dtype.kind in "fc":
        info = np.finfo(dtype)
        extreme = {"max": info.max, "min": info.min, "nan": math.nan, "inf": math.inf}.get(fill)
        extreme = {"huge": 1e300, "negative zero": -0.0}.get(fill, extreme)
    else:
        extreme = None
    if fill == "zeros" or dtype.kind in "OUMb" and fill != "random":
        return np.zeros(shape, dtype)
    if extreme is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.full(shape, extreme).astype(dtype)
    raw = np.random.default_rng(seed).integers(0, 256, shape)
    return raw.astype(dtype) if dtype.kind != "M" else raw.astype("datetime64[s]")


SHAPES = st.one_of(
    st.tuples(  # clip-like: (T, H, W, C)
        st.integers(0, 4), st.integers(0, 40), st.integers(0, 40), st.sampled_from([3, 3, 1, 4, 0])
    ),
    st.lists(st.integers(0, 5), min_size=0, max_size=6).map(tuple),  # anything small
)


def view(array: np.ndarray, how: str) -> object:
    """`array` as the caller might hand it over: a view with other strides, read-only, a
    broadcast, Python lists, or a list of its first axis."""
    if how == "reversed" and array.ndim > 1:
        return array[::-1, ..., ::-1]
    if how == "every other" and array.ndim > 1:
        return array[:, ::2]
    if how == "fortran":
        return np.asfortranarray(array)
    if how == "swapped" and array.ndim > 2:
        return np.swapaxes(array, 1, 2)
    if how == "read-only":
        array = array.copy()
        array.flags.writeable = False
        return array
    if how == "broadcast" and array.ndim:
        return np.broadcast_to(array[:1], array.shape)  # zero strides
    if how == "nested lists" and array.size < 2000:
        return array.tolist()
    if how == "list" and array.ndim:
        return list(array)
    return array


VIEWS = ("as is", "reversed", "every other", "fortran", "swapped", "read-only", "broadcast")
VIEWS += ("nested lists", "list")


@st.composite
def wild(draw) -> object:
    """Any small array of any dtype and shape, filled with anything, in any view."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    array = values(dtype, draw(SHAPES), draw(st.sampled_from(FILLS)), draw(st.integers(0, 9)))
    return view(array, draw(st.sampled_from(VIEWS)))


@st.composite
def clip(draw, frames: int | None = None) -> object:
    """A uint8 RGB clip (T, H, W, 3) of any size from 1x1, T frames (drawn where None), in any
    view: the inputs that must give a forecast."""
    t = frames if frames is not None else draw(st.integers(1, 4))
    shape = (t, draw(st.integers(1, 48)), draw(st.integers(1, 48)), 3)
    array = values(np.dtype(np.uint8), shape, draw(st.sampled_from(FILLS)), draw(st.integers(0, 9)))
    return view(array, draw(st.sampled_from(VIEWS)))


@st.composite
def cameras(draw) -> list:
    """A list of 1 to 3 clips of one length, each of its own size."""
    t = draw(st.integers(1, 3))
    return draw(st.lists(clip(t), min_size=1, max_size=3))


ODD = st.sampled_from([None, 7, "frames", b"\x00", [], [[]], [np.zeros((2, 4, 4, 3), np.uint8), 1]])
FRAMES = st.one_of(clip(), wild(), ODD)
CLIPS = st.one_of(clip(), cameras(), wild(), st.lists(FRAMES, min_size=1, max_size=3), ODD)
FRAMINGS = st.builds(
    Framing,
    fit=st.sampled_from([*FITS, "zoom"]),
    roi=st.none() | st.tuples(*[st.integers(-2, 40)] * 4),
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return Path(export_tiny_bundle(tmp_path_factory))


@pytest.fixture(scope="module")
def model(tiny):
    with load(tiny, backend="onnxruntime", sampler="ddim", steps=1, seed=0, threads=1) as model:
        yield model


def checked(window):
    """A window whose frames are uint8 at the model's size."""
    assert window.frames.dtype == np.uint8 and window.frames.shape[-3:] == (SIZE, SIZE, 3)
    return window


def first_window(windows):
    """The first window of a call, checked."""
    return checked(next(iter(windows)))


def test_predict_and_interpolate_give_a_window_or_one_line_whatever_the_frames(model):
    counted = {"predict": 0, "interpolate": 0}

    @fuzz(CASES["predict"])
    @given(clips=CLIPS, framing=FRAMINGS)
    def predict(clips, framing):
        counted["predict"] += 1
        model.framing = framing
        outcome(lambda: first_window(model.predict(clips, n=1, seed=0)))

    @fuzz(CASES["interpolate"])
    @given(clips=CLIPS)
    def interpolate(clips):
        counted["interpolate"] += 1
        model.framing = Framing()
        outcome(lambda: first_window(model.interpolate(clips, seed=0)))

    predict()
    interpolate()
    assert counted == {k: CASES[k] for k in counted}


def frame_of(clip) -> object:
    """The first frame of a clip-like value, else the value itself."""
    if isinstance(clip, np.ndarray) and clip.ndim and len(clip) or isinstance(clip, list) and clip:
        return clip[0]
    return clip


def test_a_stream_gives_windows_or_one_line_whatever_frames_are_pushed(model):
    counted = []

    @fuzz(CASES["stream"])
    @given(pushed=st.lists(FRAMES.map(frame_of), min_size=1, max_size=4))
    def stream(pushed):
        counted.append(len(pushed))
        model.framing = Framing()
        forecaster = model.stream(p=2, n=1)
        for frame in pushed:
            outcome(lambda frame=frame: [checked(w) for w in forecaster.push(frame)])

    stream()
    assert len(counted) == CASES["stream"]


# ----------------------------------------------------------------------------- manifests

OUT_OF_RANGE = st.sampled_from([0, -1, 2**64, 1e308, -1e-300, math.nan, math.inf, -math.inf])
RETYPED = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
)


def paths(value, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value: the key or index path to each node below the root."""
    if not isinstance(value, (dict, list)):
        return []
    found = []
    for key, child in value.items() if isinstance(value, dict) else enumerate(value):
        found += [(*prefix, key), *paths(child, (*prefix, key))]
    return found


def mutated(manifest: dict, path: tuple, how: str, new) -> dict:
    """A copy of `manifest` with the node at `path` removed, replaced by `new`, or with a new
    field "fuzz" = `new` beside it (or in it, where it is an object)."""
    copied = json.loads(json.dumps(manifest))
    parent = copied
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if how == "remove":
        del parent[key]
    elif how == "replace":
        parent[key] = new
    elif isinstance(parent[key], dict):
        parent[key]["fuzz"] = new
    elif isinstance(parent, dict):
        parent["fuzz"] = new
    else:
        parent.append(new)
    return copied


@pytest.fixture(scope="module")
def fuzzed_bundle(tiny, tmp_path_factory) -> tuple[Path, dict]:
    """A copy of the tiny bundle whose manifest also has a frame period, a region and a
    calibration (optional fields, to be fuzzed too), and that manifest."""
    bundle = tmp_path_factory.mktemp("fuzz") / "tiny.lgcvd"
    shutil.copytree(tiny, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["framing"] = {"period_s": 0.1, "fit": "pad", "roi": [0, 0, 32, 30]}
    percentiles = {"50": 1.0, "95": 2.0, "99": 3.0}
    manifest["ood"] = {"score": SCORE, "percentiles": percentiles, "clips": 20}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    load_manifest(bundle)
    return bundle, manifest


def use(bundle: Path) -> None:
    """Everything a user does with a bundle: info, load, one forecast."""
    describe(bundle, "ddim", 1)
    with load(bundle, backend="onnxruntime", sampler="ddim", steps=1, threads=1) as model:
        clip = np.zeros((2, 40, 36, 3), np.uint8)
        first_window(model.predict(clip, n=1, seed=0))


def test_a_fuzzed_manifest_loads_or_is_refused_in_one_line(fuzzed_bundle):
    bundle, manifest = fuzzed_bundle
    places = paths(manifest)
    counted = []

    @fuzz(CASES["manifest"])
    @given(
        place=st.sampled_from(places) | st.sampled_from([p for p in places if len(p) <= 2]),
        how=st.sampled_from(["remove", "replace", "add"]),
        new=OUT_OF_RANGE | RETYPED,
    )
    def edit(place, how, new):
        counted.append(place)
        (bundle / "manifest.json").write_text(json.dumps(mutated(manifest, place, how, new)))
        outcome(lambda: use(bundle))

    try:
        edit()
    finally:
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert len(counted) == CASES["manifest"]


# ----------------------------------------------------------------------------- what it found


def test_a_ragged_nested_list_of_frames_is_one_line(model):
    ragged = [[[[0, 0, 0]], [[0, 0]]]]  # a frame whose rows differ: numpy cannot shape it
    with pytest.raises(LgcvdError) as err:
        first_window(model.predict(ragged, n=1))
    assert str(err.value) == (
        "frames of one clip must be arrays, got a ragged nested list; pass a (T, H, W, 3) uint8 "
        "array or a list of (H, W, 3) ones"
    )


@pytest.mark.parametrize(
    "place, value, problem",
    [
        (("framing", "roi"), [0, 0, 32], "roi must be 4 whole numbers x, y, w, h, got [0, 0, 32]"),
        (("framing", "period_s"), 0, "period_s must be 1e-09 to 1e+09 s, got 0"),
        (("framing", "period_s"), math.inf, "period_s must be 1e-09 to 1e+09 s, got inf"),
        (("graphs", "context", "inputs", 0, "shape", 1), None, "prev has shape ['batch', None"),
        (("graphs", "denoiser", "outputs", 0, "shape", 0), math.nan, "out has shape [nan, 24"),
        (("graphs", "denoiser", "inputs", 0, "name"), 5, "tensor name and dtype must be text"),
        (("format_version",), math.inf, "cannot convert float infinity to integer"),
        (("max_batch",), -math.inf, "cannot convert float infinity to integer"),
    ],
    ids=[
        "region of 3",
        "period 0",
        "period inf",
        "dim None",
        "dim nan",
        "name",
        "version",
        "batch",
    ],
)
def test_a_manifest_field_out_of_range_is_refused_as_a_corrupt_manifest(
    fuzzed_bundle, place, value, problem
):
    bundle, manifest = fuzzed_bundle
    (bundle / "manifest.json").write_text(json.dumps(mutated(manifest, place, "replace", value)))
    try:
        with pytest.raises(LgcvdError) as err:
            use(bundle)
    finally:
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert str(err.value).startswith(f"{bundle / 'manifest.json'}: corrupt manifest ({problem}")
    assert str(err.value).endswith("); export the bundle again")
