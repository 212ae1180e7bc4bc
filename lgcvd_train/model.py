"""The LGC-VD networks: denoising UNet and sequence encoder (paper §3.2, §4.2).

Frames are stacked on channels, so both networks are 2D. The UNet input is the local condition
y m (B, 4K, H, W) concatenated with the noisy window x_t (B, 3N, H, W); it predicts v (or eps) for
all N frames. The sequence encoder (the UNet's down path and middle block, its own weights, no time
input) turns the previous window's estimate (or U) into the global context z (B, C_mid, h, w),
which the UNet reads by cross-attention. `context()` returns the cross-attention K/V of z, so that
everything depending only on the previous window runs once per fragment.

Differences from the reference code, on purpose (docs/design.md): decoder self-attention sits at
the configured resolutions (the reference's index bug put it at twice that), the head has a GroupNorm,
and the cross-attention normalises x and z with separate GroupNorms.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .layers import CrossAttention, ResBlock, SelfAttention, group_norm, timestep_embedding


def level_channels(cfg: ModelConfig) -> list[int]:
    return [cfg.width * m for m in cfg.mults]


def level_size(cfg: ModelConfig, level: int) -> int:
    return cfg.image_size // 2**level


class DownPath(nn.Module):
    """init conv, then per level: num_res_blocks x (ResBlock [+ SelfAttention]), one skip, and a
    stride-2 conv (not after the last level); then the middle ResBlock -> SelfAttention -> ResBlock.
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, temb_dim: int | None):
        super().__init__()
        chans = level_channels(cfg)
        self.init_conv = nn.Conv2d(in_channels, cfg.width, 3, padding=1)
        self.levels = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = cfg.width
        for i, c_out in enumerate(chans):
            attn = level_size(cfg, i) in cfg.attn_resolutions
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResBlock(c, c_out, temb_dim, cfg.dropout))
                blocks.append(SelfAttention(c_out, cfg.head_channels) if attn else nn.Identity())
                c = c_out
            self.levels.append(blocks)
            last = i == len(chans) - 1
            self.downsample.append(
                nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1)
            )
        self.mid1 = ResBlock(c, c, temb_dim, cfg.dropout)
        self.mid_attn = SelfAttention(c, cfg.head_channels)
        self.mid2 = ResBlock(c, c, temb_dim, cfg.dropout)

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None):
        h = self.init_conv(x)
        skips = []
        for blocks, down in zip(self.levels, self.downsample, strict=True):
            for block in blocks:
                h = block(h, temb) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        return h, skips


class SequenceEncoder(nn.Module):
    """Previous window (B, 3N, H, W) -> global context z (B, C_mid, H/2^(L-1), W/2^(L-1))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.down = DownPath(cfg, cfg.window_channels, temb_dim=None)

    def forward(self, prev: torch.Tensor) -> torch.Tensor:
        z, _ = self.down(prev, None)
        return z


class UNet(nn.Module):
    """(x_t, t, y m, context K/V) -> v for all N frames. x_t: (B, 3N, H, W); t: (B,)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        chans = level_channels(cfg)
        temb_dim = 4 * cfg.width
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.width, temb_dim), nn.GELU(), nn.Linear(temb_dim, temb_dim)
        )
        in_channels = cfg.cond_channels + cfg.window_channels  # cond and x_t, stacked
        self.down = DownPath(cfg, in_channels, temb_dim)
        z_ch = chans[-1]
        use_ctx = cfg.context
        self.mid_cross = (
            CrossAttention(z_ch, z_ch, cfg.head_channels)
            if use_ctx and "mid" in cfg.cross_attn_levels
            else None
        )
        self.up_levels = nn.ModuleList()
        self.up_cross = nn.ModuleList()
        self.upsample = nn.ModuleList()
        c = chans[-1]
        for i in reversed(range(len(chans))):
            c_skip, c_out = chans[i], chans[i - 1] if i > 0 else cfg.width
            size = level_size(cfg, i)
            attn = size in cfg.attn_resolutions
            blocks = nn.ModuleList()
            for j in range(cfg.num_res_blocks + 1):
                blocks.append(ResBlock(c + c_skip if j == 0 else c, c_out, temb_dim, cfg.dropout))
                blocks.append(SelfAttention(c_out, cfg.head_channels) if attn else nn.Identity())
                c = c_out
            self.up_levels.append(blocks)
            cross = use_ctx and str(size) in cfg.cross_attn_levels
            self.up_cross.append(CrossAttention(c, z_ch, cfg.head_channels) if cross else None)
            self.upsample.append(
                nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1)
                if i > 0
                else nn.Identity()
            )
        self.head = nn.Sequential(
            group_norm(c), nn.SiLU(), nn.Conv2d(c, cfg.window_channels, 3, padding=1)
        )

    def cross_attentions(self) -> list[CrossAttention]:
        """The cross-attention modules in the order their K/V appear in the context."""
        mods = [self.mid_cross] + list(self.up_cross)
        return [m for m in mods if m is not None]

    def forward(self, x_t, t, cond, context: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.cfg.width))
        h, skips = self.down(torch.cat([cond, x_t], dim=1), temb)
        kv = iter(zip(context[0::2], context[1::2], strict=True))
        if self.mid_cross is not None:
            h = self.mid_cross(h, *next(kv))
        for blocks, cross, up in zip(self.up_levels, self.up_cross, self.upsample, strict=True):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, temb) if isinstance(block, ResBlock) else block(h)
            if cross is not None:
                h = cross(h, *next(kv))
            h = up(h)
        return self.head(h)


class LGCVD(nn.Module):
    """Denoiser UNet + sequence encoder. `forward` is the training entry point."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.unet = UNet(cfg)
        self.encoder = SequenceEncoder(cfg) if cfg.context else None

    def context(self, prev: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Previous window estimate or U (B, 3N, H, W) -> (K_0, V_0, K_1, V_1, ...)."""
        if self.encoder is None:
            return ()
        z = self.encoder(prev)
        out: list[torch.Tensor] = []
        for cross in self.unet.cross_attentions():
            out.extend(cross.project_context(z))
        return tuple(out)

    def denoise(self, x_t, t, cond, context: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.unet(x_t, t, cond, context)

    def forward(self, x_t, t, cond, prev) -> torch.Tensor:
        return self.unet(x_t, t, cond, self.context(prev))


def count_parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())
