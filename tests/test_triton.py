"""Serving on Triton (docs/serving.md): the generated repository's configs against the manifest,
the command line's refusals, the client's reading of a score (its checks: test_triton_client.py),
and a real `tritonserver` (from the nvidia-pytriton wheel, in `.venv-serve`, which `make test`
creates) answering 4 concurrent clients exactly as the in-process library does, with batches
above 1."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from lgcvd_runtime.api import default_bundle
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.plans import DEFAULT_PLAN
from lgcvd_runtime.serve.cli import main
from lgcvd_runtime.serve.repository import RepoOptions, write_repository

ROOT = Path(__file__).resolve().parent.parent
SERVE_PYTHON = ROOT / ".venv-serve" / "bin" / "python"


def _blocks(text: str, section: str) -> list[dict]:
    """The tensors of an `input [...]` / `output [...]` section of a config.pbtxt, parsed here
    independently of the writer: name, data_type, dims and whether a reshape to [] is given."""
    body = re.search(rf"^{section} \[\n(.*?)\n\]$", text, re.S | re.M).group(1)
    tensors = []
    for block in re.findall(r"\{(.*?)\n  \}", body, re.S):
        dims = re.search(r"dims: \[([^\]]*)\]", block).group(1)
        tensors.append(
            {
                "name": re.search(r'name: "([^"]+)"', block).group(1),
                "type": re.search(r"data_type: (\w+)", block).group(1),
                "dims": [int(d) for d in dims.replace(",", " ").split()],
                "reshape_to_scalar": "reshape: { shape: [ ] }" in block,
            }
        )
    return tensors


def _expected(specs) -> list[dict]:
    """What Triton must be told of each manifest tensor: its dims after the batch (a tensor of
    batch only is sent as (B, 1) and reshaped to (B,))."""
    types = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
    return [
        {
            "name": s.name,
            "type": types[s.dtype],
            "dims": [int(d) for d in s.shape[1:]] or [1],
            "reshape_to_scalar": len(s.shape) == 1,
        }
        for s in specs
    ]


@pytest.mark.parametrize("graphs", ["onnxruntime", "tensorrt"])
def test_graph_configs_say_what_the_manifest_says(tmp_path, graphs):
    bundle = default_bundle()
    manifest = load_manifest(bundle)
    repo = tmp_path / "repo"
    options = RepoOptions(graphs=graphs, queue_delay_us=1500, graph_instances=3, kind="gpu")
    assert write_repository(bundle, repo, options) == ["context", "denoiser", "lgcvd"]
    for name in ("context", "denoiser"):
        graph = manifest.graphs[name]
        text = (repo / name / "config.pbtxt").read_text()
        assert f'name: "{name}"\n' in text and f'backend: "{graphs}"\n' in text
        assert f"max_batch_size: {manifest.max_batch}\n" in text
        assert _blocks(text, "input") == _expected(graph.inputs)
        assert _blocks(text, "output") == _expected(graph.outputs)
        assert re.search(r"dynamic_batching \{\s*max_queue_delay_microseconds: 1500\s*\}", text)
        assert re.search(r"instance_group \[\s*\{\s*count: 3\s*kind: KIND_GPU\s*\}\s*\]", text)
        assert (repo / name / "1" / "model.onnx").read_bytes() == (bundle / graph.file).read_bytes()
    readme = (repo / "README.md").read_text()
    assert "docker run --gpus=all" in readme and "tritonserver --model-repository=/models" in readme
    if graphs == "tensorrt":  # plans are built on the serving GPU, batch 1 .. max batch
        prev = manifest.graphs["context"].inputs[0]
        dims = "x".join(str(d) for d in prev.shape[1:])
        assert f"--minShapes=prev:1x{dims} " in readme
        assert f"--maxShapes=prev:{manifest.max_batch}x{dims} --stronglyTyped" in readme
        assert "--saveEngine=/models/denoiser/1/model.plan" in readme


def test_the_pipeline_model_carries_the_sampler_and_runs_the_runtime(tmp_path):
    repo = tmp_path / "repo"
    write_repository(default_bundle(), repo, RepoOptions(graphs="python", pipelines=5, steps=3))
    text = (repo / "lgcvd" / "config.pbtxt").read_text()
    assert 'backend: "python"' in text and "max_batch_size: 0" in text
    assert re.search(r"count: 5\s*kind: KIND_CPU", text)
    assert re.search(r'key: "steps"\s*value: \{ string_value: "3" \}', text)
    shim = (repo / "lgcvd" / "1" / "model.py").read_text()
    assert (
        "from lgcvd_runtime.serve.triton_models import PipelineModel as TritonPythonModel" in shim
    )
    graph_config = (repo / "denoiser" / "config.pbtxt").read_text()
    assert 'backend: "python"' in graph_config and "kind: KIND_CPU" in graph_config


def _parameter(text: str, key: str) -> str | None:
    """A config.pbtxt parameter's string value, its text-format escapes undone, or None."""
    found = re.search(rf'key: "{key}"\s*value: \{{ string_value: "((?:[^"\\]|\\.)*)" \}}', text)
    return None if found is None else re.sub(r"\\(.)", r"\1", found.group(1))


