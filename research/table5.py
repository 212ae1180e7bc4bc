"""The paper's Table 5 ablation on pushsim (docs/results.md): four variants (baseline without
two-stage training or sequence encoder, + two-stage, + sequence encoder, full) trained with
equal steps and several seeds, each run evaluated on held-out clips, then one table of the mean
over seeds and their spread.

    python research/table5.py --data data/pushsim_train.npy --test-data data/pushsim_test256.npy \\
        --out runs/table5 --dry-run          # the plan: every command line, nothing run
    nohup python research/table5.py --data data/pushsim_train.npy \\
        --test-data data/pushsim_test256.npy --out runs/table5 &

Each run is `lgcvd-train` into OUT/train/VARIANT-seedS, then `lgcvd-eval` into
OUT/eval/VARIANT-seedS (2 given frames, 28 predicted, frames 3-28, one sample, DPM-Solver++ 10
steps, seed 0, FVD on); both are the console scripts beside this Python, each run's output goes
to OUT/logs/. Resumable: a run whose checkpoint is at --steps is not trained again, a shorter
one continues with --resume, and an evaluation is redone only when its report is missing, older
than the checkpoint or made with other clips. Ctrl-C or SIGTERM is passed on once to the running
commands (lgcvd-train saves its checkpoint) and the tool exits 130 / 143; on Linux they also get
SIGTERM if the tool is killed outright. The same command continues. OUT/table5.md is rewritten from the reports at the end.

Knows the lgcvd-train and lgcvd-eval command lines and report.json; nothing about models.
"""

from __future__ import annotations

import ctypes
import json
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click

from ablation import FRAMES, VARIANTS, N, P, Variant, table_text  # research/ablation.py
from lgcvd_runtime.cli.chassis import Command
from lgcvd_runtime.cli.options import choice_option, count_option, positive_option
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import write_then_rename
from lgcvd_runtime.plans import FAST_PLAN
from lgcvd_runtime.signals import Terminated, signals_deferred, stop_word
from lgcvd_train.checkpoint import FILENAME, load_checkpoint
from lgcvd_train.config import ADAMS, PRESETS, preset
from lgcvd_train.continuation import describe
from lgcvd_train.eval_protocol import load_clips
from lgcvd_train.eval_report import REPORT
from lgcvd_train.train_options import TRAIN, finite, parse_task_weights

BIN = Path(sys.executable).parent  # lgcvd-train and lgcvd-eval of this environment


# The recipe of the shipped default model's base run (docs/results.md, "The shipped default
# model", step 1), where it differs from lgcvd-train's defaults.
BASE_RUN_LR = 3e-4
BASE_RUN_TASKS = "prediction=0.6,unconditional=0.2,interpolation=0.1,random=0.1"
# docs/results.md's evaluation protocol, as lgcvd-eval's options, the same for every run.
EVAL = ("-p", P, "-n", N, "--frame-range", FRAMES.first, FRAMES.last, "--samples", 1)
EVAL += ("--sampler", FAST_PLAN.sampler, "--steps", FAST_PLAN.steps, "--seed", 0)
TABLE = "table5.md"
PR_SET_PDEATHSIG = 1  # prctl option, linux/prctl.h


class Table5Error(LgcvdError):
    """A run folder that belongs to another plan or has trained beyond it."""


@dataclass(frozen=True)
class Plan:
    preset: str
    steps: int
    batch_size: int
    lr: float
    task_weights: str
    cooldown: int
    save_every: int
    adam: str
    data: str
    test_data: str
    clips: int
    fvd: bool
    device: str | None
    out: Path


@dataclass(frozen=True)
class Run:
    variant: Variant
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant.name}-seed{self.seed}"

    def train_dir(self, plan: Plan) -> Path:
        return plan.out / "train" / self.name

    def report(self, plan: Plan) -> Path:
        return plan.out / "eval" / self.name / REPORT

    def log(self, plan: Plan, what: str) -> Path:
        return plan.out / "logs" / f"{self.name}.{what}.log"


def train_command(plan: Plan, run: Run, resume: bool) -> list[str]:
    device = ["--device", plan.device] if plan.device else []
    return [
        *(str(BIN / "lgcvd-train"), "--preset", plan.preset, "--data", plan.data),
        *("--out", str(run.train_dir(plan)), "--steps", str(plan.steps)),
        *("--batch-size", str(plan.batch_size), "--lr", str(plan.lr)),
        *("--task-weights", plan.task_weights, "--cooldown-steps", str(plan.cooldown)),
        *("--save-every", str(plan.save_every), "--seed", str(run.seed), "--adam", plan.adam),
        *device,
        *run.variant.flags,
        *(["--resume"] if resume else []),
        "--quiet",
    ]


