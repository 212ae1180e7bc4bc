"""Checkpoints: one safetensors file holding weights, EMA weights and optimizer state, with the
JSON state (model config, training config, step, provenance) in its metadata, plus a readable copy
of that JSON beside it. Written to a temporary file and renamed, so a checkpoint on disk is always
complete; loaded without pickle.

The safetensors file is the checkpoint; `checkpoint.json` is only a copy for people to read. The
copy is removed before new weights are written and written again after them, so a process killed
between the two writes leaves no copy rather than a copy that names another step; a resumed run
writes it back (`sync_readable`). A checkpoint written by a newer lgcvd (newer format version,
config keys this version does not know) is refused with a one-line "upgrade lgcvd".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from lgcvd_runtime.checks import UPGRADE, refuse_unknown_fields
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import remove_abandoned, write_then_rename
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.schedule import SCHEDULES, ScheduleSpec

from .config import ModelConfig, TrainConfig
from .model import LGCVD

FILENAME = "checkpoint.safetensors"
READABLE = "checkpoint.json"  # the copy of the JSON state for people to read
META_KEY = "lgcvd"
FORMAT_VERSION = 1  # of the checkpoint layout; raised when an older lgcvd could not read one


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

    @property
    def framing(self) -> Framing:
        """How the training frames were fitted (state "framing"; absent before fits: crop)."""
        return Framing.from_dict(self.state.get("framing"))

    def weights(self, prefix: str) -> dict[str, torch.Tensor]:
        n = len(prefix)
        return {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def resolve(path: Path) -> Path:
    """A run directory or the checkpoint file itself -> the checkpoint file."""
    path = Path(path)
    return path / FILENAME if path.is_dir() else path


def remove_temporaries(run_dir: Path, names: tuple[str, ...]) -> list[str]:
    """Delete the temporary files that a process killed while writing one of `names` left in
    `run_dir` (`lgcvd_runtime.files.remove_abandoned`: only those of processes that no longer run,
    never a live writer's); return the deleted names."""
    return sorted(tmp.name for name in names for tmp in remove_abandoned(Path(run_dir) / name))


def write_readable(run_dir: Path, state: dict) -> None:
    with write_then_rename(Path(run_dir) / READABLE) as tmp:
        tmp.write_text(json.dumps(state, indent=2) + "\n")


def sync_readable(run_dir: Path, ckpt: Checkpoint) -> None:
    """Write `checkpoint.json` again where it is missing or disagrees with the weights' file."""
    path = Path(run_dir) / READABLE
    try:
        if json.loads(path.read_text()) == ckpt.state:
            return
    except (OSError, ValueError):
        pass
    write_readable(run_dir, ckpt.state)


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
        "format_version": FORMAT_VERSION,
        "model_config": model.cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "step": step,
        "param_groups": opt["param_groups"],
        **extra,
    }
    text = json.dumps(state)
    target = run_dir / FILENAME
    (run_dir / READABLE).unlink(missing_ok=True)  # no copy naming another step, even if killed
    try:
        with write_then_rename(target) as tmp:
            weights = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
            save_file(weights, tmp, {META_KEY: text})
        write_readable(run_dir, state)
    except (OSError, SafetensorError) as e:  # a full disk, a lost mount: the old checkpoint stays
        raise CheckpointError(
            f"{target}: cannot write the checkpoint of step {step} ({e}); free disk space or "
            "pass another --out"
        ) from None
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
    try:
        state = json.loads(meta)
        version = state.get("format_version", 1)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(
                f"{f}: checkpoint format version {version} is newer than this lgcvd's "
                f"({FORMAT_VERSION}); {UPGRADE}"
            )
        for cls, key in ((ModelConfig, "model_config"), (TrainConfig, "train_config")):
            refuse_unknown_fields(f, key, cls, state[key], CheckpointError)
        schedule = state["train_config"].get("schedule")  # absent before schedules travelled
        if schedule is not None:
            refuse_unknown_fields(f, "schedule", ScheduleSpec, schedule, CheckpointError)
            if schedule.get("type", ScheduleSpec.type) not in SCHEDULES:
                raise CheckpointError(
                    f"{f}: schedule {schedule['type']!r} is unknown to this lgcvd; {UPGRADE}"
                )
        return Checkpoint(
            model_config=ModelConfig.from_dict(state["model_config"]),
            train_config=TrainConfig.from_dict(state["train_config"]),
            step=int(state["step"]),
            state=state,
            tensors=tensors,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(
            f"{f}: corrupt checkpoint metadata ({type(e).__name__}: {e}); use another checkpoint"
        ) from None


def restore_optimizer(optimizer, ckpt: Checkpoint) -> None:
    groups = ckpt.state["param_groups"]
    per_param: dict[int, dict] = {}
    for k, v in ckpt.weights("optim.").items():
        i, name = k.split(".", 1)
        per_param.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


def load_model(path: Path, ema: bool = True) -> tuple[LGCVD, Checkpoint]:
    """Rebuild the model from the checkpoint's own config; EMA weights by default."""
    ckpt = load_checkpoint(path)
    weights = ckpt.weights("ema." if ema else "model.")
    bad = sorted(k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all())
    if bad:
        raise CheckpointError(
            f"{resolve(path)}: {len(bad)} weight tensors hold NaN or Inf (e.g. {bad[0]}): the run "
            "diverged; use a checkpoint from before it did"
        )
    model = LGCVD(ckpt.model_config)
    try:
        model.load_state_dict(weights)
    except RuntimeError:  # missing, unexpected or mis-shaped tensors
        raise CheckpointError(
            f"{resolve(path)}: weights do not match the checkpoint's model config "
            "(checkpoint from another model preset?); use a checkpoint written by lgcvd-train"
        ) from None
    return model.eval(), ckpt
