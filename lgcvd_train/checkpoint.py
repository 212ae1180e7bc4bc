"""Checkpoints: one safetensors file holding weights, EMA weights and optimizer state, with the
JSON state (model config, training config, step, provenance) in its metadata, plus a readable copy
of that JSON beside it. Written to a temporary file and renamed, so a checkpoint on disk is always
complete; loaded without pickle (style.md 10)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import write_then_rename
from lgcvd_runtime.schedule import ScheduleSpec

from .config import ModelConfig, TrainConfig
from .model import LGCVD

FILENAME = "checkpoint.safetensors"
META_KEY = "lgcvd"


class CheckpointError(LgcvdError):
    """A checkpoint is missing, corrupt or not an lgcvd checkpoint."""


@dataclass
class Checkpoint:
    model_config: ModelConfig
    train_config: TrainConfig
    step: int
    state: dict  # the JSON state (provenance, optimizer groups, ...)
    tensors: dict[str, torch.Tensor]

    @property
    def schedule(self) -> ScheduleSpec:
        """The noise schedule the model was trained with, from its training config."""
        return self.train_config.schedule

    def weights(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def resolve(path: Path) -> Path:
    """A run directory or the checkpoint file itself -> the checkpoint file."""
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


def save_checkpoint(
    run_dir: Path, model, ema, optimizer, step: int, train_cfg, extra: dict
) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    opt = optimizer.state_dict()
    for i, st in opt["state"].items():
        for k, v in st.items():
            tensors[f"optim.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    state = {
        "model_config": model.cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "step": step,
        "param_groups": opt["param_groups"],
        **extra,
    }
    text = json.dumps(state)
    target = run_dir / FILENAME
    with write_then_rename(target) as tmp:
        weights = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(weights, tmp, {META_KEY: text})
    with write_then_rename(run_dir / "checkpoint.json") as tmp:
        tmp.write_text(json.dumps(state, indent=2) + "\n")
    return target


def load_checkpoint(path: Path) -> Checkpoint:
    f = resolve(path)
    if not f.is_file():
        raise CheckpointError(f"{f}: no such checkpoint; pass a run directory or its {FILENAME}")
    try:
        with safe_open(f, framework="pt") as sf:
            meta = (sf.metadata() or {}).get(META_KEY)
        tensors = load_file(f)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{f}: corrupt checkpoint ({e}); use another checkpoint") from None
    if meta is None:
        raise CheckpointError(f"{f}: not an lgcvd checkpoint (no '{META_KEY}' metadata)")
    state = json.loads(meta)
    return Checkpoint(
        model_config=ModelConfig.from_dict(state["model_config"]),
        train_config=TrainConfig.from_dict(state["train_config"]),
        step=int(state["step"]),
        state=state,
        tensors=tensors,
    )


def restore_optimizer(optimizer, ckpt: Checkpoint) -> None:
    groups = ckpt.state["param_groups"]
    per_param: dict[int, dict] = {}
    for k, v in ckpt.weights("optim.").items():
        i, name = k.split(".", 1)
        per_param.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def load_model(path: Path, ema: bool = True) -> tuple[LGCVD, Checkpoint]:
    """Rebuild the model from the checkpoint's own config; EMA weights by default (design.md)."""
    ckpt = load_checkpoint(path)
    model = LGCVD(ckpt.model_config)
    try:
        model.load_state_dict(ckpt.weights("ema." if ema else "model."))
    except RuntimeError:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(
            f"{resolve(path)}: weights do not match the checkpoint's model config "
            "(checkpoint from another model preset?); use a checkpoint written by lgcvd-train"
        ) from None
    return model.eval(), ckpt
