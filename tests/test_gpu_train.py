"""tools/gpu_train.sh and tools/slim_checkpoint.py on the CPU: the plan it prints, the same
command line with a tiny preset and a few steps, and weights that --init-from accepts in files
that fit 16 MiB (the script itself is untested on a GPU)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from lgcvd_train.checkpoint import load_checkpoint
from lgcvd_train.config import ModelConfig, preset
from lgcvd_train.data import shapes
from lgcvd_train.data.arrays import save_videos
from lgcvd_train.init_weights import init_model
from lgcvd_train.model import LGCVD

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SCRIPT = TOOLS / "gpu_train.sh"
MIB = 2**20


def slim_tool():
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    return importlib.import_module("slim_checkpoint")


def gpu_train(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "shapes.npz"
    save_videos(path, shapes.generate(6, 16, 32, seed=0))
    return path


def test_the_dry_run_prints_the_bf16_base_plan_and_trains_nothing(clips, tmp_path):
    result = gpu_train("--dry-run", "--data", clips, "--out", tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "plan (bf16 autocast is lgcvd-train's default on CUDA):"
    probe = next(line for line in lines if line.startswith("  probe:"))
    assert "-m lgcvd_train.cli --preset base" in probe and "--device cuda" in probe
    assert "--steps 100" in probe
    assert any("--resume --steps STEPS --cooldown-steps STEPS/4" in line for line in lines)
    assert not (tmp_path / "out").exists()


def test_missing_data_is_one_line(tmp_path):
    result = gpu_train("--data", tmp_path / "none.npz", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"gpu_train.sh: {tmp_path / 'none.npz'} is missing; prepare it with "
        "tools/make_dataset.py (see --help) or pass --render N\n"
    )


@pytest.mark.slow
def test_the_same_command_on_the_cpu_trains_and_writes_weights_init_from_accepts(clips, tmp_path):
    out = tmp_path / "out"
    args = ["--data", clips, "--out", out, "--work", tmp_path / "full"]
    args += ["--device", "cpu", "--preset", "tiny"]
    args += ["--batch-size", 2, "--probe-steps", 1, "--max-steps", 2, "--minutes", 3]
    result = gpu_train(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trained to step 2" in result.stdout
    files = sorted(p.name for p in (out / "run").iterdir())
    assert files == ["checkpoint.json", "checkpoint.safetensors", "metrics.jsonl"]
    assert all((out / "run" / f).stat().st_size <= 16 * MIB for f in files)
    assert sorted(p.name for p in out.iterdir()) == ["run", "train.log"]
    full = load_checkpoint(tmp_path / "full")
    assert full.step == 2
    model, source = init_model(out / "run", ModelConfig())  # the run's own config wins
    assert source["step"] == 2 and model.cfg == preset("tiny")
    for name, value in model.state_dict().items():
        expected = full.tensors[f"ema.{name}"]
        assert torch.equal(value, expected.to(torch.float16).to(value.dtype)), name


def test_the_base_presets_ema_weights_fit_16_mib_in_fp16():
    state = LGCVD(preset("base")).state_dict()
    floats = sum(v.numel() for v in state.values() if v.is_floating_point())
    assert 2 * floats < 16 * MIB  # about 12 MB: one file that comes back


def test_slim_refuses_weights_over_the_limit_and_an_existing_output(tiny_checkpoint, tmp_path):
    main = slim_tool().main
    run = tiny_checkpoint.parent
    over = CliRunner().invoke(main, [str(run), str(tmp_path / "a"), "--max-mib", "0.1"])
    assert over.exit_code == 1
    size = sum(v.numel() for v in LGCVD(preset("tiny")).state_dict().values()) * 2 / MIB
    assert over.output == (
        f"Error: the EMA weights of {tiny_checkpoint} take {size:.1f} MiB in fp16, over "
        "--max-mib 0.1; use a smaller preset or raise --max-mib\n"
    )
    assert CliRunner().invoke(main, [str(run), str(tmp_path / "b")]).exit_code == 0
    again = CliRunner().invoke(main, [str(run), str(tmp_path / "b")])
    assert again.exit_code == 1
    target = tmp_path / "b" / "checkpoint.safetensors"
    assert again.output == f"Error: {target} already exists; pass --force to overwrite it\n"
    slimmed = load_checkpoint(tmp_path / "b")
    assert all(k.startswith("ema.") for k in slimmed.tensors)
    assert {v.dtype for v in slimmed.tensors.values() if v.is_floating_point()} == {torch.float16}
    assert np.isclose(target.stat().st_size / MIB, size, rtol=0.05)
