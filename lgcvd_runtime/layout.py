"""The network's input layout (paper §3.2): what the runtime and the trainer both know of a model.

`ModelSpec` is the layout a bundle's manifest records (`bundle.Manifest.model`); the trainer's
`lgcvd_train.config.ModelConfig` extends it with the architecture, so the layout's fields and
the channel counts derived from them are written here once. An x_t window is N frames of C
channels stacked on the channel axis, (B, C·N, H, W); the condition is K slots, each a frame and
its mask channel, (B, (C+1)·K, H, W). This module knows no network, engine or file format.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ModelSpec:
    """What the runtime must know about the network's input layout."""

    image_size: int  # H = W
    channels: int  # C, per frame
    frames: int  # N, frames per window
    cond_slots: int  # K, local condition slots
    parameterization: str  # "v" or "eps"
    residual: bool = False  # x0 is the window minus conditioning.baseline (False: the window)

    @property
    def new_frames(self) -> int:
        return self.frames - self.cond_slots

    @property
    def window_channels(self) -> int:
        """C·N: the channels of x_t, of the denoiser's output and of the context's input."""
        return self.channels * self.frames

    @property
    def cond_channels(self) -> int:
        """(C+1)·K: the condition's channels, K frames and their K masks."""
        return self.cond_slots * (self.channels + 1)

    def layout(self) -> ModelSpec:
        """Just the layout: a plain ModelSpec of this one's layout fields (of a ModelConfig,
        what its bundle's manifest records)."""
        return ModelSpec(**{f.name: getattr(self, f.name) for f in fields(ModelSpec)})
