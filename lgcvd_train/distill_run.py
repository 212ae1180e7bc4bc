"""The rounds of progressive distillation (Salimans & Ho 2022): each round trains a student of
half the teacher's steps, starting from the teacher's weights, and becomes the next teacher.

OUT/steps-S/ holds the student of S steps as an ordinary lgcvd checkpoint (weights, EMA,
optimizer, step; `checkpoint`), its metrics log and, in its JSON state, "plan" (sampler ddim,
S steps, the timesteps of the trailing grid, the original teacher's provenance: what export puts
in the bundle manifest) and "distill" (the round, its loss and quality figure). OUT/distill.json
records the whole run, which `resume` follows. A round is done when its checkpoint reaches
the round's steps; a resumed run skips finished rounds and continues a cut one from its last
checkpoint. Batches, tasks, timesteps and noise come from per-step seeds, so a stopped and resumed
run gives the uninterrupted run's weights. Ctrl-C, SIGTERM or SIGHUP saves before stopping.

Knows checkpoints, the teacher's sources and the distillation step; nothing about command lines.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lgcvd_runtime.bundle import Manifest, sha256_file
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import write_then_rename
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.samplers import sample
from lgcvd_runtime.schedule import plan_at
from lgcvd_runtime.signals import sigterm_as_interrupt

from .checkpoint import FILENAME, load_checkpoint, load_model, resolve, restore_optimizer
from .checkpoint import save_checkpoint as write_checkpoint
from .config import PRESETS, TrainConfig
from .distill import DistillStep, trailing_grid
from .init_weights import load_source
from .model import LGCVD
from .trainer import _truncate_log as truncate_log
from .trainer import optimizer_update, saved_on_stop
from .two_stage import TwoStageStep, sample_clips

RUN_FILE = "distill.json"
METRICS = "metrics.jsonl"
QUALITY_SEED = 1 << 30  # the held-out batch of the quality figure: a step no round reaches


class DistillError(LgcvdError):
    """A distillation run that cannot start or continue as asked."""


@dataclass(frozen=True)
class DistillConfig:
    """What a distillation run does; recorded in OUT/distill.json."""

    source: str  # the teacher: a run directory, checkpoint or bundle
    data: str  # as lgcvd-train --data takes
    rounds: tuple[int, ...]  # the teacher's steps, then each student's: (16, 8, 4, 2, 1)
    round_steps: int  # optimizer steps per round
    batch_size: int = 8
    lr: float = 1e-4  # decayed linearly to 0 within each round (Salimans & Ho 2022)
    ema_decay: float = 0.999
    weighting: str = "snr+1"
    seed: int = 0
    save_every: int = 50
    log_every: int = 10
    quality_clips: int = 8  # held-out windows of the per-round quality figure (0: none)
    num_videos: int = 640  # of a generator (shapes, mnist, pushsim)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DistillConfig:
        return cls(**{**d, "rounds": tuple(d["rounds"])})


def check_rounds(rounds: tuple[int, ...]) -> None:
    """Each round halves the steps, down to 1 at least (16:8:4:2:1)."""
    if len(rounds) < 2 or any(b * 2 != a for a, b in zip(rounds, rounds[1:], strict=False)):
        raise DistillError(
            f"rounds {':'.join(map(str, rounds))} do not halve the steps each time; "
            "write e.g. 16:8:4:2:1"
        )


def config_name(model: LGCVD) -> str:
    """The preset the architecture is (residual aside), or "custom"."""
    mine = {**model.cfg.to_dict(), "residual": False}
    for name, cfg in PRESETS.items():
        if {**cfg.to_dict(), "residual": False} == mine:
            return name
    return "custom"


def load_teacher(source: str, teacher_steps: int) -> tuple[LGCVD, dict, TrainConfig, Framing]:
    """The original teacher (EMA weights), its plan provenance, training config and framing; its
    bundle's manifest or its checkpoint is read (and verified) once, by `load_source`."""
    model, facts, origin = load_source(Path(source), PRESETS["base"])
    if model.cfg.parameterization != "v":
        raise DistillError(
            f"{source}: predicts {model.cfg.parameterization}; distillation writes its targets "
            "in v, distil a v-prediction model"
        )
    if isinstance(origin, Manifest):
        trained = origin.provenance.get("training_config") or {}
        tcfg = TrainConfig.from_dict({**trained, "schedule": origin.schedule.to_dict()})
        framing, ident = origin.framing, {"sha256": facts["sha256"]}
    else:
        tcfg, framing = origin.train_config, origin.framing
        ident = {"sha256": sha256_file(resolve(Path(source))), "step": facts["step"]}
    teacher = {"path": source, **ident, "config": config_name(model), "steps": teacher_steps}
    return model, teacher, tcfg, framing


