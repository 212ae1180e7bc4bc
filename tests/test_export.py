"""lgcvd-export: graphs, fp16, the parity gate, atomic bundle writing and one-line errors."""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from conftest import random_model

from lgcvd_export import parity
from lgcvd_export.cli import main
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.errors import BundleError, DataError
from lgcvd_train.checkpoint import save_checkpoint
from lgcvd_train.config import TrainConfig
from lgcvd_train.data import shapes


def write_checkpoint(run_dir: Path, model) -> Path:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    extra = {
        "provenance": {"data": "shapes", "data_seed": 0, "command": "lgcvd-train --preset tiny"}
    }
    return save_checkpoint(run_dir, model, copy.deepcopy(model), opt, 3, TrainConfig(), extra)


# The four real BAIR clips of the project's shared data, beside the checkout.
BAIR_REAL = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "bair-real" / "bair_real_clips.npz"
)


def gate_frames() -> Path:
    """Frames for the gate's "real" checks: the real BAIR clips where shared/ is beside the
    checkout (as in CI), else moving shapes, so that the gate always runs all 8 checks."""
    if BAIR_REAL.is_file():
        return BAIR_REAL
    path = Path(tempfile.gettempdir()) / "lgcvd-test-gate-frames.npz"
    if not path.exists():
        np.savez(path, ground_truth=shapes.generate(2, 16, 32, 0))
    return path


def export(*args: str):
    return CliRunner().invoke(main, [*(str(a) for a in args), "--real-frames", str(gate_frames())])


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "run", model)


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def bundle(request, tmp_path_factory, checkpoint) -> Path:
    out = tmp_path_factory.mktemp("bundles") / f"tiny-{request.param}.lgcvd"
    flags = ["--fp16"] if request.param == "fp16" else []
    result = export(checkpoint, "-o", out, *flags)
    assert result.exit_code == 0, result.output
    assert result.output.count(" ok\n") == 8  # 2 context + 6 denoiser checks, all passed
    return out


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "run")


