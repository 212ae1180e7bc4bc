"""Model and training configuration: frozen dataclasses, presets, JSON round trip.

A checkpoint stores `ModelConfig.to_dict()` beside its weights; loaders rebuild from that JSON and
never replay command-line flags (docs/design.md, Bundle).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.schedule import ScheduleSpec

# Choices of TrainConfig.loss_weighting (loss_weighting.py) and TrainConfig.adam (speed.py), here
# so that the command line can list them without importing torch.
WEIGHTINGS = ("none", "min-snr")
ADAMS = ("default", "fused")


@dataclass(frozen=True)
class ModelConfig(ModelSpec):
    """Architecture of the LGC-VD denoiser and sequence encoder (paper §3.2, §4.2): the input
    layout (`ModelSpec`: image_size, channels, frames N, cond_slots K, parameterization,
    residual; its defaults below) and the network's shape."""

    image_size: int = 64
    channels: int = 3
    frames: int = 8
    cond_slots: int = 2
    parameterization: str = "v"
    width: int = 128  # base channel count
    mults: tuple[int, ...] = (1, 2, 3, 4)  # channel multiplier per resolution level
    num_res_blocks: int = 2  # per down level (up levels get one more)
    attn_resolutions: tuple[int, ...] = (16,)  # self-attention at these feature sizes
    head_channels: int = 128  # channels per attention head
    dropout: float = 0.0
    context: bool = True  # sequence encoder + cross-attention (global context)
    cross_attn_levels: tuple[str, ...] = ("mid",)  # "mid" and/or feature sizes as strings ("8")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        tuples = {"mults", "attn_resolutions", "cross_attn_levels"}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


PRESETS: dict[str, ModelConfig] = {
    # The reference code's BAIR model (paper §4.2): ~96M parameters with the encoder.
    "paper-bair64": ModelConfig(
        image_size=64, width=128, mults=(1, 2, 3, 4), attn_resolutions=(16,)
    ),
    "paper-city128": ModelConfig(
        image_size=128, width=128, mults=(1, 2, 3, 4), attn_resolutions=(32,)
    ),
    # CPU presets: same structure, fewer channels.
    # 64x64 on a CPU budget. The full-resolution level is 64 wide because the head must carry
    # 3N = 24 signed noise channels through a SiLU (about two channels per signed value): at
    # width 32 (`small`) the one-step x0 estimate stays grainy. At equal steps `base` has 15-27%
    # lower x0 error than `small` for 1.35x the time per step (docs/results.md).
    "base": ModelConfig(
        image_size=64,
        width=64,
        mults=(1, 1, 2, 2),
        num_res_blocks=1,
        attn_resolutions=(16,),
        head_channels=32,
    ),
    "small": ModelConfig(
        image_size=64, width=32, mults=(1, 2, 2, 2), attn_resolutions=(16,), head_channels=32
    ),
    "tiny": ModelConfig(
        image_size=32,
        width=32,
        mults=(1, 2),
        num_res_blocks=1,
        attn_resolutions=(16,),
        head_channels=32,
    ),
}


def preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


# Task mixture of the reference code: prediction 45%, unconditional 40%,
# interpolation 5%, random positions 10%.
DEFAULT_TASK_WEIGHTS = {
    "prediction": 0.45,
    "unconditional": 0.40,
    "interpolation": 0.05,
    "random": 0.10,
}


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and two-stage training settings (paper §3.3, §4.2)."""

    steps: int = 200
    batch_size: int = 8  # clips per process per step
    lr: float = 1e-4
    cooldown: int = 0  # decay lr linearly to 0 over the last this many steps (0: constant lr)
    ema_decay: float = 0.999
    grad_clip: float | None = None
    loss: str = "l1"  # "l1" or "l2" on the parameterization's target
    two_stage: bool = True  # stage 2 sees the detached stage-1 x0 estimate
    clip_frames: int = 14  # L
    hflip: bool = True
    task_weights: dict = field(default_factory=lambda: dict(DEFAULT_TASK_WEIGHTS))
    seed: int = 0
    save_every: int = 500
    log_every: int = 10
    amp: bool = True  # bf16 autocast where native: CUDA, CPUs with AVX512-BF16 / AMX
    schedule: ScheduleSpec = ScheduleSpec()  # the noise schedule trained with; travels to bundles
    # Loss weighting over timesteps: "none" (every t alike) or "min-snr" (Hang et al. 2023: the
    # per-sample weight min(SNR, gamma) turned into the parameterization's target, see
    # loss_weighting.py), the default since it won at equal CPU time (docs/results.md, training
    # efficiency). Part of the recipe: a resumed run keeps its checkpoint's.
    loss_weighting: str = "min-snr"
    snr_gamma: float = 5.0  # gamma of "min-snr"
    # Speed options (docs/results.md, Training efficiency): they change how fast a step runs,
    # not what it computes, so a resumed run takes them from its command line like `amp` (speed.py).
    adam: str = "fused"  # torch.optim.Adam's implementation: "fused" (fastest here) or "default"
    channels_last: bool = False  # model and inputs in torch.channels_last memory format
    compile: bool = False  # torch.compile the network (checkpoints keep the plain names)
    prefetch: bool = False  # prepare the next batch on a background thread during the step

    def lr_at(self, step: int) -> float:
        """Learning rate of the update that takes the run from `step` to `step + 1`: constant,
        then a linear cooldown to 0 (warmup-stable-decay without warmup). Only the cooldown depends
        on `steps`, so a run can be extended or given a cooldown when it is resumed."""
        left = self.steps - step
        return self.lr * min(1.0, left / self.cooldown) if self.cooldown else self.lr

    def continued_by(self, command: TrainConfig) -> TrainConfig:
        """This (a checkpoint's) config as a resumed run uses it: the fields a resume may change
        come from the resuming command's config, the recipe stays the checkpoint's."""
        return self.with_(**{name: getattr(command, name) for name in CHANGEABLE_ON_RESUME})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """From `to_dict`'s JSON. Configs written before they held a schedule or the speed
        options get the default; those written before the loss weighting trained unweighted."""
        d = {"loss_weighting": "none", **d}
        if "schedule" in d:
            d = {**d, "schedule": ScheduleSpec.from_dict(d["schedule"])}
        return cls(**d)

    def with_(self, **kw) -> TrainConfig:
        return replace(self, **kw)


# What `--resume` takes from the command line rather than the checkpoint: the length of the run
# and the options that change only its speed.
CHANGEABLE_ON_RESUME = ("steps", "cooldown", "amp", "adam", "channels_last", "compile", "prefetch")