class Distiller:
    """Runs the rounds of `cfg` into `out` on `videos` ((T, H, W, 3) uint8 each)."""

    def __init__(
        self,
        cfg: DistillConfig,
        teacher: tuple,
        videos: list[np.ndarray],
        out: Path,
        provenance: dict,
        progress: bool = False,
    ):
        check_rounds(cfg.rounds)
        self.cfg, self.teacher, self.videos = cfg, teacher, videos
        self.out, self.provenance, self.progress = Path(out), provenance, progress
        self.device = torch.device("cpu")
        self.round_steps = cfg.rounds[0]  # the student steps of the round running now
        self.step = 0
        self.stopped_in: Path | None = None

    def write_run_file(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with write_then_rename(self.out / RUN_FILE) as tmp:
            tmp.write_text(json.dumps(self.cfg.to_dict(), indent=2) + "\n")

    def run(self, on_round=None) -> list[dict]:
        """All rounds (finished ones skipped); returns each round's report."""
        self.write_run_file()
        teacher, origin, tcfg, framing = self.teacher
        reports = []
        with sigterm_as_interrupt():
            for steps in self.cfg.rounds[1:]:
                report = self.run_round(teacher, steps, origin, tcfg, framing)
                reports.append(report)
                if on_round is not None:
                    on_round(report)
                teacher, _ = load_model(self.out / f"steps-{steps:02d}")
        return reports

    def round_config(self, tcfg: TrainConfig, steps: int) -> TrainConfig:
        seed = int(np.random.SeedSequence([self.cfg.seed, steps]).generate_state(1)[0])
        return replace(
            tcfg,
            steps=self.cfg.round_steps,
            batch_size=self.cfg.batch_size,
            lr=self.cfg.lr,
            cooldown=self.cfg.round_steps,
            ema_decay=self.cfg.ema_decay,
            loss="l2",
            loss_weighting="none",
            seed=seed,
            save_every=self.cfg.save_every,
            log_every=self.cfg.log_every,
            amp=False,
            adam="default",
        )

    def run_round(self, teacher, steps, origin, tcfg, framing) -> dict:
        rcfg = self.round_config(tcfg, steps)
        folder = self.out / f"steps-{steps:02d}"
        self.round_steps, self.stopped_in = steps, folder
        student, ckpt = copy.deepcopy(teacher).train(), None
        ema = copy.deepcopy(teacher).requires_grad_(False)
        opt = torch.optim.Adam(student.parameters(), lr=rcfg.lr)
        if (folder / FILENAME).exists():
            ckpt = load_checkpoint(folder)
            # a round stopped past a shortened --round-steps is done but gets its report now
            if ckpt.step >= rcfg.steps and "loss_last_fifth" in ckpt.state["distill"]:
                return ckpt.state["distill"]
            student.load_state_dict(ckpt.weights("model."))
            ema.load_state_dict(ckpt.weights("ema."))
            restore_optimizer(opt, ckpt)
        self.step = ckpt.step if ckpt is not None else 0
        teacher = teacher.eval().requires_grad_(False)
        round_ = Round(self, rcfg, steps, folder, (student, ema, opt, teacher))
        round_.cpu_before = ckpt.state["distill"].get("cpu_s", 0.0) if ckpt is not None else 0.0
        round_.plan = {
            "sampler": "ddim",
            "steps": steps,
            "timesteps": [int(t) for t in trailing_grid(rcfg.schedule.T, steps)],
            "teacher": origin,
        }
        round_.framing = framing
        return round_.train()


class Round:
    """One round's training loop: student, its EMA and optimizer against a frozen teacher."""

    def __init__(self, owner: Distiller, rcfg: TrainConfig, steps: int, folder: Path, nets):
        self.owner, self.rcfg, self.steps, self.folder = owner, rcfg, steps, folder
        self.student, self.ema, self.opt, self.teacher = nets
        self.dstep = DistillStep(self.student.cfg, rcfg, steps, owner.cfg.weighting, owner.device)
        self.plan: dict = {}
        self.framing = Framing()
        self.cpu_before = 0.0  # CPU seconds the round took in earlier (stopped) processes
        self.cpu0 = time.process_time()

    def cpu_s(self) -> float:
        """CPU seconds of the round so far, all its processes together."""
        return round(self.cpu_before + time.process_time() - self.cpu0, 1)

    def state(self, report: dict | None) -> dict:
        distill = {
            "round": f"{2 * self.steps} -> {self.steps}",
            "teacher_steps": 2 * self.steps,
            "steps": self.steps,
            "rounds": list(self.owner.cfg.rounds),
            "weighting": self.owner.cfg.weighting,
            "cpu_s": self.cpu_s(),
            **(report or {}),
        }
        return {
            "plan": self.plan,
            "distill": distill,
            "provenance": {**self.owner.provenance, "init_from": self.plan["teacher"]},
            "framing": self.framing.to_dict(),
        }

    def save(self, report: dict | None = None) -> None:
        if not all(bool(torch.isfinite(p).all()) for p in self.student.parameters()):
            raise DistillError(
                f"the student's weights hold NaN or Inf at step {self.owner.step} of round "
                f"{2 * self.steps} -> {self.steps}; distil again (--force) with a lower --lr"
            )
        write_checkpoint(
            self.folder, self.student, self.ema, self.opt, self.owner.step, self.rcfg,
            self.state(report),
        )  # fmt: skip

    def update(self) -> dict:
        step = self.owner.step
        clips = sample_clips(self.owner.videos, step, 0, 1, self.rcfg)
        batch = self.dstep.two.prepare(clips, step, 0)
        self.opt.zero_grad(set_to_none=True)
        rec = self.dstep.run(self.student, self.teacher, batch, step)
        lr = optimizer_update(self.opt, self.student, self.ema, self.rcfg, self.owner)
        return {"round": self.steps, "step": self.owner.step, **rec, "lr": lr}

    def train(self) -> dict:
        self.folder.mkdir(parents=True, exist_ok=True)
        log_path = self.folder / METRICS
        if self.owner.step == 0:
            log_path.unlink(missing_ok=True)
        else:  # lines past the checkpoint are written again
            truncate_log(log_path, self.owner.step)
        self.cpu0 = time.process_time()
        bar = tqdm(
            total=self.rcfg.steps,
            initial=self.owner.step,
            disable=not self.owner.progress,
            desc=f"{2 * self.steps}->{self.steps}",
            unit="it",
            dynamic_ncols=True,
        )
        try:
            with saved_on_stop(self.save), open(log_path, "a") as log:
                while self.owner.step < self.rcfg.steps:
                    rec = self.update()
                    bar.update(1)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                    if not math.isfinite(rec["loss"]):
                        raise DistillError(
                            f"the loss is {rec['loss']} at step {rec['step']}: distillation "
                            "diverged; distil again (--force) with a lower --lr"
                        )
                    if rec["step"] % self.rcfg.log_every == 0 or rec["step"] == self.rcfg.steps:
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                    if rec["step"] % self.rcfg.save_every == 0 and rec["step"] < self.rcfg.steps:
                        self.save()
        finally:
            bar.close()
        report = self.report(log_path)
        self.save(report)
        return self.state(report)["distill"]

    def report(self, log_path: Path) -> dict:
        """The round's loss (first and last fifth of its logged steps) and quality figure."""
        losses = [json.loads(line)["loss"] for line in log_path.read_text().splitlines()]
        fifth = max(1, len(losses) // 5)
        report = {
            "loss_first_fifth": round(float(np.mean(losses[:fifth])), 5),
            "loss_last_fifth": round(float(np.mean(losses[-fifth:])), 5),
        }
        if self.owner.cfg.quality_clips:
            report.update(self.quality())
        return report

    @torch.no_grad()
    def quality(self) -> dict:
        """RMSE (frame units, [-1, 1]) on fixed windows of stage 1 (drawn with a seed no step
        uses), from the same noise, of the student's S-step DDIM sample and of the teacher's own
        S-step DDIM sample, each against the teacher's 2S-step sample: what distillation is for
        is the first being the smaller."""
        n = self.owner.cfg.quality_clips
        rcfg = replace(self.rcfg, batch_size=n)
        two = TwoStageStep(self.student.cfg, rcfg, self.owner.device)
        clips = sample_clips(self.owner.videos, QUALITY_SEED, 0, 1, rcfg)
        batch = two.prepare(clips, QUALITY_SEED, 0)
        x_T = batch.draws[0][1]
        spec = rcfg.schedule

        def ddim(model, steps):
            plan = plan_at(spec, trailing_grid(spec.T, steps))
            t_of = lambda t: torch.full((n,), t, dtype=torch.long)  # noqa: E731

            def denoise(x, t):
                return model(x, t_of(t), batch.cond1, batch.prev1).float()

            clip = (-1.0 - batch.base1, 1.0 - batch.base1)
            return sample(denoise, x_T, plan, "ddim", lambda: None, "v", clip) + batch.base1

        self.ema.eval()
        ref = ddim(self.teacher, 2 * self.steps)

        def rmse(x):
            return round(float(torch.sqrt(((x - ref) ** 2).mean())), 5)

        return {
            "rmse_student": rmse(ddim(self.ema, self.steps)),
            "rmse_teacher_same_steps": rmse(ddim(self.teacher, self.steps)),
            "quality_clips": n,
        }
