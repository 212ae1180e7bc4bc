"""Assemble a bundle: export, fp16 / int8, gates, engines, calibration, manifest; atomically
(docs/design.md).

Everything is written into a temporary directory beside the target and renamed into place only
when complete. Any failure, the gate included, or an interrupt removes the temporary directory,
so no half-written bundle is ever visible; with `force`, an existing bundle is replaced only after
the new one is complete, and a stop signal is held back while the renames run. The bundle's
folder and files get the permissions the user's umask gives. A distilled student's checkpoint
carries the plan it was distilled for (state "plan"); the manifest records it and the graphs
bind it (`lgcvd_runtime.bundle`, module header).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import onnx
import torch

from lgcvd_runtime.backends import trt_backend
from lgcvd_runtime.bundle import GraphSpec, Manifest, bound_fields, sha256_file, write_manifest
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import folder_then_rename, refuse_existing, remove_abandoned
from lgcvd_runtime.plans import SamplerPlan
from lgcvd_runtime.portable import portable_record
from lgcvd_train import __version__
from lgcvd_train.checkpoint import Checkpoint, resolve
from lgcvd_train.init_weights import checkpoint_plan
from lgcvd_train.model import LGCVD

from . import int8_gate, parity, quantize, trt_build
from .calibration import calibrate_on_given, calibrate_on_run
from .graphs import EXPORTER, GraphIO, bind_fields, export_model
from .options import ExportOptions
from .precision import to_fp16


def provenance(ckpt: Checkpoint, checkpoint: Path, opts: ExportOptions, worst: float) -> dict:
    """Where the bundle came from, its paths `portable`: the bundle travels, this machine not."""
    trained = ckpt.state.get("provenance", {})  # written by lgcvd-train
    record = {
        "checkpoint": str(resolve(checkpoint).resolve()),
        "checkpoint_step": ckpt.step,
        "training_data": trained.get("data"),
        "training_data_seed": trained.get("data_seed"),
        "training_videos": trained.get("num_videos"),
        "training_command": trained.get("command"),
        "training_data_command": trained.get("data_command"),
        "training_note": trained.get("note"),
        "training_resumed_at": trained.get("resumed_at"),
        "training_resume_command": trained.get("resume_command"),
        "training_config": ckpt.train_config.to_dict(),
        "training_init_from": trained.get("init_from"),
        "model_config": ckpt.model_config.to_dict(),
        "training_lgcvd_version": trained.get("lgcvd_version"),
        "lgcvd_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "opset": opts.opset,
        "exporter": EXPORTER,
        "parity_max_rel_err": worst,
        "parity_tolerance": parity.TOLERANCE[opts.precision],
    }
    return portable_record({k: v for k, v in record.items() if v is not None})


def student_plan(ckpt: Checkpoint, checkpoint: Path) -> SamplerPlan | None:
    """The plan a distilled student's checkpoint records (None: not a student), checked against
    its schedule, its teacher's paths `portable` as the provenance's are."""
    plan = checkpoint_plan(checkpoint, ckpt.state, ckpt.schedule.T, LgcvdError)
    if plan is None:
        return None
    return replace(plan, teacher=portable_record(plan.teacher))


def build_manifest(
    directory: Path, model: LGCVD, specs: dict[str, GraphIO], ckpt: Checkpoint, opts, prov, plan
) -> Manifest:
    """The manifest of the finished graphs in `directory`, once each records the bound fields
    (`lgcvd_runtime.bundle`, module header) that its hash then covers."""
    schedule = ckpt.schedule
    bound = bound_fields(model.cfg.layout(), schedule, opts.precision, opts.max_batch, plan)
    for name in specs:
        bind_fields(directory / f"{name}.onnx", bound)
    graphs = {
        name: GraphSpec(f"{name}.onnx", sha256_file(directory / f"{name}.onnx"), *io)
        for name, io in specs.items()
    }
    return Manifest(
        model=model.cfg.layout(),
        schedule=schedule,
        precision=opts.precision,
        max_batch=opts.max_batch,
        graphs=graphs,
        provenance=prov,
        framing=ckpt.framing,  # the checkpoint's: serving fits frames as training did
        plan=plan,
    )


def fill(directory: Path, model, ckpt, checkpoint, opts, echo, name: Path) -> None:
    """Write a complete bundle, to be renamed to `name`, into the (empty) `directory`."""
    plan = student_plan(ckpt, checkpoint)  # a bad plan fails before the long work
    specs = export_model(model, directory, opts.opset)
    if opts.precision == "fp16":
        for graph in specs:
            to_fp16(directory / f"{graph}.onnx")
    schedule = ckpt.schedule
    gate = None
    if opts.precision == "int8":
        gate = int8_gate.int8_export(
            directory, list(specs), model.cfg.layout(), schedule, opts, echo
        )
    checks = parity.check_parity(model, directory, opts.precision, schedule, opts.real_frames)
    echo(parity.format_table(checks))
    parity.require_parity(checks)
    worst = max(c.rel_err for c in checks)
    prov = provenance(ckpt, checkpoint, opts, worst)
    if gate is not None:
        prov["int8"] = {
            "float_ops": quantize.DEFAULT_FLOAT_OPS,
            "gate_psnr_vs_fp32": gate.psnr,
            "gate_ssim_vs_fp32": gate.ssim,
            "gate_clips": gate.clips,
            "gate_min_psnr": gate.tolerance.min_psnr,
            "gate_min_ssim": gate.tolerance.min_ssim,
        }
    manifest = build_manifest(directory, model, specs, ckpt, opts, prov, plan)
    if opts.tensorrt:
        engines = trt_build.build_engines(directory, manifest, echo)
        prov = {**prov, "engines": engines}
        manifest = replace(manifest, provenance=prov)
        if opts.cuda_graph:
            trt_build.check_cuda_graph(directory, manifest, echo)
            manifest = replace(manifest, provenance={**prov, trt_backend.CUDA_GRAPH: True})
    ood = input_calibration(directory, manifest, ckpt, opts, name, echo)
    write_manifest(directory, replace(manifest, ood=ood))


def input_calibration(directory: Path, manifest: Manifest, ckpt, opts, name: Path, echo):
    """The manifest's "ood" record: on --calibrate's clips where given, else on the run's own
    (`calibration`); None, said in one line, where there are none. Never the --init-from
    source's: the model changed."""
    if opts.calibrate is None:
        return calibrate_on_run(directory, manifest, ckpt, name, echo, opts.calibrate_topic)
    return calibrate_on_given(directory, manifest, opts.calibrate, opts.calibrate_topic, echo)


def export_bundle(
    model: LGCVD,
    ckpt: Checkpoint,
    checkpoint: Path,
    target: Path,
    opts: ExportOptions,
    echo: Callable[[str], None] = print,
) -> Path:
    """Export `model` (loaded from `checkpoint`) as the bundle `target`; return its path."""
    target = Path(target)
    refuse_existing(target, opts.force)
    target.parent.mkdir(parents=True, exist_ok=True)
    for left in remove_abandoned(target):
        echo(f"note: removed {left.name}, left by an export that was killed")
    # the gate, any error and KeyboardInterrupt leave nothing behind
    with folder_then_rename(target) as work:
        fill(work, model, ckpt, checkpoint, opts, echo, target)
    return target