def test_export_passes_the_gate_and_writes_a_manifest_that_validates(bundle, checkpoint):
    manifest = load_manifest(bundle)
    assert manifest.precision == ("fp16" if "fp16" in bundle.name else "fp32")
    assert set(manifest.graphs) == {"context", "denoiser"}
    assert [t.name for t in manifest.graphs["context"].outputs] == ["ctx_k0", "ctx_v0"]
    prov = manifest.provenance
    assert prov["checkpoint"] == "run/checkpoint.safetensors"  # no path of this machine
    assert prov["checkpoint_step"] == 3
    assert prov["training_data"] == "shapes" and prov["opset"] == 17
    assert prov["training_command"] == "lgcvd-train --preset tiny"
    assert prov["training_data_seed"] == 0
    assert prov["training_config"] == TrainConfig().to_dict()  # steps, lr, cooldown, mixture...
    assert prov["parity_max_rel_err"] <= prov["parity_tolerance"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no temp dirs


def test_onnxruntime_outputs_match_torch_on_a_new_batch_size(bundle, model):
    tol = 1e-2 if "fp16" in bundle.name else 1e-4
    rng = np.random.default_rng(1)
    cfg, b = model.cfg, 3
    prev, x_t = rng.uniform(-1, 1, (2, b, 3 * cfg.frames, 32, 32)).astype(np.float32)
    cond = rng.uniform(-1, 1, (b, 4 * cfg.cond_slots, 32, 32)).astype(np.float32)
    t = np.array([0, 400, 999], dtype=np.float32)
    ctx_sess = ort.InferenceSession(str(bundle / "context.onnx"))
    den_sess = ort.InferenceSession(str(bundle / "denoiser.onnx"))
    ctx = ctx_sess.run(None, {"prev": prev})
    names = [i.name for i in den_sess.get_inputs()]
    (out,) = den_sess.run(None, dict(zip(names, [x_t, t, cond, *ctx], strict=True)))
    with torch.no_grad():
        ref_ctx = model.context(torch.from_numpy(prev))
        ref = model.denoise(*map(torch.from_numpy, (x_t, t, cond)), ref_ctx).numpy()
    for got, want in zip(ctx, ref_ctx, strict=True):
        assert np.abs(got - want.numpy()).max() <= tol * np.abs(want.numpy()).max()
    assert out.dtype == np.float32 and out.shape == x_t.shape
    assert np.abs(out - ref).max() <= tol * np.abs(ref).max()


def test_fp16_graphs_store_half_weights_behind_float32_inputs_and_outputs(bundle):
    if "fp16" not in bundle.name:
        pytest.skip("fp16 bundle only")
    graph = onnx.load(str(bundle / "denoiser.onnx")).graph
    assert {i.type.tensor_type.elem_type for i in [*graph.input, *graph.output]} == {1}
    assert any(w.data_type == onnx.TensorProto.FLOAT16 for w in graph.initializer)
    assert (bundle / "denoiser.onnx").stat().st_size < 0.7 * sum(
        np.prod(w.dims) * 4 for w in graph.initializer
    )


def test_fp16_graphs_keep_the_time_embedding_phase_in_float32(bundle):
    if "fp16" not in bundle.name:
        pytest.skip("fp16 bundle only")
    graph = onnx.load(str(bundle / "denoiser.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    sin = next(n for n in graph.node if n.op_type == "Sin")
    mul = producer[sin.input[0]]  # t * freqs feeds Sin directly: no cast, both float32
    assert mul.op_type == "Mul"
    freqs = next(
        producer[i] for i in mul.input if i in producer and producer[i].op_type == "Constant"
    )
    assert freqs.attribute[0].t.data_type == onnx.TensorProto.FLOAT


def test_a_changed_byte_in_a_graph_fails_the_hash_check(bundle, tmp_path):
    copy_ = tmp_path / "tampered.lgcvd"
    shutil.copytree(bundle, copy_)
    data = bytearray((copy_ / "denoiser.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy_ / "denoiser.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 does not match the manifest"):
        load_manifest(copy_)


def test_context_graph_holds_the_kv_projection_and_the_denoiser_no_encoder(bundle):
    if "fp16" in bundle.name:
        pytest.skip("same graphs as fp32")
    ctx = {w.name for w in onnx.load(str(bundle / "context.onnx")).graph.initializer}
    den = {w.name for w in onnx.load(str(bundle / "denoiser.onnx")).graph.initializer}
    assert "model.unet.mid_cross.kv.weight" in ctx and "model.unet.mid_cross.kv.weight" not in den
    assert any(n.startswith("model.encoder.") for n in ctx)
    assert not any("encoder" in n or ".kv." in n for n in den)
    assert "model.unet.mid_cross.q.weight" in den


def test_model_without_context_exports_only_the_denoiser(tmp_path):
    ckpt = write_checkpoint(tmp_path / "run", random_model(context=False))
    result = export(ckpt, "-o", tmp_path / "plain.lgcvd")
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "plain.lgcvd")
    assert set(manifest.graphs) == {"denoiser"}
    assert [t.name for t in manifest.graphs["denoiser"].inputs] == ["x_t", "t", "cond"]


def test_an_interrupted_export_leaves_no_bundle_and_no_temp_dir(checkpoint, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(parity, "check_parity", interrupt)
    result = export(checkpoint, "-o", tmp_path / "x.lgcvd")
    assert result.exit_code != 0
    assert leftovers(tmp_path) == []


def test_a_failing_gate_prints_the_table_exits_nonzero_and_writes_nothing(
    checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setitem(parity.TOLERANCE, "fp32", 0.0)
    result = export(checkpoint, "-o", tmp_path / "x.lgcvd")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "context   random" in result.output
    assert "Error: parity gate failed: 8 of 8 checks exceed 0e+00" in result.output
    assert leftovers(tmp_path) == []


def test_force_replaces_an_existing_bundle_only_when_the_new_one_is_complete(checkpoint, tmp_path):
    out = tmp_path / "x.lgcvd"
    out.mkdir()
    (out / "old").write_text("old")
    result = export(checkpoint, "-o", out)
    assert result.exit_code == 1
    assert result.output == f"Error: {out} already exists; pass --force to overwrite it\n"
    assert export(checkpoint, "-o", out, "--force").exit_code == 0
    assert not (out / "old").exists() and load_manifest(out).precision == "fp32"
    assert leftovers(tmp_path) == ["x.lgcvd"]


def test_a_missing_checkpoint_is_one_line(tmp_path):
    result = export(tmp_path / "nope", "-o", tmp_path / "x.lgcvd")
    assert result.exit_code == 1
    want = f"{tmp_path / 'nope'}: no such checkpoint; pass a run directory or its checkpoint"
    assert result.output.startswith(f"Error: {want}") and result.output.count("\n") == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_corrupt_checkpoint_is_one_line(checkpoint, tmp_path, damage):
    bad = tmp_path / "checkpoint.safetensors"
    data = checkpoint.read_bytes()
    bad.write_bytes(
        np.random.default_rng(0).bytes(4096) if damage == "random bytes" else data[:-100]
    )
    result = export(bad, "-o", tmp_path / "x.lgcvd")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith(f"Error: {bad}: corrupt checkpoint (")
    assert result.output.endswith("); use another checkpoint\n")
    assert leftovers(tmp_path) == ["checkpoint.safetensors"]


def test_weights_of_another_preset_are_one_line(checkpoint, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from lgcvd_train.checkpoint import META_KEY
    from lgcvd_train.config import preset

    with safe_open(checkpoint, framework="pt") as f:
        state = json.loads(f.metadata()[META_KEY])
    state["model_config"] = preset("small").to_dict()  # tiny weights labelled as small
    bad = tmp_path / "checkpoint.safetensors"
    save_file(load_file(checkpoint), bad, {META_KEY: json.dumps(state)})
    result = export(bad, "-o", tmp_path / "x.lgcvd")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {bad}: weights do not match the checkpoint's model config (checkpoint from "
        "another model preset?); use a checkpoint written by lgcvd-train\n"
    )
    assert leftovers(tmp_path) == ["checkpoint.safetensors"]


def test_gate_clips_come_from_the_bair_npz_or_any_video_array(tmp_path):
    videos = shapes.generate(6, 16, 64, 0)  # (6, 16, 64, 64, 3)
    np.save(tmp_path / "clips.npy", videos)
    np.savez(tmp_path / "bair.npz", ground_truth=videos[:2], other=videos[2:4])
    clips = parity.load_real_clips(tmp_path / "clips.npy", 8, 32)
    assert clips.shape == (parity.REAL_CLIPS, 8, 32, 32, 3)  # the first clips, area-resized
    assert clips[0, 0, 0, 0, 0] == np.rint(videos[0, 0, :2, :2, 0].mean())
    assert parity.load_real_clips(tmp_path / "bair.npz", 8, 64).shape == (2, 8, 64, 64, 3)
    with pytest.raises(DataError, match="holds clips of 16 frames; the gate needs 20"):
        parity.load_real_clips(tmp_path / "clips.npy", 20, 32)


def tensorrt_missing() -> bool:
    from lgcvd_runtime.backends import trt_backend

    return trt_backend.unavailable() is not None


@pytest.mark.skipif(not tensorrt_missing(), reason="TensorRT is usable here")
def test_tensorrt_without_tensorrt_is_one_line_and_writes_nothing(checkpoint, tmp_path):
    result = export(checkpoint, "-o", tmp_path / "x.lgcvd", "--tensorrt")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: TensorRT is unavailable (")
    assert "pip install 'lgcvd[tensorrt]' (needs an NVIDIA GPU)" in result.output
    assert leftovers(tmp_path) == []


@pytest.mark.gpu
@pytest.mark.skipif(tensorrt_missing(), reason="needs tensorrt, pycuda and an NVIDIA GPU")
def test_tensorrt_engines_are_built_into_the_bundle_and_listed(checkpoint, tmp_path):
    out = tmp_path / "x.lgcvd"
    result = export(checkpoint, "-o", out, "--tensorrt", "--fp16", "--max-batch", "2")
    assert result.exit_code == 0, result.output
    engines = load_manifest(out).provenance["engines"]
    assert {e["graph"] for e in engines} == {"context", "denoiser"}
    assert all((out / e["file"]).is_file() for e in engines)
