"""The bundle manifest (lgcvd_runtime/bundle.py) and the check of loaded graphs against it
(backends/graph_io.check_graph_io): every malformed or mismatched bundle is one line; a shipped
manifest names no path of the machine that made it (lgcvd_runtime/portable.py)."""

from __future__ import annotations

import json

import pytest

from lgcvd_runtime.backends.graph_io import check_graph_io
from lgcvd_runtime.bundle import BATCH, MANIFEST, GraphSpec, TensorSpec, load_manifest
from lgcvd_runtime.errors import BundleError
from lgcvd_runtime.portable import portable, portable_record

FIX = "the bundle's graphs do not match its manifest (files swapped or edited?); export it again"
DENOISER = GraphSpec(
    "denoiser.onnx",
    "0" * 64,
    (
        TensorSpec("x_t", "float32", (BATCH, 24, 8, 8)),
        TensorSpec("t", "float32", (BATCH,)),
    ),
    (TensorSpec("out", "float32", (BATCH, 24, 8, 8)),),
)
GOOD_IN = [("x_t", "float32", (None, 24, 8, 8)), ("t", "float32", (None,))]
GOOD_OUT = [("out", "float32", (None, 24, 8, 8))]


def test_a_graph_matching_its_manifest_passes_in_any_input_order():
    check_graph_io(DENOISER, GOOD_IN, GOOD_OUT, "d.onnx")
    check_graph_io(DENOISER, GOOD_IN[::-1], GOOD_OUT, "d.onnx")  # fed by name, not position
    dynamic = [("x_t", "float32", (None, None, None, None)), ("t", "float32", (None,))]
    check_graph_io(DENOISER, dynamic, GOOD_OUT, "d.onnx")  # dynamic dims fit any size


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (
            [("prev", "float32", (None, 24, 8, 8))],
            GOOD_OUT,
            f"d.onnx has inputs (prev) but the manifest names (x_t, t); {FIX}",
        ),
        (
            GOOD_IN,
            [("ctx_k0", "float32", (None, 4, 64, 32))],
            f"d.onnx has outputs (ctx_k0) but the manifest names (out); {FIX}",
        ),
        (
            [("x_t", "float16", (None, 24, 8, 8)), GOOD_IN[1]],
            GOOD_OUT,
            "d.onnx input 'x_t' is float16 [?, 24, 8, 8] but the manifest says float32 "
            f"[batch, 24, 8, 8]; {FIX}",
        ),
        (
            [("x_t", "float32", (None, 24, 16, 16)), GOOD_IN[1]],
            GOOD_OUT,
            "d.onnx input 'x_t' is float32 [?, 24, 16, 16] but the manifest says float32 "
            f"[batch, 24, 8, 8]; {FIX}",
        ),
        (
            [("x_t", "float32", (1, 24, 8, 8)), GOOD_IN[1]],  # batch fixed at export
            GOOD_OUT,
            "d.onnx input 'x_t' is float32 [1, 24, 8, 8] but the manifest says float32 "
            f"[batch, 24, 8, 8]; {FIX}",
        ),
        (
            [("x_t", "float32", (None, 24, 8)), GOOD_IN[1]],
            GOOD_OUT,
            "d.onnx input 'x_t' is float32 [?, 24, 8] but the manifest says float32 "
            f"[batch, 24, 8, 8]; {FIX}",
        ),
    ],
)
def test_a_graph_that_differs_from_its_manifest_is_one_line(inputs, outputs, message):
    with pytest.raises(BundleError) as err:
        check_graph_io(DENOISER, inputs, outputs, "d.onnx")
    assert str(err.value) == message


def write(tmp_path, manifest) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ([1, 2], "not an lgcvd bundle manifest (a JSON list, not an object)"),
        ("bundle", "not an lgcvd bundle manifest (a JSON str, not an object)"),
        (None, "not an lgcvd bundle manifest (a JSON NoneType, not an object)"),
    ],
)
def test_a_manifest_that_is_not_a_json_object_is_one_line(tmp_path, manifest, message):
    write(tmp_path, manifest)
    with pytest.raises(BundleError) as err:
        load_manifest(tmp_path)
    assert str(err.value) == f"{tmp_path / MANIFEST}: {message}; export the bundle again"


def test_a_manifest_of_another_format_is_one_line(tmp_path):
    write(tmp_path, {"format": "other"})
    with pytest.raises(BundleError) as err:
        load_manifest(tmp_path)
    assert str(err.value) == (
        f"{tmp_path / MANIFEST}: not an lgcvd bundle manifest (format 'other'); "
        "pass a NAME.lgcvd folder made by lgcvd-export"
    )


def real_manifest() -> dict:
    from lgcvd_runtime.api import ASSETS

    return json.loads((ASSETS / "default.lgcvd" / MANIFEST).read_text())


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.update(graphs=[]),  # a list where an object belongs
        lambda m: m.update(model=7),
        lambda m: m["graphs"]["denoiser"].update(inputs=[3]),
        lambda m: m.update(max_batch="many"),
    ],
)
def test_a_manifest_with_a_malformed_part_is_a_corrupt_manifest(tmp_path, change):
    manifest = real_manifest()
    change(manifest)
    write(tmp_path, manifest)
    with pytest.raises(BundleError) as err:
        load_manifest(tmp_path, verify=False)
    assert str(err.value).startswith(f"{tmp_path / MANIFEST}: corrupt manifest (")
    assert str(err.value).endswith("); export the bundle again")


def test_a_model_field_from_a_newer_lgcvd_says_to_upgrade(tmp_path):
    manifest = real_manifest()
    manifest["model"]["temporal_layers"] = 2
    write(tmp_path, manifest)
    with pytest.raises(BundleError) as err:
        load_manifest(tmp_path, verify=False)
    assert str(err.value) == (
        f"{tmp_path}: written by a newer lgcvd (the bundle's model has fields temporal_layers "
        "that this version does not know); upgrade lgcvd (pip install -U lgcvd)"
    )


def strings(value) -> list[str]:
    """Every string in a JSON-like value, words of sentences and commands one by one."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return value.split(" ") if isinstance(value, str) else []


def test_the_shipped_bundle_names_no_path_of_the_machine_that_made_it():
    from lgcvd_runtime.api import ASSETS

    manifest = real_manifest()
    made = strings(manifest["provenance"]) + strings(manifest["ood"])
    assert "runs/tune3/checkpoint.safetensors" in made  # paths stay, relative
    assert [s for s in made if s.startswith("/")] == []
    assert load_manifest(ASSETS / "default.lgcvd").provenance == manifest["provenance"]


def test_a_shipped_record_makes_absolute_paths_relative_or_short(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    record = {
        "checkpoint": f"{tmp_path}/runs/a/checkpoint.safetensors",
        "data": "/elsewhere/deep/data/clips.npy",
        "seed": 3,
        "init": [{"bundle": "given/as/typed.lgcvd", "data_command": "make -o /srv/x/y.npy -n 2"}],
    }
    assert portable_record(record) == {
        "checkpoint": "runs/a/checkpoint.safetensors",
        "data": "data/clips.npy",
        "seed": 3,
        "init": [{"bundle": "given/as/typed.lgcvd", "data_command": "make -o x/y.npy -n 2"}],
    }
    assert portable("/top.npy") == "top.npy"
