"""A training checkpoint reduced to what sampling and fine-tuning need: the EMA weights in fp16.

lgcvd-train's checkpoint.safetensors holds the weights, the EMA weights and Adam's two moments in
fp32, four copies of the model (about 98 MB for `base`, 6.1M parameters). This writes
OUT/checkpoint.safetensors with the EMA weights alone, rounded to fp16 (12 MB for `base`; relative
error ~5e-4, as in fp16 bundles), and the checkpoint's JSON state, so that

    lgcvd-train --init-from OUT ...      (fine-tune from it; not --resume: no optimizer state)
    lgcvd-export OUT -o model.lgcvd      (export it)

accept it like any run directory. Used by tools/gpu_train.sh to bring weights back from a machine
that returns files of at most 16 MiB.

    python tools/slim_checkpoint.py runs/base-gpu slim/ [--max-mib 16]
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import torch
from safetensors.torch import save_file

from lgcvd_runtime.cli.chassis import Command
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import refuse_existing, write_then_rename
from lgcvd_train.checkpoint import FILENAME, META_KEY, load_checkpoint, resolve

EMA = "ema."


def slim(run: Path, out: Path, force: bool = False, max_mib: float | None = None) -> Path:
    """Write OUT/checkpoint.safetensors (EMA weights, fp16) and OUT/checkpoint.json."""
    target = out / FILENAME
    refuse_existing(target, force)
    ckpt = load_checkpoint(run)
    weights = {
        k: v.to(torch.float16).contiguous() if v.is_floating_point() else v
        for k, v in ckpt.tensors.items()
        if k.startswith(EMA)
    }
    size = sum(v.numel() * v.element_size() for v in weights.values()) / 2**20
    if max_mib is not None and size > max_mib:
        raise LgcvdError(
            f"the EMA weights of {resolve(run)} take {size:.1f} MiB in fp16, over --max-mib "
            f"{max_mib:g}; use a smaller preset or raise --max-mib"
        )
    state = {**ckpt.state, "slim": f"EMA weights only, fp16, from {resolve(run)}"}
    out.mkdir(parents=True, exist_ok=True)
    with write_then_rename(target, force) as tmp:
        save_file(weights, tmp, {META_KEY: json.dumps(state)})
    with write_then_rename(out / "checkpoint.json", force) as tmp:
        tmp.write_text(json.dumps(state, indent=2) + "\n")
    return target


@click.command(cls=Command, stopped="{word}; no checkpoint written")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--max-mib", type=float, default=None, help="Refuse a result larger than this.")
@click.option("--force", is_flag=True, help="Replace OUT's checkpoint.")
def main(run: Path, out: Path, max_mib: float | None, force: bool) -> None:
    """Write RUN's EMA weights in fp16 as the run directory OUT."""
    target = slim(run, out, force, max_mib)
    click.echo(f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
