"""`lgcvd-train`: two-stage LGC-VD training from the command line (paper §3.3, §4.2).

lgcvd-train --preset small --data shapes --steps 200
lgcvd-train --preset small --data path/to/videos/ --out runs/mine
lgcvd-train --init-from lgcvd_runtime/assets/default.lgcvd --data path/to/videos/ --out runs/tuned
torchrun --nproc-per-node 4 -m lgcvd_train.cli --preset paper-bair64 --data bair.npz

Errors end in one line; a stop (Ctrl-C exits 130, SIGTERM 143, SIGHUP 129) saves the checkpoint
and says how to continue (`lgcvd_runtime.cli.chassis`).
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import click

from lgcvd_runtime.cli.chassis import HELP, Command, when_stopped
from lgcvd_runtime.cli.options import (
    TOPIC,
    choice_option,
    count_option,
    framing_options,
    path_option,
    positive_option,
    switch_option,
)
from lgcvd_runtime.files import file_in_the_way
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.samplers import PARAMETERIZATIONS
from lgcvd_train.data.robot_logs import data_period

from . import __version__
from .config import (
    ADAMS,
    DEFAULT_TASK_WEIGHTS,
    PRESETS,
    WEIGHTINGS,
    ModelConfig,
    TrainConfig,
    preset,
)
from .data import GENERATED_VIDEOS
from .extra import train_extra
from .train_options import MAX_SEED, TRAIN, finite, parse_task_weights


@click.command(
    cls=Command,
    context_settings=HELP,
    stopped="{word} before training began; no checkpoint written",
)
@choice_option(
    "--preset", "preset_name", choices=PRESETS, default="base", help="Model architecture preset."
)
@click.option(
    "--data",
    required=True,
    help="shapes | mnist | pushsim (generated), a folder of videos (a long video gives one clip "
    "per 14 frames it holds), a robot log (rosbag2 folder, .mcap, .bag) or a folder of them, "
    "or a .npy/.npz array N×T×H×W×3 uint8.",
)
@TOPIC
@click.option(
    "--frame-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Frames per second to train at and record in the checkpoint (default: the data's own, "
    "from bag stamps or video rates; none for generated data and arrays). Bags are resampled "
    "to it by stamp.",
)
@framing_options(new_model=True)
@path_option(
    "--out", "out", help="Run directory for checkpoint and metrics [default: runs/PRESET-DATA]."
)
@count_option(
    "--steps",
    default=TRAIN.steps,
    help="Total optimizer steps (a resumed run continues up to this number).",
)
@count_option("--batch-size", default=TRAIN.batch_size, help="Clips per process per step.")
@positive_option("--lr", callback=finite, default=TRAIN.lr, help="Adam learning rate.")
@count_option(
    "--cooldown-steps",
    least=0,
    default=TRAIN.cooldown,
    help="Decay the learning rate linearly to 0 over the last this many of --steps (0: constant); "
    "like --steps, it can be changed when resuming.",
)
@click.option(
    "--ema-decay",
    type=click.FloatRange(0, 1, max_open=True),
    callback=finite,
    default=TRAIN.ema_decay,
    show_default=True,
    help="EMA decay.",
)
@positive_option(
    "--grad-clip",
    callback=finite,
    default=TRAIN.grad_clip,
    show_default=False,
    help="Clip the gradient norm to this.",
)
@choice_option(
    "--loss", choices=("l1", "l2"), default=TRAIN.loss, help="Loss on the prediction target."
)
@choice_option(
    "--parameterization",
    choices=PARAMETERIZATIONS,
    default=ModelConfig.parameterization,
    help="What the network predicts.",
)
@switch_option(
    "--residual/--no-residual",
    default=ModelConfig.residual,
    help="Denoise each window's difference from the guess its condition frames give (a copy of "
    "the last, a cross-fade between two) instead of the window itself.",
)
@click.option(
    "--no-two-stage",
    is_flag=True,
    help="Ablation: stage 2 sees ground truth instead of the stage-1 estimate.",
)
@click.option(
    "--no-context",
    is_flag=True,
    help="Ablation: no sequence encoder / global context (paper Table 5 baseline).",
)
@click.option(
    "--task-weights",
    default=None,
    help="Task mixture, e.g. "
    + ",".join(f"{task}={weight:g}" for task, weight in DEFAULT_TASK_WEIGHTS.items())
    + " (the default).",
)
@count_option(
    "--num-videos",
    default=GENERATED_VIDEOS,
    help="Videos to generate for shapes / mnist / pushsim.",
)
@count_option(
    "--seed",
    least=0,
    most=MAX_SEED,
    default=TRAIN.seed,
    help="Seed of data, init, noise (0 to 2**64-1).",
)
@count_option(
    "--save-every", default=TRAIN.save_every, help="Write a checkpoint every this many steps."
)
@click.option(
    "--no-amp",
    is_flag=True,
    help="Train in fp32 (default: bf16 autocast on CUDA and on CPUs with native bf16).",
)
@choice_option(
    "--loss-weighting",
    choices=WEIGHTINGS,
    default=TRAIN.loss_weighting,
    help="Weight the loss over timesteps: none, or min-snr (Hang et al. 2023: min(SNR, gamma) on "
    "the x0 error).",
)
@positive_option(
    "--snr-gamma",
    callback=finite,
    default=TRAIN.snr_gamma,
    help="gamma of --loss-weighting min-snr.",
)
@choice_option(
    "--adam",
    choices=ADAMS,
    default=TRAIN.adam,
    help="torch.optim.Adam implementation (speed only; can change when resuming).",
)
@switch_option(
    "--channels-last/--no-channels-last",
    default=TRAIN.channels_last,
    help="Model and inputs in channels-last memory format (speed only; slower on a CPU, kept "
    "until measured on a GPU: docs/results.md).",
)
@switch_option(
    "--compile/--no-compile",
    "compile_model",
    default=TRAIN.compile,
    help="torch.compile the network (speed only; it compiles for minutes in "
    "every new process, so it pays only in long runs; kept until measured on a GPU).",
)
@switch_option(
    "--prefetch/--no-prefetch",
    default=TRAIN.prefetch,
    help="Prepare the next batch on a background thread during each step (speed only; within the "
    "noise on a 2-core CPU, kept until measured on a GPU).",
)
@path_option(
    "--init-from",
    help="Start from this model's weights (a .lgcvd bundle such as the shipped default, or a run "
    "directory: its EMA weights) instead of random ones: fine-tuning. The run keeps its "
    "architecture (a contradicting --preset is an error) and noise schedule. Ignored with --resume.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its checkpoint, with its architecture and data settings.",
)
@click.option("--force", is_flag=True, help="Start afresh even if --out holds a checkpoint.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... [default: cuda if available].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(
    preset_name,
    data,
    topic,
    frame_rate,
    fit,
    roi,
    out,
    steps,
    batch_size,
    lr,
    cooldown_steps,
    ema_decay,
    grad_clip,
    loss,
    parameterization,
    residual,
    no_two_stage,
    no_context,
    task_weights,
    num_videos,
    seed,
    save_every,
    no_amp,
    loss_weighting,
    snr_gamma,
    adam,
    channels_last,
    compile_model,
    prefetch,
    init_from,
    resume,
    force,
    device,
    quiet,
):
    """Train LGC-VD with the two-stage algorithm; write RUN/checkpoint.safetensors."""
    with train_extra("lgcvd-train"):
        from lgcvd_runtime.media.arrays import recorded_command

        from .checkpoint import FILENAME
        from .continuation import follow_checkpoint, follow_source, given_options
        from .data import load_dataset
        from .trainer import Trainer, check_device

    given = given_options(click.get_current_context())  # what a continued run may contradict
    framing = Framing(fit=fit, roi=roi, period_s=data_period(data, frame_rate, topic))
    mcfg = replace(
        preset(preset_name),
        context=not no_context,
        parameterization=parameterization,
        residual=residual,
    )
    tcfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        cooldown=cooldown_steps,
        ema_decay=ema_decay,
        grad_clip=grad_clip,
        loss=loss,
        two_stage=not no_two_stage,
        task_weights=parse_task_weights(task_weights),
        seed=seed,
        save_every=save_every,
        amp=not no_amp,
        loss_weighting=loss_weighting,
        snr_gamma=snr_gamma,
        adam=adam,
        channels_last=channels_last,
        compile=compile_model,
        prefetch=prefetch,
    )
    out = out or Path("runs") / f"{preset_name}-{Path(data).stem}"
    if (blocker := file_in_the_way(out)) is not None:
        raise click.ClickException(
            f"{blocker} is a file, not a directory; pass --out a run directory"
        )
    if (out / FILENAME).exists() and not (resume or force):
        raise click.ClickException(
            f"{out} already holds a checkpoint; pass --resume to continue it or --force to start over"
        )
    if resume and not (out / FILENAME).exists():
        raise click.ClickException(f"{out} holds no checkpoint to resume; drop --resume")
    with train_extra("lgcvd-train"):
        check_device(device)  # before the data: that can take minutes
        if resume:
            mcfg, num_videos, seed, framing = follow_checkpoint(mcfg, given, out, data, num_videos)
        elif init_from is not None:
            mcfg, tcfg = follow_source(mcfg, tcfg, given, init_from)
        videos = load_dataset(
            data,
            mcfg.image_size,
            num_videos=num_videos,
            seed=seed,
            min_frames=tcfg.clip_frames,
            framing=framing,
            pieces=True,
            topic=topic,
        )
        provenance = {
            "data": data,
            "num_videos": len(videos),
            "data_seed": seed,
            "command": "lgcvd-train " + shlex.join(sys.argv[1:]),
            "data_command": recorded_command(Path(data)),
            "lgcvd_version": __version__,
        }
        trainer = Trainer(
            mcfg,
            tcfg,
            videos,
            out,
            provenance,
            resume=resume,
            device=device,
            progress=not quiet,
            init_from=init_from,
            framing=framing,
        )
        when_stopped(
            lambda word: (
                f"{word} at step {trainer.step}; checkpoint saved in {out} (continue with --resume)"
            )
        )
        if resume and trainer.step >= steps:
            raise click.ClickException(
                f"{out} is at step {trainer.step} already; pass --steps above {trainer.step} "
                "to train on"
            )
        trainer.fit()
    if trainer.d.main:
        click.echo(f"checkpoint: {out / FILENAME}")


if __name__ == "__main__":
    main()
