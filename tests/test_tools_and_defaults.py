"""Scripts in tools/ run from any folder on their own, and command-line defaults are the config
dataclasses' (one rule, one place)."""

from __future__ import annotations

import ast
from pathlib import Path

import click
from conftest import help_outputs

from lgcvd_export.bundle_writer import ExportOptions
from lgcvd_export.cli import main as export_main
from lgcvd_train.cli import main as train_main
from lgcvd_train.config import ModelConfig, TrainConfig
from lgcvd_train.data import GENERATED_VIDEOS
from lgcvd_train.eval_protocol import SamplerChoice
from lgcvd_train.evaluate import main as eval_main

FILES = sorted((Path(__file__).resolve().parents[1] / "tools").glob("*.py"))
TOOLS = [f for f in FILES if "__main__" in f.read_text()]  # the rest, benchlib, is what they share


def test_every_tool_prints_its_help_from_a_foreign_folder(tmp_path):
    runs = help_outputs(TOOLS, tmp_path)
    assert len(runs) >= 7
    for name, (code, output) in runs.items():
        assert code == 0 and "Usage:" in output, f"{name}: {output}"


def test_no_tool_imports_another_or_edits_the_import_path():
    names = {tool.stem for tool in TOOLS}
    for tool in FILES:
        tree = ast.parse(tool.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            assert not {m.split(".")[0] for m in modules} & names, f"{tool.name} imports a tool"
        assert "sys.path" not in tool.read_text(), f"{tool.name} edits sys.path"


def defaults(command: click.Command) -> dict:
    return {param.name: param.default for param in command.params}


def test_lgcvd_train_defaults_are_the_config_defaults():
    train, given = TrainConfig(), defaults(train_main)
    renamed = {"cooldown_steps": "cooldown"}
    for option in ("steps", "batch_size", "lr", "cooldown_steps", "ema_decay", "grad_clip"):
        assert given[option] == getattr(train, renamed.get(option, option)), option
    for option in ("loss", "seed", "save_every"):
        assert given[option] == getattr(train, option), option
    assert given["parameterization"] == ModelConfig().parameterization
    assert given["num_videos"] == GENERATED_VIDEOS


def test_export_and_eval_defaults_are_their_option_dataclasses():
    export, given = ExportOptions(), defaults(export_main)
    assert (given["max_batch"], given["opset"]) == (export.max_batch, export.opset)
    evaluate = defaults(eval_main)
    assert evaluate["backend"] == SamplerChoice.backend
    assert evaluate["device"] == SamplerChoice.device
