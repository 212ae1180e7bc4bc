"""The research scripts run as their docstrings say (`python research/NAME.py`, siblings imported
by bare name) from any folder, and every test of research/tests carries the `research` marker."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.research  # every test here (pyproject's markers)

RESEARCH = Path(__file__).resolve().parents[1]
SCRIPTS = [f for f in sorted(RESEARCH.glob("*.py")) if "__main__" in f.read_text()]


def test_every_script_prints_its_help_from_a_foreign_folder(tmp_path):
    runs = {
        script.name: subprocess.Popen(
            [sys.executable, str(script), "--help"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for script in SCRIPTS
    }
    assert {"eval_tasks.py", "table5.py", "x0_error.py"} <= set(runs)
    for name, run in runs.items():
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0 and "Usage:" in output, f"{name}: {output}"


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
