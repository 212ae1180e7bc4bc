"""The research scripts run as their docstrings say (`python research/NAME.py`, siblings imported
by bare name) from any folder, and every test of research/tests carries the `research` marker."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import help_outputs

pytestmark = pytest.mark.research  # every test here (pyproject's markers)

RESEARCH = Path(__file__).resolve().parents[1]
SCRIPTS = [f for f in sorted(RESEARCH.glob("*.py")) if "__main__" in f.read_text()]


def test_every_script_prints_its_help_from_a_foreign_folder(tmp_path):
    runs = help_outputs(SCRIPTS, tmp_path)
    assert {"eval_tasks.py", "table5.py", "x0_error.py"} <= set(runs)
    for name, (code, output) in runs.items():
        assert code == 0 and "Usage:" in output, f"{name}: {output}"


def marks_research(module: Path) -> bool:
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
            "pytestmark"
        ]:
            return ast.unparse(node.value) == "pytest.mark.research"
    return False


def test_every_test_module_here_marks_its_tests_research():
    modules = sorted((RESEARCH / "tests").glob("test_*.py"))
    assert len(modules) >= 4
    assert [m.name for m in modules if not marks_research(m)] == []