def eval_command(plan: Plan, run: Run) -> list[str]:
    device = ["--device", plan.device] if plan.device else []
    return [
        *(str(BIN / "lgcvd-eval"), "--model", f"{run.variant.name}={run.train_dir(plan)}"),
        *("--data", plan.test_data, "--clips", str(plan.clips), *map(str, EVAL)),
        *([] if plan.fvd else ["--no-fvd"]),
        *device,
        *("--out", str(run.report(plan).parent), "--force", "--quiet"),
    ]


def trained_steps(plan: Plan, run: Run) -> int:
    """The step of the run's checkpoint (0: none yet); a checkpoint of other settings or beyond
    --steps is a one-line Table5Error."""
    folder = run.train_dir(plan)
    if not (folder / FILENAME).exists():
        return 0
    ckpt = load_checkpoint(folder)
    tcfg, flags = ckpt.train_config, run.variant.flags
    model = replace(preset(plan.preset), context="--no-context" not in flags)
    if ckpt.model_config != model:
        raise Table5Error(
            f"{folder} holds {describe(ckpt.model_config)}, this plan trains {describe(model)}; "
            f"pass another --out or delete {folder}"
        )
    wanted = {
        "two-stage": (tcfg.two_stage, "--no-two-stage" not in flags),
        "seed": (tcfg.seed, run.seed),
        "batch size": (tcfg.batch_size, plan.batch_size),
        "lr": (tcfg.lr, plan.lr),
        "task weights": (tcfg.task_weights, parse_task_weights(plan.task_weights)),
    }
    for what, (have, want) in wanted.items():
        if have != want:
            raise Table5Error(
                f"{folder} was trained with another {what} ({have}; this plan: {want}); pass "
                f"another --out or delete {folder}"
            )
    if ckpt.step > plan.steps:
        raise Table5Error(
            f"{folder} is at step {ckpt.step}, beyond --steps {plan.steps}; pass --steps "
            f"{ckpt.step} or another --out"
        )
    return ckpt.step


def report_is_current(plan: Plan, run: Run) -> bool:
    """A report.json newer than the run's checkpoint, of these clips and with FVD as asked."""
    path, weights = run.report(plan), run.train_dir(plan) / FILENAME
    if not path.exists() or (weights.exists() and path.stat().st_mtime < weights.stat().st_mtime):
        return False
    report = json.loads(path.read_text())
    made = (report["data"]["source"], report["data"]["clips"], report["metrics"]["fvd"] is not None)
    return made == (plan.test_data, plan.clips, plan.fvd)


def jobs(plan: Plan, runs: list[Run]) -> list[tuple[Run, list[tuple[str, str, list[str]]]]]:
    """Per run, what is left to do: [(what, why, command line)], train then evaluate."""
    todo = []
    for run in runs:
        left, done = [], trained_steps(plan, run)
        if done < plan.steps:
            why = f"resume from step {done}" if done else "start"
            left.append(("train", why, train_command(plan, run, resume=done > 0)))
        if left or not report_is_current(plan, run):
            left.append(("eval", "evaluate", eval_command(plan, run)))
        todo.append((run, left))
    return todo


