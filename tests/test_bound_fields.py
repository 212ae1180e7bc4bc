"""The manifest's maths fields are bound to its graphs: export records them in every graph's
ONNX metadata, and a manifest edited afterwards is refused in one line (lgcvd_runtime.bundle)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from conftest import export_tiny_bundle

import lgcvd_runtime
from lgcvd_runtime.api import load
from lgcvd_runtime.bundle import graph_metadata, load_manifest, sha256_file
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.errors import BundleError

# manifest field (section, key) -> an edited value; the tiny bundle: fp32, max batch 4, v, T 1000
EDITS = [
    (("model", "parameterization"), "eps", '"eps"', '"v"'),
    (("model", "image_size"), 64, "64", "32"),
    (("model", "frames"), 6, "6", "8"),
    (("model", "cond_slots"), 3, "3", "2"),
    (("model", "channels"), 1, "1", "3"),
    (("model", "residual"), True, "true", "false"),
    (("schedule", "T"), 500, "500", "1000"),
    (("schedule", "s"), 0.01, "0.01", "0.008"),
    (("schedule", "max_beta"), 0.999, "0.999", "0.9999"),
    ((None, "precision"), "fp16", '"fp16"', '"fp32"'),
    ((None, "max_batch"), 8, "8", "4"),
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return Path(export_tiny_bundle(tmp_path_factory))


def copy_with(tiny: Path, folder: Path, edit) -> Path:
    """A copy of the tiny bundle whose manifest `edit(manifest dict)` changed."""
    bundle = folder / "edited.lgcvd"
    shutil.copytree(tiny, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


def test_every_graph_records_the_manifests_maths_fields_as_json(tiny):
    manifest = json.loads((tiny / "manifest.json").read_text())
    expected = {
        **{f"lgcvd.model.{k}": json.dumps(v) for k, v in manifest["model"].items()},
        **{f"lgcvd.schedule.{k}": json.dumps(v) for k, v in manifest["schedule"].items()},
        "lgcvd.precision": '"fp32"',
        "lgcvd.max_batch": "4",
        "lgcvd.plan": "null",  # a model trained on the ordinary loss: no plan (format 3)
    }
    assert "lgcvd.model.residual" in expected and "lgcvd.schedule.T" in expected
    for graph in manifest["graphs"].values():
        recorded = {p.key: p.value for p in onnx.load(str(tiny / graph["file"])).metadata_props}
        assert recorded == expected
        assert graph_metadata(tiny / graph["file"]) == recorded  # the runtime's protobuf read


def test_an_unchanged_bundle_loads(tiny):
    assert load_manifest(tiny).model.parameterization == "v"


@pytest.mark.parametrize(("field", "value", "shown", "recorded"), EDITS, ids=lambda e: str(e))
def test_an_edited_bound_field_is_refused_in_one_line_naming_it(
    tiny, tmp_path, field, value, shown, recorded
):
    section, key = field

    def edit(manifest):
        (manifest[section] if section else manifest)[key] = value

    bundle = copy_with(tiny, tmp_path, edit)
    name = f"{section}.{key}" if section else key
    with pytest.raises(BundleError) as err:
        load(bundle)
    assert str(err.value) == (
        f"{bundle / 'manifest.json'}: {name} is {shown} in the manifest but {recorded} in "
        "context.onnx; the manifest was edited, export the bundle again"
    )


def test_lgcvd_run_predict_refuses_an_edited_manifest_and_writes_nothing(tiny, tmp_path):
    bundle = copy_with(tiny, tmp_path, lambda m: m["model"].update(parameterization="eps"))
    out = tmp_path / "out.mp4"
    video = Path(lgcvd_runtime.__file__).parent / "assets" / "demo.mkv"
    args = ["predict", "--model", str(bundle), "-n", "2", "-o", str(out), str(video)]
    result = CliRunner().invoke(run_main, args)
    assert result.exit_code == 1
    assert result.output == (
        f'Error: {bundle / "manifest.json"}: model.parameterization is "eps" in the manifest '
        'but "v" in context.onnx; the manifest was edited, export the bundle again\n'
    )
    assert not out.exists()


def strip_bound_fields(bundle: Path, version: int) -> None:
    """Remove the graphs' metadata (as export wrote graphs before it bound fields), set the
    manifest's hashes to the new files and its format version to `version`."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    for graph in manifest["graphs"].values():
        model = onnx.load(str(bundle / graph["file"]))
        del model.metadata_props[:]
        onnx.save(model, str(bundle / graph["file"]))
        graph["sha256"] = sha256_file(bundle / graph["file"])
    manifest["format_version"] = version
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_version_1_bundle_without_bound_fields_loads(tiny, tmp_path):
    bundle = tmp_path / "old.lgcvd"
    shutil.copytree(tiny, bundle)
    strip_bound_fields(bundle, version=1)
    assert load_manifest(bundle).format_version == 1


def test_a_version_2_bundle_without_bound_fields_is_refused(tiny, tmp_path):
    bundle = tmp_path / "unbound.lgcvd"
    shutil.copytree(tiny, bundle)
    strip_bound_fields(bundle, version=2)
    with pytest.raises(BundleError) as err:
        load_manifest(bundle)
    assert str(err.value) == (
        f"{bundle / 'context.onnx'}: the graph records none of the manifest's bound fields, "
        "which format version 2 requires; export the bundle again"
    )