def test_the_pipeline_model_returns_the_input_score_and_passes_the_calibration_on(tmp_path):
    bundle = default_bundle()
    write_repository(bundle, tmp_path / "repo", RepoOptions(graphs="python"))
    text = (tmp_path / "repo" / "lgcvd" / "config.pbtxt").read_text()
    outputs = {t["name"]: t for t in _blocks(text, "output")}
    assert outputs["input_score"] == {
        "name": "input_score",
        "type": "TYPE_FP64",
        "dims": [-1],
        "reshape_to_scalar": False,
    }
    assert json.loads(_parameter(text, "ood")) == load_manifest(bundle).ood
    plain = tmp_path / "plain.lgcvd"  # the same bundle, not calibrated
    shutil.copytree(bundle, plain)
    manifest = json.loads((plain / "manifest.json").read_text())
    del manifest["ood"]
    (plain / "manifest.json").write_text(json.dumps(manifest))
    write_repository(plain, tmp_path / "plain", RepoOptions(graphs="python"))
    plain_text = (tmp_path / "plain" / "lgcvd" / "config.pbtxt").read_text()
    assert _parameter(plain_text, "ood") is None
    assert _parameter(plain_text, "steps") == str(DEFAULT_PLAN.steps)
    assert _parameter(plain_text, "max_frames") == "1024"  # the request limit, for both sides


def test_the_client_reads_a_score_or_its_absence_from_a_response():
    from lgcvd_runtime.serve.client import _score, _windows

    assert _score(np.array([4.25])) == 4.25
    assert _score(np.zeros((0,), np.float64)) is None  # an uncalibrated bundle's response
    assert _score(None) is None  # a repository made before the score was served
    windows = _windows(np.zeros((1, 10, 1, 1, 1)), [2, 8], axis=1, score=4.25)
    assert [w.input_score for w in windows] == [4.25, 4.25]


def test_an_existing_repository_is_refused_without_force_and_replaced_with_it(tmp_path):
    out = tmp_path / "repo"
    args = ["triton-repo", str(default_bundle()), "-o", str(out), "--graphs", "python"]
    assert CliRunner().invoke(main, args).exit_code == 0
    (out / "stale").write_text("old")
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert refused.output == f"Error: {out} already exists; pass --force to overwrite it\n"
    assert CliRunner().invoke(main, [*args, "--force"]).exit_code == 0
    assert not (out / "stale").exists() and (out / "lgcvd" / "config.pbtxt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no temporary left behind


def test_a_missing_bundle_is_one_line(tmp_path):
    result = CliRunner().invoke(
        main, ["triton-repo", str(tmp_path / "no.lgcvd"), "-o", str(tmp_path / "r")]
    )
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path / 'no.lgcvd'}: no such bundle directory; pass a NAME.lgcvd folder "
        "from lgcvd-export\n"
    )


@pytest.mark.parametrize(
    "options, message",
    [
        (RepoOptions(sampler="euler"), "unknown sampler 'euler'; choose one of ddpm, "),
        (RepoOptions(steps=0), "steps must be in 1..1000 (the schedule's T), got 0"),
        (RepoOptions(steps=2.5), "steps must be in 1..1000 (the schedule's T), got 2.5"),
        (RepoOptions(max_frames=0), "max frames must be at least 1, got 0"),
    ],
)
def test_a_repository_takes_the_samplers_and_steps_the_library_takes(tmp_path, options, message):
    with pytest.raises(LgcvdError) as err:
        write_repository(default_bundle(), tmp_path / "repo", options)
    assert str(err.value).startswith(message)
    assert not (tmp_path / "repo").exists()


def test_local_serving_says_what_is_missing(tmp_path, monkeypatch):
    from lgcvd_runtime.serve import local_server

    not_repo = CliRunner().invoke(main, ["local", str(tmp_path)])
    assert not_repo.exit_code == 1
    assert not_repo.output == (
        f"Error: {tmp_path.resolve()} is not a repository from lgcvd-serve triton-repo; "
        "generate one first\n"
    )
    repo = tmp_path / "repo"
    write_repository(default_bundle(), repo, RepoOptions(graphs="python"))
    monkeypatch.setattr(local_server.importlib.util, "find_spec", lambda name: None)
    no_wheel = CliRunner().invoke(main, ["local", str(repo)])
    assert no_wheel.exit_code == 1
    assert (
        no_wheel.output
        == 'Error: nvidia-pytriton is not installed; pip install "numpy<2" nvidia-pytriton\n'
    )