def stop_with_parent() -> None:
    """In a command, before it starts (Linux): SIGTERM (so lgcvd-train saves) when this tool
    dies, even of SIGKILL, so that no run trains on unwatched and is started a second time."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_all(plan: Plan, todo, parallel: int) -> list[str]:
    """Run each run's commands in order, up to `parallel` runs at once; their output goes to
    OUT/logs. Returns one line per failed command. A stop (Ctrl-C, SIGTERM) is passed on once
    to every running command, whose end is awaited, and re-raised."""
    waiting = [(run, list(steps)) for run, steps in todo if steps]
    running: dict[str, tuple[subprocess.Popen, Run, list, str]] = {}
    failures: list[str] = []

    def start(run: Run, steps: list) -> None:
        what, why, command = steps.pop(0)
        log = run.log(plan, what)
        log.parent.mkdir(parents=True, exist_ok=True)
        # appended: a resumed run keeps the earlier sessions' lines; a session of its own, so that
        # a stop reaches it once, passed on from here; started and recorded before a stop lands
        with open(log, "a") as sink, signals_deferred():
            sink.write(f"$ {shlex.join(command)}\n")
            sink.flush()
            proc = subprocess.Popen(
                command,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=stop_with_parent if sys.platform == "linux" else None,
            )
            running[run.name] = (proc, run, steps, what)
        click.echo(f"table5: {what} {run.name}: {why} (log {log})", err=True)

    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                start(*waiting.pop(0))
            for name, (proc, run, steps, what) in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                if proc.returncode != 0:
                    last = run.log(plan, what).read_text().strip().splitlines()[-1:] or [""]
                    failures.append(f"{what} {name} exited {proc.returncode}: {last[0]}")
                    click.echo(f"table5: {failures[-1]}", err=True)
                elif steps:
                    start(run, steps)
                else:
                    click.echo(f"table5: {name} done", err=True)
            time.sleep(0.2)
    except KeyboardInterrupt as stop:
        sig = stop.signum if isinstance(stop, Terminated) else signal.SIGINT
        click.echo(f"table5: {stop_word(stop)}; stopping {len(running)} command(s)", err=True)
        for proc, *_ in running.values():
            proc.send_signal(sig)
        for proc, *_ in running.values():
            while proc.poll() is None:
                try:
                    proc.wait()
                except KeyboardInterrupt:  # further stops: the commands are saving already
                    click.echo("table5: waiting for the commands to save", err=True)
        raise
    return failures


def seed_list(ctx, param, text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter("use comma-separated integers, e.g. 0,1") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise click.BadParameter("give distinct seeds >= 0, e.g. 0,1")
    return seeds


def variant_list(ctx, param, text: str) -> list[Variant]:
    by_name = {v.name: v for v in VARIANTS}
    names = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := [n for n in names if n not in by_name]:
        raise click.BadParameter(
            f"unknown variant {unknown[0]!r}; choose from {', '.join(by_name)}"
        )
    return [v for v in VARIANTS if v.name in names]  # in the table's order


def task_weights(ctx, param, text: str) -> str:
    parse_task_weights(text)  # refused here, not hours later by lgcvd-train
    return text


@click.command(
    cls=Command,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    stopped="table5: {word}; the checkpoints are saved: run the same command to continue",
)
@click.option("--data", required=True, help="Training clips for lgcvd-train --data.")
@click.option("--test-data", required=True, help="Held-out clips for lgcvd-eval --data.")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the runs, evaluations, logs and table5.md (the same one to continue).",
)
@choice_option("--preset", choices=PRESETS, default="base", help="Model.")
@count_option("--steps", default=4000, help="Steps per run.")
@count_option("--batch-size", default=TRAIN.batch_size, help="Clips per step.")
@positive_option(
    "--lr",
    callback=finite,
    default=BASE_RUN_LR,
    help="Learning rate (the default model's base run).",
)
@click.option(
    "--task-weights",
    default=BASE_RUN_TASKS,
    callback=task_weights,
    help="Task mixture (the default model's base run).",
)
@count_option(
    "--cooldown-steps",
    "cooldown",
    least=0,
    default=TRAIN.cooldown,
    help="Linear learning-rate decay over the last this many steps.",
)
@count_option("--save-every", default=TRAIN.save_every, help="Checkpoint every this many steps.")
@choice_option(
    "--adam",
    choices=ADAMS,
    default="fused",
    help="Adam implementation (speed only; fused was fastest on this project's CPU).",
)
@click.option("--seeds", default="0,1", callback=seed_list, help="Training seeds.")
@click.option(
    "--variants",
    default=",".join(v.name for v in VARIANTS),
    callback=variant_list,
    help="Variants to run (a subset, e.g. to share the runs between machines).",
)
@count_option("--clips", least=2, default=256, help="Test clips per run.")
@click.option("--fvd/--no-fvd", default=True, help="Compute FVD (I3D is slow on a CPU).")
@click.option(
    "--device",
    default=None,
    help="Torch device of every command, e.g. cuda [default: lgcvd-train's, cuda if available; "
    "lgcvd-eval's, cpu].",
)
@count_option("--parallel", default=1, help="Runs at once (several small runs fit on one GPU).")
@click.option(
    "--dry-run", is_flag=True, help="Print what would run, every command line; run nothing."
)
def main(seeds, variants, parallel, dry_run, **options):
    """Train and evaluate the Table 5 ablation; write OUT/table5.md."""
    plan = Plan(**options)
    runs = [Run(variant, seed) for variant in variants for seed in seeds]
    todo = jobs(plan, runs)
    if dry_run:
        for run, steps in todo:
            click.echo(f"# {run.name}: " + (", ".join(s[1] for s in steps) or "done"))
            click.echo("".join(shlex.join(command) + "\n" for *_, command in steps), nl=False)
        click.echo(f"# then: {plan.out / TABLE}")
        return
    if any(what == "eval" for _, steps in todo for what, *_ in steps):
        # the held-out clips are checked before hours of training
        size = preset(plan.preset).image_size
        load_clips(plan.test_data, size, plan.clips, P + N, seed=0)
    failures = run_all(plan, todo, parallel)
    if failures:
        raise click.ClickException(
            f"{len(failures)} command(s) failed, first: {failures[0]} (logs in {plan.out / 'logs'})"
        )
    reports = {run: json.loads(run.report(plan).read_text()) for run in runs}
    recipe = (
        f"`{plan.preset}` preset, {plan.steps:,} steps of batch {plan.batch_size}, lr "
        f"{plan.lr:g}, cooldown {plan.cooldown} steps, task weights {plan.task_weights}; "
        f"trained on {plan.data}"
    )
    text = table_text(recipe, plan.test_data, reports)
    with write_then_rename(plan.out / TABLE) as tmp:
        tmp.write_text(text)
    click.echo(text, nl=False)


if __name__ == "__main__":
    main()
