"""`lgcvd-distill`: progressive distillation of a trained model (Salimans & Ho 2022), every round
from the teacher's steps down to 1 in one command (`distill_run`).

lgcvd-distill --teacher lgcvd_runtime/assets/default.lgcvd --data data/pushsim_train.npy \\
    --rounds 16:8:4:2:1 --round-steps 1000 --out runs/distill/default
lgcvd-distill --out runs/distill/default --resume

Errors end in one line; a stop (Ctrl-C exits 130, SIGTERM 143, SIGHUP 129) saves the round's
checkpoint and says how to continue (`lgcvd_runtime.cli.chassis`). Knows click and the run's
configuration; the rounds are `distill_run`'s.
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import click
from click.core import ParameterSource

from lgcvd_runtime.cli.chassis import HELP, Command, when_stopped
from lgcvd_runtime.cli.options import choice_option, count_option, path_option, positive_option

from . import __version__
from .data import GENERATED_VIDEOS
from .extra import train_extra
from .train_options import MAX_SEED, finite

ROUNDS, ROUND_STEPS = "16:8:4:2:1", 1000
WEIGHTINGS = ("snr+1", "truncated-snr")  # distill.WEIGHTINGS, here without importing torch


def parse_rounds(ctx, param, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(":"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not STEPS:STEPS:...; write e.g. 16:8:4:2:1"
        ) from None


@click.command(
    cls=Command,
    context_settings=HELP,
    stopped="{word} before distillation began; no checkpoint written",
)
@click.option(
    "--teacher",
    help="The model to distil: a .lgcvd bundle (the shipped default) or a run directory (its "
    "EMA weights), as lgcvd-train --init-from takes.",
)
@click.option("--data", help="Training data, as lgcvd-train --data takes.")
@path_option("--out", "out", required=True, help="Run directory: one folder per round, steps-S.")
@click.option(
    "--rounds",
    default=ROUNDS,
    show_default=True,
    callback=parse_rounds,
    help="The teacher's DDIM steps, then each round's student's: each halves the last.",
)
@count_option("--round-steps", default=ROUND_STEPS, help="Optimizer steps per round.")
@count_option("--batch-size", default=8, help="Clips per step (two windows each).")
@positive_option(
    "--lr", callback=finite, default=1e-4, help="Adam rate, decayed to 0 within each round."
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    callback=finite,
    default=0.999,
    show_default=True,
    help="EMA decay; the EMA weights are the round's student.",
)
@choice_option(
    "--weighting",
    choices=WEIGHTINGS,
    default="snr+1",
    help="Loss weight over t on the x0 error: SNR+1 (plain MSE on v) or max(SNR, 1).",
)
@count_option(
    "--num-videos",
    default=GENERATED_VIDEOS,
    help="Videos to generate for shapes / mnist / pushsim.",
)
@count_option("--seed", least=0, most=MAX_SEED, default=0, help="Seed of batches and noise.")
@count_option(
    "--save-every", default=50, help="Write the round's checkpoint every this many steps."
)
@count_option(
    "--quality-clips",
    least=0,
    default=8,
    help="Held-out windows of each round's quality figure (0: none).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out as its distill.json records it; of the other options only "
    "--round-steps may change it (rounds already that long stay finished).",
)
@click.option("--force", is_flag=True, help="Start afresh even if --out holds a run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(out: Path, resume: bool, force: bool, quiet: bool, **options) -> None:
    """Distil a model into one of fewer DDIM steps, round by round; write OUT/steps-S/."""
    with train_extra("lgcvd-distill"):
        from .distill_run import RUN_FILE, DistillConfig, Distiller, check_rounds, load_teacher

    given = click.get_current_context().get_parameter_source("round_steps")
    cfg = run_config(out, resume, force, options, RUN_FILE, DistillConfig)
    if resume and given is not ParameterSource.DEFAULT:
        cfg = replace(cfg, round_steps=options["round_steps"])
    check_rounds(cfg.rounds)
    with train_extra("lgcvd-distill"):
        from .data import load_dataset

        teacher = load_teacher(cfg.source, cfg.rounds[0])
        model, framing = teacher[0], teacher[3]
        videos = load_dataset(
            cfg.data,
            model.cfg.image_size,
            num_videos=cfg.num_videos,
            framing=framing,
            pieces=True,
        )
        provenance = {
            "data": cfg.data,
            "num_videos": len(videos),
            "command": "lgcvd-distill " + shlex.join(sys.argv[1:]),
            "lgcvd_version": __version__,
        }
        distiller = Distiller(cfg, teacher, videos, out, provenance, progress=not quiet)
        when_stopped(lambda word: stopped_line(word, distiller, out))

        def tell(report: dict) -> None:
            click.echo(f"round {report['round']}: " + json.dumps(report), err=True)

        distiller.run(on_round=tell)
    click.echo(f"students: {', '.join(str(out / f'steps-{s:02d}') for s in cfg.rounds[1:])}")


def stopped_line(word: str, distiller, out: Path) -> str:
    """What a stop says: where the run stopped, what it saved and how to continue."""
    where = f"{word} in round {2 * distiller.round_steps} -> {distiller.round_steps}"
    folder = distiller.stopped_in
    if folder is None or not (folder / "checkpoint.safetensors").exists():
        return f"{where} before its first step; continue with --out {out} --resume"
    return (
        f"{where} at step {distiller.step}; checkpoint saved in {folder} (continue with --out "
        f"{out} --resume)"
    )


def run_config(out: Path, resume: bool, force: bool, options: dict, run_file: str, cls):
    """The run's DistillConfig: recorded in OUT (--resume) or from the options."""
    recorded = out / run_file
    if resume:
        if not recorded.is_file():
            raise click.ClickException(f"{out} holds no distillation run; drop --resume")
        return cls.from_dict(json.loads(recorded.read_text()))
    if recorded.exists() and not force:
        raise click.ClickException(
            f"{out} already holds a distillation run; pass --resume to continue it or --force "
            "to start over"
        )
    for name in ("teacher", "data"):
        if not options[name]:
            raise click.ClickException(f"missing --{name}; a new run needs --teacher and --data")
    if force and out.exists():
        for old in out.glob("steps-*/checkpoint.safetensors"):
            old.unlink()
    return cls(
        source=options.pop("teacher"),
        data=options.pop("data"),
        **options,
    )


if __name__ == "__main__":
    main()
