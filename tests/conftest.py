"""Shared fixtures: tiny random-weight models and checkpoints, small enough for a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

from lgcvd_train.config import TrainConfig, preset
from lgcvd_train.model import LGCVD

torch.set_num_threads(2)


def random_model(seed: int = 0, **overrides) -> LGCVD:
    """A `tiny` model whose every weight is random, so no block starts as the identity
    (the zero-initialised output layers would otherwise hide most of the network from a test)."""
    from dataclasses import replace

    torch.manual_seed(seed)
    model = LGCVD(replace(preset("tiny"), **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.ndim > 1 else 0.05)
    return model.eval()


@pytest.fixture
def tiny_model() -> LGCVD:
    return random_model()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_model):
    """A checkpoint file of a random-weight tiny model (EMA = model weights)."""
    from lgcvd_train.checkpoint import save_checkpoint

    opt = torch.optim.Adam(tiny_model.parameters(), lr=1e-4)
    return save_checkpoint(
        tmp_path / "run", tiny_model, tiny_model, opt, 0, TrainConfig(), {"data": "test"}
    )
