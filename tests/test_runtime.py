"""The torch-free runtime: onnxruntime backend against the torch reference, the embedding API,
backend selection and the TensorRT engine cache rules.

The bundle every runtime test uses comes from conftest's `export_tiny_bundle`.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import MODEL_SEED, export_tiny_bundle, random_model

import lgcvd_runtime
from lgcvd_runtime import api
from lgcvd_runtime.backends import load_backend
from lgcvd_runtime.backends.trt_backend import current_engine, save_engine
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.errors import BackendError, BundleError, LgcvdError
from lgcvd_runtime.pipeline import Pipeline, row_generators
from lgcvd_train.torch_backend import reference_pipeline


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread: on a shared 2-core machine its spinning OpenMP workers otherwise make
    these tiny calls up to 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def frames(count: int, size: int = 32, seed: int = 1) -> np.ndarray:
    """Random uint8 video (count, size, size, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp"])
def test_onnxruntime_matches_the_torch_reference_given_the_same_noise(
    bundle, sampler, one_torch_thread
):
    reference = reference_pipeline(random_model(MODEL_SEED), sampler, 4)
    manifest = load_manifest(bundle)
    runtime = Pipeline(
        load_backend("onnxruntime", bundle, manifest), manifest.model, reference.settings
    )
    given = np.random.default_rng(2).uniform(-1, 1, (2, 2, 3, 32, 32)).astype(np.float32)
    ours = list(runtime.predict(given, 10, row_generators(7, 2)))  # two windows
    theirs = list(reference.predict(given, 10, row_generators(7, 2)))
    assert [w.start for w in ours] == [w.start for w in theirs] == [2, 8]
    for a, b in zip(ours, theirs, strict=True):
        assert a.frames.dtype == np.float32
        assert np.abs(a.frames - b.frames).max() < 1e-5


def test_a_model_without_global_context_runs_on_its_denoiser_graph_alone(
    tmp_path_factory, one_torch_thread
):
    bundle = export_tiny_bundle(tmp_path_factory, context=False)
    manifest = load_manifest(bundle)
    assert list(manifest.graphs) == ["denoiser"]
    reference = reference_pipeline(random_model(MODEL_SEED, context=False), "dpmpp", 3)
    runtime = Pipeline(
        load_backend("onnxruntime", bundle, manifest), manifest.model, reference.settings
    )
    given = np.random.default_rng(2).uniform(-1, 1, (1, 2, 3, 32, 32)).astype(np.float32)
    (ours,) = runtime.predict(given, 6, row_generators(7, 1))
    (theirs,) = reference.predict(given, 6, row_generators(7, 1))
    assert np.abs(ours.frames - theirs.frames).max() < 1e-5


def test_each_window_calls_the_context_graph_once_and_the_denoiser_once_per_step(bundle):
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=3, seed=0)
    windows = list(model.predict(frames(2), n=13, samples=2))
    assert [w.start for w in windows] == [2, 8, 14]
    assert [w.frames.shape for w in windows] == [(2, 6, 32, 32, 3)] * 2 + [(2, 1, 32, 32, 3)]
    assert all(w.frames.dtype == np.uint8 for w in windows)
    assert model.backend.calls == {"encode": 3, "denoise": 9}


def test_frames_of_another_size_are_center_cropped_and_resampled_to_the_model_size(bundle):
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2, seed=0)
    wide = np.zeros((2, 48, 80, 3), dtype=np.uint8)
    (window,) = model.predict(wide, n=6)
    assert window.frames.shape == (1, 6, 32, 32, 3)
    assert model.fit(wide).shape == (2, 32, 32, 3)


def test_interpolate_fills_the_six_frames_between_keyframes_seven_apart(bundle):
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2, seed=0)
    windows = list(model.interpolate(frames(3)))
    assert [(w.start, w.frames.shape[1]) for w in windows] == [(1, 6), (8, 6)]
    assert model.backend.calls == {"encode": 2, "denoise": 4}


def test_generate_makes_n_frames_from_noise_alone(bundle):
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", sampler="ddim", steps=2, seed=0)
    windows = list(model.generate(n=9, samples=3))
    assert [(w.start, w.frames.shape) for w in windows] == [
        (0, (3, 8, 32, 32, 3)),
        (8, (3, 1, 32, 32, 3)),
    ]


def test_the_same_seed_gives_the_same_frames_and_another_seed_other_frames(bundle):
    def run(seed):
        model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2, seed=seed)
        return next(model.predict(frames(2), n=6)).frames

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_a_stream_forecasts_from_the_latest_p_frames_once_it_has_p(bundle):
    video = frames(4)
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2, seed=5)
    stream = model.stream(p=2, n=6)
    assert list(stream.push(video[0])) == []
    assert len(list(stream.push(video[1]))) == 1
    (pushed,) = stream.push(video[2])  # forecasts from frames 1 and 2
    assert model.backend.calls == {"encode": 2, "denoise": 4}  # one backend, no re-loading

    again = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2, seed=5)
    list(again.predict(video[0:2], n=6))
    (expected,) = again.predict(video[1:3], n=6)
    assert pushed.start == 2
    assert np.array_equal(pushed.frames, expected.frames)


