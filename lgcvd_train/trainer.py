"""The training loop: Adam, EMA, checkpoints, exact resume, metrics log, DDP (paper §4.2).

Single process or `torchrun` (DistributedDataParallel; NCCL on GPUs, gloo on CPUs). Rank 0 writes
checkpoints (every `save_every` steps, at the end, and on Ctrl-C or SIGTERM) and the metrics log
(`metrics.jsonl`, one JSON object per logged step). `--resume` restores weights, EMA, optimizer
and step; because batches, tasks and noise are drawn from per-step seeds (`two_stage`), the
resumed loss curve is the uninterrupted one. `--init-from` starts a new run (step 0, fresh
optimizer) from another model's weights (`init_weights`), to fine-tune it. The speed options
(Adam implementation, channels-last, torch.compile, the batch prefetch thread) live in `speed`.

Stops and crashes: a stop signal never lands inside an optimizer update or inside the checkpoint
saved on a stop (`signals_deferred`). A resumed run survives a kill at any moment: it deletes the
temporary files a killed save left, drops a torn last line of the log and writes `checkpoint.json`
again where a kill left it missing. A loss or weights that become NaN or Inf stop the run; such
weights are never saved.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import write_then_rename
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.media.resize import CROP
from lgcvd_runtime.signals import signals_deferred, sigterm_as_interrupt

from .checkpoint import (
    FILENAME,
    READABLE,
    load_checkpoint,
    remove_temporaries,
    restore_optimizer,
    save_checkpoint,
    sync_readable,
)
from .config import ModelConfig, TrainConfig
from .init_weights import init_model
from .model import LGCVD
from .speed import BatchSource, make_adam, maybe_compile, prepare_model
from .two_stage import TwoStageStep, sample_clips

METRICS = "metrics.jsonl"


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


class DeviceError(LgcvdError):
    """--device names no device, or one this machine does not have."""


def check_device(device: str | None) -> None:
    """Raise a one-line DeviceError unless `device` (None: the default) is usable here."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise DeviceError(
            f"--device {device}: not a device name; use cpu, cuda or cuda:N"
        ) from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise DeviceError(f"--device {device}: no CUDA GPU is usable here; use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise DeviceError(
                f"--device {device}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}"
            )


def init_distributed(device: str | None) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    check_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device != "cpu"
    if world == 1:
        return Dist(device=torch.device(device or ("cuda" if cuda else "cpu")))
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, local = dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    return Dist(rank, world, torch.device(f"cuda:{local}" if cuda else "cpu"))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)


class Stepped(Protocol):
    step: int  # optimizer steps taken


def optimizer_update(
    opt: torch.optim.Optimizer,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    tcfg: TrainConfig,
    owner: Stepped,
) -> float:
    """Take optimizer step `owner.step` at its learning rate, which it returns; the weights, the
    EMA and `owner.step` change together or not at all (a stop signal waits for the three)."""
    lr = tcfg.lr_at(owner.step)
    for group in opt.param_groups:
        group["lr"] = lr
    with signals_deferred():
        opt.step()
        owner.step += 1
        decay = min(tcfg.ema_decay, (1 + owner.step) / (10 + owner.step))
        update_ema(ema, model, decay)
    return lr


@contextmanager
def saved_on_stop(save: Callable[[], object]) -> Iterator[None]:
    """Ctrl-C or SIGTERM (`sigterm_as_interrupt`) inside the block calls `save`, then stops."""
    try:
        yield
    except KeyboardInterrupt:
        with signals_deferred():  # a second signal does not cut this save short
            save()
        raise


class DivergedError(LgcvdError):
    """The loss or the weights became NaN or infinite: nothing past the last good step is kept."""


