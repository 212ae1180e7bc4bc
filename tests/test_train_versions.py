"""lgcvd-train and lgcvd-export against files from a newer lgcvd (refused in one line that says to
upgrade) and in a runtime-only install (one line that says to install the train extra)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import export_tiny_bundle, random_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lgcvd_runtime.bundle import FORMAT_VERSION
from lgcvd_train.checkpoint import (
    FILENAME,
    META_KEY,
    save_checkpoint,
)
from lgcvd_train.cli import main
from lgcvd_train.config import TrainConfig

TINY = ["--preset", "tiny", "--data", "shapes", "--num-videos", "4", "--batch-size", "1"]
UPGRADE = "upgrade lgcvd (pip install -U lgcvd)"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(*args):
    return CliRunner().invoke(main, [*TINY, "--quiet", *(str(a) for a in args)])


# --- checkpoints and bundles from a newer lgcvd --------------------------------------------------


def newer_checkpoint(run: Path, change: str) -> Path:
    """A copy of a checkpoint as a newer lgcvd might write it."""
    model = random_model()
    src = save_checkpoint(
        run.parent / "src",
        model,
        copy.deepcopy(model),
        torch.optim.Adam(model.parameters()),
        1,
        TrainConfig(),
        {},
    )
    with safe_open(src, framework="pt") as f:
        state = json.loads(f.metadata()[META_KEY])
    if change == "format version":
        state["format_version"] = 2
    elif change == "schedule":
        state["train_config"]["schedule"]["type"] = "sigmoid"
    else:
        state[change]["hyper_attention"] = True
    run.mkdir(parents=True)
    save_file(load_file(src), run / FILENAME, {META_KEY: json.dumps(state)})
    return run / FILENAME


NEWER = {
    "format version": "checkpoint format version 2 is newer than this lgcvd's (1)",
    "model_config": "written by a newer lgcvd (model_config has fields hyper_attention that this "
    "version does not know)",
    "train_config": "written by a newer lgcvd (train_config has fields hyper_attention that this "
    "version does not know)",
    "schedule": "schedule 'sigmoid' is unknown to this lgcvd",
}


@pytest.mark.parametrize("change", list(NEWER))
@pytest.mark.parametrize("command", ["resume", "init-from", "export"])
def test_a_checkpoint_from_a_newer_lgcvd_is_refused_in_one_line(tmp_path, change, command):
    from lgcvd_export.cli import main as export_main

    f = newer_checkpoint(tmp_path / "run", change)
    if command == "resume":
        result = train("--out", f.parent, "--resume")
    elif command == "init-from":
        result = train("--out", tmp_path / "new", "--init-from", f.parent)
    else:
        result = CliRunner().invoke(export_main, [str(f.parent), "-o", str(tmp_path / "x.lgcvd")])
    assert result.exit_code == 1
    assert result.output == f"Error: {f}: {NEWER[change]}; {UPGRADE}\n"
    assert sorted(os.listdir(tmp_path)) == ["run", "src"]
    assert os.listdir(f.parent) == [FILENAME]


@pytest.mark.parametrize("change", ["format version", "model_config"])
def test_init_from_a_bundle_of_a_newer_lgcvd_is_refused_in_one_line(
    tmp_path_factory, tmp_path, change
):
    import shutil

    bundle = tmp_path / "newer.lgcvd"
    shutil.copytree(export_tiny_bundle(tmp_path_factory), bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    if change == "format version":
        manifest["format_version"] = FORMAT_VERSION + 1
        want = (
            f"{bundle}: bundle format version {FORMAT_VERSION + 1} is newer than this runtime's "
            f"({FORMAT_VERSION}); upgrade lgcvd"
        )
    else:
        manifest["provenance"]["model_config"]["hyper_attention"] = True
        want = f"{bundle / 'manifest.json'}: {NEWER['model_config']}; {UPGRADE}"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    result = train("--out", tmp_path / "run", "--init-from", bundle)
    assert result.exit_code == 1
    assert result.output == f"Error: {want}\n"
    assert not (tmp_path / "run").exists()


# --- runtime-only install -------------------------------------------------------------------------

WITHOUT = (
    "import sys; sys.modules[{module!r}] = None; sys.argv[0] = {command!r}; "
    "from {package}.cli import main; main()"
)


@pytest.mark.parametrize(
    "command, package, module",
    [
        ("lgcvd-train", "lgcvd_train", "torch"),
        ("lgcvd-export", "lgcvd_export", "torch"),
        ("lgcvd-export", "lgcvd_export", "onnx"),
    ],
)
def test_without_the_train_extra_the_commands_say_what_to_install(
    tmp_path, command, package, module
):
    if command == "lgcvd-train":
        args = ["--data", "shapes", "--out", str(tmp_path / "run")]
    else:
        args = [str(tmp_path / "run"), "-o", str(tmp_path / "x.lgcvd")]
    program = WITHOUT.format(module=module, command=command, package=package)
    proc = subprocess.run(
        [sys.executable, "-c", program, *args], env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr == (
        f"Error: {command} needs the Python package that provides '{module}', which is not "
        "installed (a runtime-only install?); install the train extra: pip install 'lgcvd[train]'\n"
    )
    assert os.listdir(tmp_path) == []
