"""int8 export: Q/DQ graphs calibrated along sampler trajectories, the end-to-end gate that
refuses a bundle, and int8 bundles on onnxruntime's CPU provider."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import random_model
from test_export import write_checkpoint

from lgcvd_export import int8_gate, parity, quantize
from lgcvd_export.cli import main
from lgcvd_runtime import api
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.cli.run import main as run_main
from lgcvd_runtime.schedule import ScheduleSpec, respace
from lgcvd_train.data import shapes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Moving-shape clips at the tiny model's size, long enough for the gate's two windows."""
    path = tmp_path_factory.mktemp("clips") / "clips.npy"
    np.save(path, shapes.generate(4, 16, 32, 5))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "run", random_model())


def export(checkpoint, out, clips, *args):
    common = ["--int8", "--real-frames", clips, "--gate-clips", "2"]
    return CliRunner().invoke(main, [str(a) for a in (checkpoint, "-o", out, *common, *args)])


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, checkpoint, clips):
    """An int8 export of a random-weight model: random weights quantize badly, so the gates are
    opened wide here; what they measure on a trained model is in docs/precision.md."""
    out = tmp_path_factory.mktemp("int8") / "m.lgcvd"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(parity.TOLERANCE, "int8", 1e9)
        result = export(checkpoint, out, clips, "--gate-min-psnr", "0", "--gate-min-ssim", "-1")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_an_int8_bundle_holds_q_dq_graphs_with_int8_weights_and_says_int8(int8_bundle):
    out, log = int8_bundle
    manifest = load_manifest(out)
    assert manifest.precision == "int8"
    assert manifest.provenance["int8"]["float_ops"] == quantize.DEFAULT_FLOAT_OPS
    for graph in manifest.graphs.values():
        model = onnx.load(str(out / graph.file))
        ops = {n.op_type for n in model.graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        int8 = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
        assert int8, "weights are stored as int8"
        io = [*model.graph.input, *model.graph.output]
        assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
    assert "end-to-end gate: 2 held-out clips" in log and "int8 vs fp32" in log
    assert not (out / "fp32").exists()


def test_an_int8_bundle_runs_on_onnxruntimes_cpu_provider_and_info_says_int8(int8_bundle):
    out, _ = int8_bundle
    model = api.load(out, backend="onnxruntime", sampler="dpmpp", steps=2, seed=0)
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    windows = list(model.predict(frames, n=6))
    assert windows and windows[0].frames.dtype == np.uint8
    info = CliRunner().invoke(run_main, ["info", "--model", str(out)])
    assert info.exit_code == 0 and ", int8, " in info.output


def test_a_tolerance_that_must_fail_refuses_the_bundle_and_the_table_says_why(
    checkpoint, clips, tmp_path, monkeypatch
):
    monkeypatch.setitem(parity.TOLERANCE, "int8", 1e9)
    out = tmp_path / "refused.lgcvd"
    result = export(checkpoint, out, clips, "--gate-min-psnr", "1000")  # above identical's 100
    assert result.exit_code == 1
    assert "FAIL" in result.output.split("int8 vs fp32")[1].splitlines()[0]
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: int8 quality gate failed: predictions differ from the fp32")
    assert last.endswith(
        "limits 1000 dB, 0.95; table above); no bundle written: calibrate on the training "
        "clips (--calib-frames), or export --fp16"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_int8_and_fp16_exclude_each_other_in_one_line(checkpoint, clips, tmp_path):
    result = export(checkpoint, tmp_path / "x.lgcvd", clips, "--fp16")
    assert result.exit_code == 2
    assert "--fp16 and --int8 exclude each other; choose one precision" in result.output


def test_missing_calibration_clips_are_one_line(checkpoint, clips, tmp_path):
    result = export(checkpoint, tmp_path / "x.lgcvd", clips, "--calib-frames", tmp_path / "no.npy")
    assert result.exit_code == 1
    assert f"({tmp_path / 'no.npy'} not found); pass --calib-frames FILE" in result.output


class Sessions:
    """Stand-in graphs: the denoiser returns zeros, the context one tensor of ones."""

    def __init__(self, names):
        self.sessions = {
            n: type("S", (), {"get_inputs": lambda s, n=n: self._inputs(n)})() for n in names
        }

    @staticmethod
    def _inputs(name):
        names = ["prev"] if name == "context" else ["x_t", "t", "cond", "ctx_k0"]
        return [type("I", (), {"name": x})() for x in names]

    def run(self, graph, arrays):
        if graph == "context":
            return [np.ones((len(arrays[0]), 1, 4, 8), np.float32)]
        return [np.zeros_like(arrays[0])]


def test_calibration_records_the_denoiser_at_every_timestep_of_the_plan(tiny_model):
    spec = tiny_model.cfg.layout()
    schedule = ScheduleSpec()
    plan = respace(schedule, 5)
    runner = quantize.GraphRunner(Sessions(["context", "denoiser"]), record=True)
    clips = np.zeros((3, 14, 3, 32, 32), np.float32)
    quantize.predict(runner, spec, plan, "dpmpp", clips, 2, 12, 0)
    # two windows (12 frames, 6 new per window), each visiting the plan's steps from T down
    seen = [int(call["t"][0]) for call in runner.feeds["denoiser"]]
    assert seen == [int(t) for t in plan.timesteps[::-1]] * 2
    assert len(runner.feeds["context"]) == 2
    assert all(len(call["x_t"]) == 3 for call in runner.feeds["denoiser"])


def test_the_calibration_reader_splits_calls_into_small_batches_and_honours_set_range():
    calls = [{"x": np.arange(10.0).reshape(10, 1)}, {"x": np.arange(3.0).reshape(3, 1)}]
    reader = quantize.TrajectoryReader(calls)
    assert len(reader) == 3 + 1  # 10 samples in batches of 4, then 3
    sizes = []
    while (item := reader.get_next()) is not None:
        sizes.append(len(item["x"]))
    assert sizes == [4, 4, 2, 3]
    reader.set_range(1, 2)
    assert reader.get_next()["x"][0, 0] == 4.0 and reader.get_next() is None


def test_the_sensitive_choice_keeps_norms_softmax_and_the_time_embedding_in_float(tmp_path):
    model = random_model()
    from lgcvd_export.graphs import export_model

    export_model(model, tmp_path, 17)
    graph = onnx.load(str(tmp_path / "denoiser.onnx"))
    kept = set(quantize.float_nodes(graph, "sensitive"))
    by_type = {n.name: n.op_type for n in graph.graph.node}
    assert {"InstanceNormalization", "Softmax", "Sin", "Cos"} <= {by_type[k] for k in kept}
    io = set(quantize.float_nodes(graph, "weighted-io")) - set(
        quantize.float_nodes(graph, "weighted")
    )
    assert sorted(by_type[k] for k in io) == ["Conv", "Conv"]
    assert "/unet/Mul" in kept  # t * frequencies, the time embedding's phase
    assert quantize.float_nodes(graph, "none") == []


def test_gate_scores_are_100_db_and_ssim_1_for_identical_predictions():
    a = np.random.default_rng(0).uniform(-1, 1, (2, 3, 3, 16, 16)).astype(np.float32)
    assert int8_gate.mean_scores(a, a) == (100.0, pytest.approx(1.0))
