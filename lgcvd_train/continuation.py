"""What a resumed or fine-tuned run inherits: the model (and, resumed, the data settings) its
checkpoint or source records, so that data are loaded at the resolution of the model that will
be trained. A command-line option that contradicts the record is a one-line ContinuationError.

Knows configs, checkpoints and which lgcvd-train options a run inherits (by parameter name;
the flags come from the command's own declarations, `Given`); nothing about the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import click
from click.core import ParameterSource

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
FOLLOWED = (*MODEL_OPTIONS, "num_videos", "seed", "fit", "roi")  # what a resumed run keeps


@dataclass(frozen=True)
class Given:
    """An lgcvd-train option given on the command line: its click declaration and value."""

    option: click.Parameter
    value: object

    @property
    def flag(self) -> str:
        """The option as typed: --preset, --residual, --no-residual, --no-context."""
        off = self.value is False and self.option.secondary_opts
        return self.option.secondary_opts[0] if off else self.option.opts[0]

    @property
    def typed(self) -> str:
        """With its value unless it is a flag: --preset base, --no-residual."""
        return self.flag if isinstance(self.value, bool) else f"{self.flag} {self.value}"


def given_options(ctx: click.Context) -> dict[str, Given]:
    """The options of FOLLOWED given on `ctx`'s command line, by parameter name."""
    return {
        p.name: Given(p, ctx.params[p.name])
        for p in ctx.command.params
        if p.name in FOLLOWED and ctx.get_parameter_source(p.name) is not ParameterSource.DEFAULT
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


def follow_recorded(
    asked: ModelConfig, recorded: ModelConfig, given: dict[str, Given], origin: str, rule: str
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
        typed = [given[name] for name in MODEL_OPTIONS if name in given]
        asking = " ".join(option.typed for option in typed)
        raise ContinuationError(
            f"{origin} holds {describe(recorded)}; {asking} asks for {describe(wanted)}: "
            f"drop {' '.join(option.flag for option in typed)} ({rule})"
        )
    return recorded


def follow_checkpoint(
    mcfg: ModelConfig, given: dict[str, Given], out: Path, data: str, num_videos: int
):
    """(model config, num_videos, seed, framing) of a resumed run: its checkpoint's, so that the
    data are those the model was trained on, at its resolution and fit; a contradicting option
    is a one-line error."""
    ckpt = load_checkpoint(out / FILENAME)
    rule = "a resumed run keeps its checkpoint's architecture"
    mcfg = follow_recorded(mcfg, ckpt.model_config, given, str(out), rule)
    framing = ckpt.framing
    recorded = {"seed": ckpt.train_config.seed, "fit": framing.fit, "roi": framing.roi}
    generated = ckpt.state.get("provenance", {}).get("num_videos")
    if data in DATA_GENERATORS and generated is not None:
        recorded["num_videos"] = generated
    for name, value in recorded.items():
        if name in given and given[name].value != value:
            flag = given[name].flag
            raise ContinuationError(
                f"{out} was trained with {flag} {value}; {given[name].typed} asks for other "
                f"training data: drop {flag} (a resumed run keeps its data and seed)"
            )
    return mcfg, recorded.get("num_videos", num_videos), recorded["seed"], framing


def follow_source(mcfg: ModelConfig, tcfg: TrainConfig, given: dict[str, Given], source: Path):
    """(model config, train config) of a run fine-tuned from `source`: its architecture (where it
    records one) and its noise schedule."""
    arch, schedule = recorded_config(source)
    rule = "fine-tuning keeps the architecture of the model it starts from"
    if arch is not None:
        if "residual" in given:  # what the network denoises is the new run's choice
            arch = replace(arch, residual=mcfg.residual)
        mcfg = follow_recorded(mcfg, arch, given, str(source), rule)
    return mcfg, tcfg.with_(schedule=schedule)
