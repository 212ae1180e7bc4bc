"""The torch backend and the reference pipeline: the runtime's pipeline driven by the torch model.

`TorchBackend` fits the runtime's backend protocol (`lgcvd_runtime.backends.base.Backend`:
`encode`, `denoise`, `calls`, `close`), so the window logic, the conditioning and the sampler
arithmetic are the runtime's own numpy code (`lgcvd_runtime.pipeline`, `lgcvd_runtime.samplers`)
and only the network differs. `reference_pipeline` builds that pipeline; the runtime's backends
are checked against it.
"""

from __future__ import annotations

import numpy as np
import torch

from lgcvd_runtime.pipeline import Pipeline, SamplerSettings
from lgcvd_runtime.plans import choose
from lgcvd_runtime.schedule import ScheduleSpec

from .model import LGCVD


class TorchBackend:
    """Runs `LGCVD.context` / `LGCVD.denoise` on numpy inputs; counts calls."""

    name = "torch"

    def __init__(self, model: LGCVD, device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.calls = {"encode": 0, "denoise": 0}

    def _t(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    @torch.no_grad()
    def encode(self, prev: np.ndarray) -> tuple[np.ndarray, ...]:
        self.calls["encode"] += 1
        return tuple(c.float().cpu().numpy() for c in self.model.context(self._t(prev)))

    @torch.no_grad()
    def denoise(self, x_t, t, cond, context) -> np.ndarray:
        self.calls["denoise"] += 1
        ctx = tuple(self._t(c) for c in context)
        out = self.model.denoise(self._t(x_t), self._t(t), self._t(cond), ctx)
        return out.float().cpu().numpy()

    def close(self) -> None:
        """Nothing to free: the model belongs to the caller."""


def reference_pipeline(
    model: LGCVD,
    sampler: str | None = None,
    steps: int | None = None,
    schedule: ScheduleSpec | None = None,
    device: str = "cpu",
    spacing: str | None = None,
) -> Pipeline:
    """A `Pipeline` on the torch model with the same settings the runtime takes (None: the
    default plan's, by the runtime's rule, `plans.choose`)."""
    plan = choose(sampler, steps, None, spacing).plan
    settings = SamplerSettings(plan=plan.over(schedule or ScheduleSpec()), sampler=plan.sampler)
    return Pipeline(TorchBackend(model, device), model.cfg, settings)
