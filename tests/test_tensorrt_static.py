"""The TensorRT path without a GPU: APIs TensorRT 11 removed, the engine cache's staleness
rules, strongly typed builds, and engines run from any thread, with fake `tensorrt` / `pycuda`
modules (tests/fake_tensorrt.py). What only a GPU can show is listed in docs/precision.md."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import re
import sys
import threading
from pathlib import Path

import fake_tensorrt
import numpy as np
import pytest

from lgcvd_runtime.backends import trt_backend, trt_compat
from lgcvd_runtime.bundle import load_manifest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("lgcvd_runtime", "export", "tools")
ASSET = ROOT / "lgcvd_runtime" / "assets" / "default.lgcvd"

# What TensorRT 11 removed (its migration guide), as patterns, lives in a data file beside the
# tests, so that no source file, this one included, spells a removed API.
_TABLE = json.loads((Path(__file__).parent / "data" / "tensorrt11_removed.json").read_text())
REMOVED: dict[str, str] = _TABLE["removed"]
COMPAT_ONLY = tuple(_TABLE["compat_only"])


def removed_uses(text: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """Lines of `text` that use an API TensorRT 11 removed (comments and docstrings included:
    an example in a docstring gets copied)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for pattern, what in REMOVED.items():
            if pattern not in allowed and re.search(pattern, line):
                found.append(f"{number}: {what}: {line.strip()}")
    return found


def test_the_removed_api_check_finds_each_kind_of_use():
    old = "\n".join(_TABLE["examples"])
    assert len(removed_uses(old)) == 7
    assert removed_uses("size = engine.device_memory_size_v2") == []


def test_no_source_file_uses_an_api_tensorrt_11_removed():
    found = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            allowed = COMPAT_ONLY if path.name == "trt_compat.py" else ()
            found += [
                f"{path.relative_to(ROOT)}:{u}" for u in removed_uses(path.read_text(), allowed)
            ]
    assert found == []


class FakeV1Engine:
    device_memory_size = 123


class FakeV2Engine(FakeV1Engine):
    device_memory_size_v2 = 456


def test_feature_detection_prefers_the_v2_memory_api_and_falls_back_to_tensorrt_10_0():
    assert trt_compat.device_memory_bytes(FakeV2Engine()) == 456
    assert trt_compat.device_memory_bytes(FakeV1Engine()) == 123
    calls = []

    class V2Context:
        def set_device_memory(self, address, size):
            calls.append((address, size))

    class V1Context:
        device_memory = 0

    trt_compat.attach_device_memory(V2Context(), 10, 20)
    old = V1Context()
    trt_compat.attach_device_memory(old, 30, 40)
    assert calls == [(10, 20)] and old.device_memory == 30


@pytest.fixture
def bundle(tmp_path):
    """The shipped model's manifest in a writable bundle folder (the fakes never read graphs)."""
    folder = tmp_path / "m.lgcvd"
    folder.mkdir()
    (folder / "manifest.json").write_text((ASSET / "manifest.json").read_text())
    return folder


@pytest.fixture
def fake(bundle, monkeypatch):
    return fake_tensorrt.install(monkeypatch, load_manifest(bundle, verify=False))


def inputs(manifest, batch: int, seed: int = 0):
    spec, rng = manifest.model, np.random.default_rng(seed)
    s, n, k = spec.image_size, spec.frames, spec.cond_slots
    prev, x_t = rng.uniform(-1, 1, (2, batch, 3 * n, s, s)).astype(np.float32)
    t = np.full(batch, 500.0, np.float32)
    cond = rng.uniform(-1, 1, (batch, 4 * k, s, s)).astype(np.float32)
    return prev, x_t, t, cond


def expected(prev, x_t, t, cond, n_ctx: int):
    """The fake engines' arithmetic, written out: context tensor i = mean(prev) + i, denoiser =
    2 x_t + t + mean(cond) + sum of the context tensors' means."""
    m = prev.mean(axis=(1, 2, 3))
    ctx_sum = sum(m + i for i in range(n_ctx))
    return 2 * x_t + (t + cond.mean(axis=(1, 2, 3)) + ctx_sum).reshape(-1, 1, 1, 1)


def load(bundle, **kw):
    logs: list[str] = []
    backend = trt_backend.TrtBackend(bundle, load_manifest(bundle, verify=False), logs.append, **kw)
    return backend, logs


def test_engines_are_built_strongly_typed_once_and_then_loaded_from_the_cache(bundle, fake):
    _, logs = load(bundle)
    assert sorted(fake.builds) == ["context", "denoiser"]
    assert set(fake.network_flags) == {1 << 1}  # STRONGLY_TYPED (bit 1) only, for fp16 too
    assert [x for x in logs if "building the TensorRT engine" in x] == [
        "building the TensorRT engine for context.onnx (once per machine)...",
        "building the TensorRT engine for denoiser.onnx (once per machine)...",
    ]
    _, logs = load(bundle)
    assert len(fake.builds) == 2 and logs == []


def test_a_stale_cached_engine_is_named_in_one_line_and_rebuilt(bundle, fake):
    load(bundle)
    side = next((bundle / "engines").glob("denoiser-*.json"))
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "graph_sha256": "0" * 64}))
    _, logs = load(bundle)
    assert fake.builds[-1] == "denoiser" and len(fake.builds) == 3
    assert logs == [
        f"cached TensorRT engine {side.with_suffix('.engine').name} is stale "
        "(built from another version of the graph); rebuilding it"
    ]
    side.with_suffix(".engine").write_bytes(b"tampered")
    _, logs = load(bundle)
    assert "(the engine file changed after it was built); rebuilding it" in logs[0]


