"""The runtime needs no torch (docs/design.md): every `lgcvd_runtime` module imports, and
a prediction runs, in a Python where torch and onnx cannot be imported; and the package's own
(non-extra) dependencies name neither."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
from conftest import export_tiny_bundle

BLOCKED = ("torch", "onnx")

# Installed as sitecustomize: any import of a blocked package (or its submodules) fails.
BLOCKER = textwrap.dedent(
    f"""
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"{{name}} is blocked: lgcvd_runtime must not need it")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)

PROGRAM = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import numpy as np

    try:
        import torch
    except ImportError:
        pass
    else:
        sys.exit("the blocker let torch import")

    import lgcvd_runtime
    names = [m.name for m in pkgutil.walk_packages(lgcvd_runtime.__path__, "lgcvd_runtime.")]
    for name in names:
        importlib.import_module(name)
    model = lgcvd_runtime.load(sys.argv[1], backend="onnxruntime", steps=2, seed=0)
    given = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    (window,) = model.predict(given, n=6)
    blocked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "onnx"))
    print(json.dumps({"modules": names, "shape": window.frames.shape, "loaded": blocked}))
    """
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    return export_tiny_bundle(tmp_path_factory)


def test_every_runtime_module_imports_and_predicts_without_torch_or_onnx(tmp_path, bundle):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM, bundle],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"lgcvd_runtime.cli.run", "lgcvd_runtime.backends.trt_backend"} <= set(report["modules"])
    assert report["shape"] == [1, 6, 32, 32, 3]
    assert report["loaded"] == []


def test_the_runtime_dependencies_name_neither_torch_nor_onnx():
    requirements = importlib.metadata.requires("lgcvd") or []
    core = [r for r in requirements if "extra ==" not in r]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in core}
    assert names and not names & {"torch", "onnx", "onnxscript", "tensorrt", "pycuda"}
    assert "onnxruntime" in names
