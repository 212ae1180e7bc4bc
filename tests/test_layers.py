"""What imports what: no import cycle among lgcvd_runtime, lgcvd_train and lgcvd_export; the
runtime's layers (maths below inference below the command lines; media beside); engine packages
loaded only when a backend is chosen; and training where PyAV cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("lgcvd_runtime", "lgcvd_train", "lgcvd_export")
MATHS = tuple(f"lgcvd_runtime.{m}" for m in ("schedule", "samplers", "conditioning", "timeline"))
ABOVE_MATHS = tuple(
    f"lgcvd_runtime.{m}"
    for m in ("bundle", "pipeline", "api", "live", "ood", "media", "cli", "serve", "backends")
) + ("lgcvd_runtime.ros2",)
ENGINES = ("onnxruntime", "tensorrt", "pycuda")


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _own(name: str) -> str | None:
    """The module of ours that importing `name` runs (a name inside a module: that module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, path: Path) -> set[str]:
    """Our modules that `module` imports when it runs: at module level and inside functions,
    not under `if TYPE_CHECKING:` (annotations only)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.extend(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.rsplit(".", child.level - 1)[0] if child.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                names.extend(f"{base}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {own for own in map(_own, names) if own is not None and own != module}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports when it runs."""
    return {module: _imported(module, path) for module, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)) is not None:
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := walk(node)) is not None:
            return cycle
    return None


def _under(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _breaking(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{m} imports {t}"
        for m, targets in sorted(import_graph().items())
        if _under(m, sources)
        for t in sorted(targets)
        if _under(t, forbidden)
    ]


def test_the_cycle_finder_names_a_cycle_and_finds_none_in_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_imports_inside_functions_and_resolves_relative_ones():
    graph = import_graph()
    assert "lgcvd_runtime.api" in graph["lgcvd_runtime.cli.run"]
    assert "lgcvd_runtime.backends.base" in graph["lgcvd_runtime.backends"]  # from .base import
    assert "lgcvd_train.data.pushsim" in graph["lgcvd_train.data"]  # inside _pushsim()


def test_the_three_packages_import_each_other_without_a_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_maths_modules_import_no_inference_media_command_line_serving_or_backend():
    assert _breaking(MATHS, ABOVE_MATHS) == []


def test_media_imports_nothing_from_the_command_lines_serving_or_the_api():
    forbidden = tuple(f"lgcvd_runtime.{m}" for m in ("cli", "serve", "api"))
    assert _breaking(("lgcvd_runtime.media",), forbidden) == []


def test_the_runtime_imports_neither_training_nor_export():
    assert _breaking(("lgcvd_runtime",), ("lgcvd_train", "lgcvd_export")) == []


def test_inside_the_runtime_only_the_command_lines_and_serving_use_the_api_facade():
    users = {
        m
        for m, targets in import_graph().items()
        if m.startswith("lgcvd_runtime") and "lgcvd_runtime.api" in targets
    }
    tops = ("lgcvd_runtime.cli", "lgcvd_runtime.serve", "lgcvd_runtime.ros2")
    assert users and all(_under(m, tops) for m in users)


def test_the_ros2_node_uses_the_runtime_and_nothing_uses_it():
    ros2 = ("lgcvd_runtime.ros2",)
    assert "lgcvd_runtime.api" in import_graph()["lgcvd_runtime.ros2.node"]
    users = [
        m
        for m, targets in import_graph().items()
        if not _under(m, ros2) and any(_under(t, ros2) for t in targets)
    ]
    assert users == []


@pytest.mark.parametrize(
    "module", ["lgcvd_runtime.pipeline", "lgcvd_runtime.api", "lgcvd_train.torch_backend"]
)
def test_importing_the_pipeline_the_api_or_the_torch_reference_loads_no_engine_package(module):
    program = (
        f"import json, sys, {module}; "
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {ENGINES!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# Installed as sitecustomize: any import of PyAV fails, as on a training machine without it.
NO_AV = textwrap.dedent(
    """
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "av":
                raise ImportError(f"{name} is blocked: training must not need PyAV")
            return None

    sys.meta_path.insert(0, Blocker())
    """
)


def _without_av(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(NO_AV)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_training_and_export_import_where_pyav_cannot_be_imported(tmp_path):
    program = textwrap.dedent(
        """
        import sys
        import lgcvd_export.cli, lgcvd_train.cli, lgcvd_train.trainer
        try:
            import av
        except ImportError:
            pass
        else:
            sys.exit("the blocker let av import")
        """
    )
    result = _without_av(tmp_path, "-c", program)
    assert result.returncode == 0, result.stderr


def test_lgcvd_train_trains_a_tiny_model_where_pyav_cannot_be_imported(tmp_path):
    out = tmp_path / "run"
    args = ["--preset", "tiny", "--data", "shapes", "--num-videos", "4", "--batch-size", "1"]
    result = _without_av(
        tmp_path, "-m", "lgcvd_train.cli", *args, "--steps", "2", "--out", str(out), "--quiet"
    )
    assert result.returncode == 0, result.stderr
    assert (out / "checkpoint.safetensors").is_file()