def test_engines_of_another_tensorrt_version_are_reported_stale_and_a_new_one_built(bundle, fake):
    load(bundle)
    sys.modules["tensorrt"].__version__ = "10.3.0"  # e.g. JetPack 6's TensorRT
    _, logs = load(bundle)
    assert len(fake.builds) == 4
    assert logs[0].startswith("cached TensorRT engines of context.onnx (context-")
    assert logs[0].endswith(
        "are stale for this machine (trt10.3.0-fake-gpu-80gb); building a new one"
    )


def test_the_engines_run_from_any_thread_with_the_context_made_current_there(bundle, fake):
    backend, _ = load(bundle)
    manifest = load_manifest(bundle, verify=False)
    prev, x_t, t, cond = inputs(manifest, 2)
    results = {}

    def worker():  # like the live stream's worker: no CUDA context of its own
        ctx = backend.encode(prev)
        results["out"] = backend.denoise(x_t, t, cond, ctx)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    n_ctx = len(manifest.graphs["context"].outputs)
    np.testing.assert_allclose(results["out"], expected(prev, x_t, t, cond, n_ctx), rtol=1e-5)
    assert fake_tensorrt._stack(fake) == []  # every push was popped
    backend.close()
    assert fake.memory == {}


def test_context_tensors_are_copied_to_the_device_once_per_window(bundle, fake):
    backend, _ = load(bundle)
    manifest = load_manifest(bundle, verify=False)
    prev, x_t, t, cond = inputs(manifest, 1)
    copies = lambda: sum(fake.names.get(a, "").startswith("ctx_") for a in fake.htod)  # noqa: E731
    n_ctx = len(manifest.graphs["context"].outputs)
    for window in range(2):
        ctx = backend.encode(prev + window)
        for _ in range(5):  # the steps of one window
            out = backend.denoise(x_t, t, cond, ctx)
        assert copies() == n_ctx * (window + 1)
        np.testing.assert_allclose(out, expected(prev + window, x_t, t, cond, n_ctx), rtol=1e-5)
    ctx = tuple(c * 1.0 for c in ctx)  # a new tuple (e.g. the running mean): uploaded again
    backend.denoise(x_t, t, cond, ctx)
    assert copies() == 3 * n_ctx


def test_cuda_graphs_are_captured_once_per_batch_size_and_give_the_same_output(bundle, fake):
    plain, _ = load(bundle)
    graphed, _ = load(bundle, cuda_graph=True)
    manifest = load_manifest(bundle, verify=False)
    for batch in (1, 3, 1, 3, 3):
        prev, x_t, t, cond = inputs(manifest, batch, seed=batch)
        ctx = plain.encode(prev)
        want = plain.denoise(x_t, t, cond, ctx)
        np.testing.assert_array_equal(graphed.denoise(x_t + 0, t, cond, ctx), want)
    assert fake.captures == 2 and fake.launches == 5


def test_cuda_graphs_are_off_unless_the_bundle_or_the_caller_asks(bundle, fake):
    assert load(bundle)[0].cuda_graph is False
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["provenance"][trt_backend.CUDA_GRAPH] = True
    (bundle / "manifest.json").write_text(json.dumps(raw))
    assert load(bundle)[0].cuda_graph is True
    assert load(bundle, cuda_graph=False)[0].cuda_graph is False


def test_both_engines_share_one_scratch_allocation_of_the_larger_size(bundle, fake):
    load(bundle)
    (a, size_a), (b, size_b) = fake.scratch
    assert a == b and size_a == size_b == 5000


def test_tensorrt_10_0_engines_without_the_v2_memory_api_still_load(bundle, monkeypatch):
    fake = fake_tensorrt.install(monkeypatch, load_manifest(bundle, verify=False), has_v2=False)
    load(bundle)
    assert [s for _, s in fake.scratch] == [5000, 5000]


class _Failing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes `import pycuda.driver` fail the way a machine without an NVIDIA driver does."""

    def __init__(self, error):
        self.error = error

    def find_spec(self, name, path=None, target=None):
        if name == "pycuda.driver":
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        raise self.error

    def exec_module(self, module):
        raise self.error


@pytest.mark.parametrize(
    "error",
    [ImportError("libcuda.so.1: cannot open shared object file"), OSError("no driver")],
)
def test_pycuda_without_a_driver_is_reported_not_raised(bundle, monkeypatch, error):
    fake_tensorrt.install(monkeypatch, load_manifest(bundle, verify=False))
    monkeypatch.delitem(sys.modules, "pycuda.driver")
    monkeypatch.delattr(sys.modules["pycuda"], "driver")
    monkeypatch.setattr(sys, "meta_path", [_Failing(error), *sys.meta_path])
    reason = trt_backend.unavailable()
    assert reason == f"pycuda does not load ({error}); is the NVIDIA driver installed?"


def test_a_cuda_error_at_init_is_reported_not_raised(bundle, fake):
    driver = sys.modules["pycuda.driver"]

    def broken():
        raise driver.Error("cuInit failed: no CUDA-capable device is detected")

    driver.init = broken
    assert trt_backend.unavailable() == (
        "CUDA does not start (cuInit failed: no CUDA-capable device is detected)"
    )


def test_tensorrt_stubs_alone_do_not_count_as_tensorrt(monkeypatch, fake, bundle):
    import types

    stubs = types.ModuleType("tensorrt")  # what `import tensorrt` gives with only tensorrt-stubs
    stubs.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", stubs)
    assert trt_backend.unavailable() == "tensorrt not installed (only its type stubs are)"