class LogError(LgcvdError):
    """The metrics log of a run to resume is damaged beyond a torn last line."""


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log lines past the checkpoint's step (they will be written again) and a
    last line torn by a kill; rewritten atomically."""
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = []
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError("not a record with an integer 'step'")
        except ValueError:
            if i < len(lines) - 1:
                raise LogError(
                    f"{path}: line {i + 1} is not a metrics record; delete that line (or the "
                    "file) and resume again"
                ) from None
            print(
                f"note: {path}: dropped its torn last line (a kill while writing it)",
                file=sys.stderr,
            )
            break
        if rec["step"] <= step:
            keep.append(line)
    with write_then_rename(path) as tmp:
        tmp.write_text("".join(ln + "\n" for ln in keep))


class Trainer:
    def __init__(
        self,
        mcfg: ModelConfig,
        tcfg: TrainConfig,
        videos: list[np.ndarray],
        run_dir: Path,
        provenance: dict,
        resume: bool = False,
        device: str | None = None,
        progress: bool = True,
        init_from: Path | None = None,
        framing: Framing = CROP,
    ):
        self.d = init_distributed(device)
        self.tcfg, self.videos, self.run_dir = tcfg, videos, Path(run_dir)
        self.provenance, self.progress = provenance, progress and self.d.main
        self.framing = framing  # how the videos' frames were fitted, recorded for export
        self.step = 0
        self.saved_step: int | None = None  # step of the last checkpoint written or resumed
        if self.d.main and (
            gone := remove_temporaries(self.run_dir, (FILENAME, READABLE, METRICS))
        ):
            print(
                f"note: removed {len(gone)} temporary file(s) that a killed save left in "
                f"{self.run_dir}",
                file=sys.stderr,
            )
        if resume:  # the run keeps its config (but length and speed) and its first command
            ckpt = load_checkpoint(self.run_dir / FILENAME)
            mcfg, self.tcfg = ckpt.model_config, ckpt.train_config.continued_by(tcfg)
            earlier = ckpt.state.get("provenance", {})
            resumed = [*earlier.get("resumed_at", []), ckpt.step]  # each continuation's step
            self.provenance = {**provenance, **earlier, "resumed_at": resumed}
            if "command" in provenance:  # the latest continuation's, with its --steps, --cooldown
                self.provenance["resume_command"] = provenance["command"]
        torch.manual_seed(self.tcfg.seed)  # same initial weights on every rank
        if init_from is not None and not resume:  # a resumed run has its weights already
            model, source = init_model(init_from, mcfg, residual=mcfg.residual)
            mcfg = model.cfg
            self.provenance = {**self.provenance, "init_from": source}
        else:
            model = LGCVD(mcfg)
        self.model = prepare_model(model.to(self.d.device), self.tcfg.channels_last)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.opt = make_adam(self.model.parameters(), self.tcfg.lr, self.tcfg.adam, self.d.device)
        if resume:
            self.model.load_state_dict(ckpt.weights("model."))
            self.ema.load_state_dict(ckpt.weights("ema."))
            restore_optimizer(self.opt, ckpt)
            self.step = self.saved_step = ckpt.step
            if self.d.main:
                _truncate_log(self.run_dir / METRICS, self.step)
                sync_readable(self.run_dir, ckpt)
        elif self.d.main:  # a new run (--force): an earlier run's log is not this one's
            (self.run_dir / METRICS).unlink(missing_ok=True)
        self.ddp = (
            DistributedDataParallel(
                self.model,
                device_ids=[self.d.device.index] if self.d.device.type == "cuda" else None,
            )
            if self.d.world > 1
            else None
        )
        self.net = maybe_compile(self.ddp or self.model, self.tcfg.compile)  # runs the steps
        self.step_fn = TwoStageStep(mcfg, self.tcfg, self.d.device)
        self.batches = BatchSource(self._batch, self.tcfg.prefetch, self.tcfg.steps)

    def diverged(self, what: str) -> DivergedError:
        kept = (
            f"the checkpoint in {self.run_dir} holds step {self.saved_step}"
            if self.saved_step is not None
            else "no checkpoint was written"
        )
        return DivergedError(
            f"{what} at step {self.step}: training diverged; {kept}; train again (--force) with "
            "a lower --lr or a --grad-clip"
        )

    def save(self) -> Path | None:
        """Write the checkpoint (rank 0); weights that are not finite are refused, not saved."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise self.diverged("the weights hold NaN or Inf")
        if not self.d.main:
            return None
        path = save_checkpoint(
            self.run_dir,
            self.model,
            self.ema,
            self.opt,
            self.step,
            self.tcfg,
            {"provenance": self.provenance, "framing": self.framing.to_dict()},
        )
        self.saved_step = self.step
        return path

    def _batch(self, step: int):
        clips = sample_clips(self.videos, step, self.d.rank, self.d.world, self.tcfg)
        return self.step_fn.prepare(clips, step, self.d.rank)

    def train_step(self) -> dict:
        batch = self.batches.batch(self.step)
        self.opt.zero_grad(set_to_none=True)
        no_sync = self.ddp.no_sync if self.ddp is not None else None
        out = self.step_fn.run(self.net, batch, no_sync)
        if self.tcfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tcfg.grad_clip)
        lr = optimizer_update(self.opt, self.model, self.ema, self.tcfg, self)
        return {
            "step": self.step,
            "loss": out.loss,
            "loss1": out.loss1,
            "loss2": out.loss2,
            "lr": lr,
        }

    def fit(self) -> list[dict]:
        """Train up to `tcfg.steps`; returns the logged records of this call. Ctrl-C or SIGTERM
        (as a cluster scheduler sends) saves a checkpoint before stopping."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with sigterm_as_interrupt():
            return self._fit()

    def _fit(self) -> list[dict]:
        log = open(self.run_dir / METRICS, "a") if self.d.main else None
        bar = tqdm(
            total=self.tcfg.steps,
            initial=self.step,
            disable=not self.progress,
            unit="it",
            dynamic_ncols=True,
        )
        records, t0 = [], time.perf_counter()
        try:
            with saved_on_stop(self.save):
                while self.step < self.tcfg.steps:
                    rec = self.train_step()
                    if not math.isfinite(rec["loss"]):
                        raise self.diverged(f"the loss is {rec['loss']}")
                    records.append(rec)
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                    if log and (
                        self.step % self.tcfg.log_every == 0 or self.step == self.tcfg.steps
                    ):
                        rec["clips_per_s"] = (
                            self.tcfg.batch_size
                            * self.d.world
                            * len(records)
                            / (time.perf_counter() - t0)
                        )
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                    if self.step % self.tcfg.save_every == 0:
                        self.save()
                self.save()
        finally:
            self.batches.close()
            bar.close()
            if log:
                log.close()
        return records