def test_more_rows_than_the_bundle_batch_run_in_chunks_of_the_max_batch(bundle):
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2)
    (window,) = model.predict(frames(2), n=6, samples=5, seed=3)  # max batch 4: chunks 4 + 1
    assert window.frames.shape == (5, 6, 32, 32, 3)
    assert model.backend.calls == {"encode": 2, "denoise": 4}
    (four,) = model.predict(frames(2), n=6, samples=4, seed=3)
    assert np.array_equal(window.frames[:4], four.frames)


def test_graph_inputs_are_checked_against_the_manifest_shapes(bundle):
    model = lgcvd_runtime.load(bundle, backend="onnxruntime")
    with pytest.raises(BackendError, match=r"input 'prev' needs shape \(1, 24, 32, 32\)"):
        model.backend.encode(np.zeros((1, 24, 16, 16), dtype=np.float32))


def test_bad_sampler_settings_are_one_line_errors(bundle):
    with pytest.raises(LgcvdError, match="unknown sampler 'euler'; choose one of ddpm"):
        lgcvd_runtime.load(bundle, sampler="euler")
    for steps in (1001, 2.5):
        with pytest.raises(LgcvdError, match=rf"^steps must be in 1\.\.1000 .*, got {steps}$"):
            lgcvd_runtime.load(bundle, steps=steps)


def test_auto_picks_the_fastest_usable_backend_and_says_which(bundle):
    notes = []
    model = lgcvd_runtime.load(bundle, backend="auto", log=notes.append)
    assert len(notes) == 1 and notes[0].startswith(f"backend: {model.backend.name} (auto")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert model.backend.name == "onnxruntime"


@pytest.mark.parametrize(
    ("backend", "install"),
    [
        ("onnxruntime-cuda", "pip install onnxruntime-gpu"),
        ("onnxruntime-tensorrt", "pip install onnxruntime-gpu tensorrt"),
        ("tensorrt", "pip install 'lgcvd[tensorrt]'"),
    ],
)
def test_an_unavailable_backend_names_the_package_to_install(bundle, backend, install):
    from lgcvd_runtime.backends import unavailable

    if unavailable(backend) is None:
        pytest.skip(f"{backend} is available here")
    with pytest.raises(BackendError, match=f"backend {backend} is unavailable") as err:
        lgcvd_runtime.load(bundle, backend=backend)
    assert install in str(err.value) and "\n" not in str(err.value)


def test_no_default_bundle_is_a_one_line_error_naming_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "ASSETS", tmp_path)
    with pytest.raises(
        BundleError, match=r"no default model is installed .* \(--model NAME\.lgcvd\)"
    ):
        lgcvd_runtime.load()


def test_a_tensorrt_engine_loads_only_while_graph_and_engine_hashes_match(tmp_path, bundle):
    graph = load_manifest(bundle).graphs["denoiser"]
    engine = tmp_path / "denoiser.engine"
    assert current_engine(engine, graph) is None  # never built
    save_engine(engine, b"serialized engine", graph, "trt10-test-gpu")
    assert current_engine(engine, graph) == b"serialized engine"

    other = type(graph)(graph.file, "0" * 64, graph.inputs, graph.outputs)
    assert current_engine(engine, other) is None  # the graph changed: stale

    engine.write_bytes(b"tampered engine")
    assert current_engine(engine, graph) is None


def test_threads_caps_onnxruntime_and_leaves_the_prediction_unchanged(bundle):
    given = frames(2)
    capped = api.load(bundle, backend="onnxruntime", seed=3, steps=2, threads=1)
    for session in capped.backend._sessions.values():
        assert session.get_session_options().intra_op_num_threads == 1
    default = api.load(bundle, backend="onnxruntime", seed=3, steps=2)
    a = np.concatenate([w.frames for w in capped.predict(given, n=6)], axis=1)
    b = np.concatenate([w.frames for w in default.predict(given, n=6)], axis=1)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    for threads in (0, 1.5):
        with pytest.raises(LgcvdError, match=f"^threads must be at least 1, got {threads}$"):
            api.load(bundle, threads=threads)


def test_a_bundle_that_yields_nan_is_a_one_line_error_and_writes_nothing(
    tmp_path, bundle, monkeypatch
):
    """Through the Python API and `lgcvd-run predict`: exit 1, the graph and step named, no
    output file and no temporary file left."""
    import av
    from click.testing import CliRunner

    from lgcvd_runtime.backends import ort_backend
    from lgcvd_runtime.cli import run as cli
    from lgcvd_runtime.errors import NonFiniteError

    honest = ort_backend.OrtBackend.denoise
    monkeypatch.setattr(
        ort_backend.OrtBackend, "denoise", lambda self, *a: honest(self, *a) * np.float32("inf")
    )
    model = lgcvd_runtime.load(bundle, backend="onnxruntime", steps=2, seed=0)
    with pytest.raises(
        NonFiniteError, match=r"^the denoiser graph returned NaN or Inf at step 1/2"
    ):
        list(model.predict(frames(2), n=6))

    clip = tmp_path / "clip.mkv"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("ffv1", rate=5)
        stream.width = stream.height = 32
        stream.pix_fmt = "bgr0"
        for frame in frames(4):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    out = tmp_path / "out.mkv"
    args = ["predict", clip, "-n", 6, "-o", out, "--model", bundle, "--backend", "onnxruntime"]
    result = CliRunner().invoke(cli.main, [str(a) for a in [*args, "--steps", 2, "--quiet"]])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "the denoiser graph returned NaN or Inf at step 1/2 of window 1 on onnxruntime" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
