"""What a resumed or fine-tuned run inherits: the model (and, resumed, the data settings) its
checkpoint or source records, so that data are loaded at the resolution of the model that will
be trained. A command-line option that contradicts the record is a one-line ContinuationError.

Knows configs, checkpoints and the lgcvd-train option names; nothing about the training loop.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lgcvd_runtime.errors import LgcvdError

from .checkpoint import FILENAME, load_checkpoint
from .config import PRESETS, ModelConfig, TrainConfig
from .data import DATA_GENERATORS
from .init_weights import recorded_config

MODEL_OPTIONS = (
    "preset_name",
    "no_context",
    "parameterization",
    "residual",
)  # what builds the ModelConfig
FLAGS = {  # lgcvd-train parameter name -> its option
    "preset_name": "--preset",
    "no_context": "--no-context",
    "parameterization": "--parameterization",
    "residual": "--residual",
    "num_videos": "--num-videos",
    "seed": "--seed",
}


class ContinuationError(LgcvdError):
    """An option given on the command line contradicts the run or model being continued."""


def describe(cfg: ModelConfig) -> str:
    """What a user recognises a model config by, e.g. "a 32x32 'tiny' model (v-prediction)"."""
    name = next(
        (
            name
            for name, arch in PRESETS.items()
            if replace(
                arch,
                context=cfg.context,
                parameterization=cfg.parameterization,
                residual=cfg.residual,
            )
            == cfg
        ),
        "custom",
    )
    size, context = cfg.image_size, "" if cfg.context else ", no context"
    residual = ", residual" if cfg.residual else ""
    return f"a {size}x{size} '{name}' model ({cfg.parameterization}-prediction{residual}{context})"


def typed_flag(name: str, value) -> tuple[str, object]:
    """(the option as typed, its value or None for a flag): --residual, --no-residual,
    --preset base."""
    if isinstance(value, bool):
        return (FLAGS[name] if value else "--no-" + FLAGS[name][2:]), None
    return FLAGS[name], value


def follow_recorded(
    asked: ModelConfig, recorded: ModelConfig, given: dict, origin: str, rule: str
) -> ModelConfig:
    """`recorded` (a checkpoint's or a source model's architecture); a model option given on the
    command line that contradicts it is a one-line error naming both."""
    wanted = recorded
    if "preset_name" in given:
        wanted = replace(
            asked,
            context=recorded.context,
            parameterization=recorded.parameterization,
            residual=recorded.residual,
        )
    if "no_context" in given:
        wanted = replace(wanted, context=asked.context)
    if "parameterization" in given:
        wanted = replace(wanted, parameterization=asked.parameterization)
    if "residual" in given:
        wanted = replace(wanted, residual=asked.residual)
    if wanted != recorded:
        typed = [typed_flag(name, given[name]) for name in MODEL_OPTIONS if name in given]
        asking = " ".join(flag + ("" if value is None else f" {value}") for flag, value in typed)
        raise ContinuationError(
            f"{origin} holds {describe(recorded)}; {asking} asks for {describe(wanted)}: "
            f"drop {' '.join(flag for flag, _ in typed)} ({rule})"
        )
    return recorded


def follow_checkpoint(mcfg: ModelConfig, given: dict, out: Path, data: str, num_videos: int):
    """(model config, num_videos, seed) of a resumed run: its checkpoint's, so that the data are
    those the model was trained on, at its resolution; a contradicting option is a one-line
    error."""
    ckpt = load_checkpoint(out / FILENAME)
    rule = "a resumed run keeps its checkpoint's architecture"
    mcfg = follow_recorded(mcfg, ckpt.model_config, given, str(out), rule)
    recorded = {"seed": ckpt.train_config.seed}
    generated = ckpt.state.get("provenance", {}).get("num_videos")
    if data in DATA_GENERATORS and generated is not None:
        recorded["num_videos"] = generated
    for name, value in recorded.items():
        if given.get(name, value) != value:
            flag = FLAGS[name]
            raise ContinuationError(
                f"{out} was trained with {flag} {value}; {flag} {given[name]} asks for other "
                f"training data: drop {flag} (a resumed run keeps its data and seed)"
            )
    return mcfg, recorded.get("num_videos", num_videos), recorded["seed"]


def follow_source(mcfg: ModelConfig, tcfg: TrainConfig, given: dict, source: Path):
    """(model config, train config) of a run fine-tuned from `source`: its architecture (where it
    records one) and its noise schedule."""
    arch, schedule = recorded_config(source)
    rule = "fine-tuning keeps the architecture of the model it starts from"
    if arch is not None:
        if "residual" in given:  # what the network denoises is the new run's choice
            arch = replace(arch, residual=mcfg.residual)
        mcfg = follow_recorded(mcfg, arch, given, str(source), rule)
    return mcfg, tcfg.with_(schedule=schedule)