SERVER_CHECK = textwrap.dedent(
    """
    import json, sys, threading
    from pathlib import Path
    import numpy as np
    import lgcvd_runtime
    from lgcvd_runtime.serve.client import TritonClient
    from lgcvd_runtime.serve.local_server import LocalServer

    repo, bundle, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(5)
    sizes = [(64, 64), (80, 96), (64, 64), (48, 40)]  # other sizes are fitted by the server
    clips = [rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8) for h, w in sizes]
    seeds = [11, 12, 13, 14]
    library = lgcvd_runtime.load(bundle, backend="onnxruntime", sampler="dpmpp", steps=2)
    expected = [list(library.predict(c, n, seed=s)) for c, s in zip(clips, seeds)]
    expected_samples = list(library.predict(clips[1], n, samples=2, seed=seeds[1]))
    server = LocalServer(repo)
    report = {}
    with server:
        answers = [None] * 4
        def ask(i):
            with TritonClient(server.grpc_url) as client:
                answers[i] = list(client.predict(clips[i], n, seed=seeds[i]))
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        with TritonClient(server.grpc_url) as client:  # 4 cameras in one call, another order
            cameras = list(client.predict(clips[::-1], n, seed=seeds[::-1]))
            samples = list(client.predict(clips[1], n, samples=2, seed=seeds[1]))
            report["batches"] = client.batch_counts("denoiser")
            try:  # refused by the client before sending (the server's own: test_triton_faults)
                client.predict(clips[0], 0, seed=1)
            except lgcvd_runtime.LgcvdError as err:
                report["refusal"] = str(err)
            try:
                library.predict(clips[0], 0, seed=1)
            except lgcvd_runtime.LgcvdError as err:
                report["library_refusal"] = str(err)
        def same(a, b):
            return [(w.index, w.start) for w in a] == [(w.index, w.start) for w in b] and all(
                np.array_equal(x.frames, y.frames) for x, y in zip(a, b))
        report["equal"] = [same(a, e) for a, e in zip(answers, expected)]
        report["cameras_equal"] = [
            same([type(w)(w.index, w.start, w.frames[3 - i]) for w in cameras], expected[i])
            for i in range(4)]
        report["samples_equal"] = same(samples, expected_samples)
        report["scores"] = [[a[0].input_score, e[0].input_score] for a, e in zip(answers, expected)]
        report["camera_scores"] = [cameras[0].input_score.tolist(), [e[0].input_score for e in expected[::-1]]]
        report["calibration_equal"] = client.calibration == library.calibration
        report["warnings"] = [client.input_warning(99.0), library.input_warning(99.0)]
        report["starts"] = [w.start for w in answers[0]]
        report["shape"] = list(answers[1][0].frames.shape)
        report["settings"] = client.settings
        prefix, workspace = server.shm_prefix, server.workspace
        report["shm_during"] = len(list(Path("/dev/shm").glob(prefix + "*")))
    report["exit"] = server.returncode
    try:
        TritonClient(server.grpc_url)
    except lgcvd_runtime.BackendError as err:
        report["unreachable"] = str(err)
    report["shm_left"] = sorted(p.name for p in Path("/dev/shm").glob(prefix + "*"))
    report["workspace_left"] = workspace.exists()
    print(json.dumps(report))
    """
)


@pytest.mark.slow
def test_a_real_triton_server_answers_concurrent_clients_exactly_like_the_library(tmp_path):
    assert SERVE_PYTHON.is_file(), (
        "no serving environment: run `make test`, which creates .venv-serve"
    )
    repo = tmp_path / "repo"
    options = RepoOptions(
        graphs="python", pipelines=4, queue_delay_us=20000, sampler="dpmpp", steps=2
    )
    write_repository(default_bundle(), repo, options)
    result = subprocess.run(
        [str(SERVE_PYTHON), "-c", SERVER_CHECK, str(repo), str(default_bundle()), "8"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["equal"] == [True] * 4 and report["cameras_equal"] == [True] * 4
    assert report["samples_equal"]
    assert all(isinstance(a, float) and a == e for a, e in report["scores"]), report["scores"]
    assert report["camera_scores"][0] == report["camera_scores"][1]
    assert report["calibration_equal"] and report["warnings"][0] == report["warnings"][1]
    assert report["warnings"][0].startswith("input looks unlike this model's training data")
    assert report["starts"] == [2, 8] and report["shape"] == [1, 6, 64, 64, 3]
    assert max(int(size) for size in report["batches"]) > 1, report["batches"]
    assert report["refusal"] == report["library_refusal"]  # the library's one line
    assert report["exit"] == 0  # stopped by SIGTERM
    assert report["settings"]["sampler"] == "dpmpp" and report["settings"]["image_size"] == "64"
    assert report["unreachable"].startswith("no Triton server answers at 127.0.0.1:")
    assert report["unreachable"].endswith(
        "or check HOST:PORT (Triton's gRPC port, 8001 by default)"
    )
    assert report["shm_during"] > 0  # the regions the cleanup looks for are the server's
    assert report["shm_left"] == [] and not report["workspace_left"]
