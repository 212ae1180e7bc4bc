"""Starting weights for a new run: fine-tune a trained model instead of starting from noise.

`lgcvd-train --init-from SOURCE` takes SOURCE's weights and nothing else (no optimizer state, no
step): a new run that begins where another model ended. SOURCE is either
- a run directory or checkpoint file: its EMA weights (the ones sampling uses, docs/design.md), or
- a bundle (`NAME.lgcvd/`, e.g. the shipped default model): the weights read back from its ONNX
  graphs. The TorchScript exporter keeps every parameter under its module path
  (`model.unet.…conv1.weight`) except the GroupNorm affines, which it folds into anonymous
  `(C, 1, 1)` constants read by the Mul / Add nodes that follow InstanceNormalization; those nodes
  are named after their module scope (`/unet/…/norm1/Mul`), which gives the parameter back. fp16
  bundles give fp16-rounded weights (relative error ~5e-4), which fine-tuning absorbs.

Knows nothing about the training loop; the weights must fit the model exactly, or a one-line
error says what does not.

A distilled student (a bundle or checkpoint that records a plan, `lgcvd_runtime.plans`) is
refused in one line: its network jumps between the few timesteps of its plan, and training it on
the ordinary loss at every timestep would silently undo that while the run claimed to fine-tune a
model. Fine-tune its teacher, which the refusal names, and distil again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from lgcvd_runtime.bundle import MANIFEST, Manifest, load_manifest
from lgcvd_runtime.checks import refuse_unknown_fields
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.plans import PlanError, SamplerPlan, plan_name, read_plan, teacher_name
from lgcvd_runtime.schedule import ScheduleSpec

from .checkpoint import (
    FILENAME,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model,
    resolve,
)
from .config import ModelConfig
from .model import LGCVD

GRAPH_PREFIX = "model."  # graphs wrap the LGCVD module as `self.model` (export/graphs.py)
AFFINE = {"Mul": "weight", "Add": "bias"}


class InitError(LgcvdError):
    """--init-from names something that holds no usable weights."""


def module_path(node_name: str) -> str:
    """ONNX node name -> dotted module path: '/unet/head/head.0/Mul' -> 'unet.head.0'. A scope
    that repeats its parent as a prefix ('head' then 'head.0') names the same child once."""
    parts: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    return ".".join(parts)


def graph_weights(path: Path, norms: list[str]) -> dict[str, np.ndarray]:
    """{parameter name: float32 array} of one exported ONNX graph; `norms` are the model's
    GroupNorm module names, which the folded affines are matched to."""
    graph = onnx.load(str(path)).graph
    readers = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, node)
    weights = {}
    for init in graph.initializer:
        value = numpy_helper.to_array(init).astype(np.float32)
        if init.name.startswith(GRAPH_PREFIX):
            weights[init.name[len(GRAPH_PREFIX) :]] = value
            continue
        node = readers.get(init.name)
        if node is None or node.op_type not in AFFINE or value.shape[1:] != (1, 1):
            continue  # shape constants, attention scales: not parameters
        owner = norm_owner(module_path(node.name), norms)
        if owner is not None:
            weights[f"{owner}.{AFFINE[node.op_type]}"] = value.reshape(-1)
    return weights


def norm_owner(scope: str, norms: list[str]) -> str | None:
    """The GroupNorm whose module path ends with `scope`. Modules of one name called outside their
    parents' forward (each cross-attention's `norm_z`) are scoped `norm_z`, `norm_z_1`, ... in
    call order, which is their order in the model."""

    def ending(path: str) -> list[str]:
        return [n for n in norms if n == path or n.endswith("." + path)]

    owners, index = ending(scope), 0
    base, _, count = scope.rpartition("_")
    if not owners and count.isdigit():
        owners, index = ending(base), int(count)
    return owners[index] if index < len(owners) else None


def bundle_weights(
    directory: Path, manifest: Manifest, model: torch.nn.Module
) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict for `model`, bundle facts for provenance) of a verified bundle."""
    norms = [n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm)]
    weights: dict[str, np.ndarray] = {}
    for graph in manifest.graphs.values():
        weights.update(graph_weights(directory / graph.file, norms))
    facts = {
        "bundle": str(directory),
        "sha256": {name: g.sha256 for name, g in manifest.graphs.items()},
        "precision": manifest.precision,
        "provenance": manifest.provenance,
    }
    return {k: torch.from_numpy(v) for k, v in weights.items()}, facts


def _is_bundle(source: Path) -> bool:
    """True for a bundle, False for a run directory or checkpoint file; InitError otherwise."""
    if (source / MANIFEST).is_file():
        return True
    if resolve(source).is_file():
        return False
    raise InitError(
        f"{source}: neither a bundle ({MANIFEST}) nor a run directory ({FILENAME}); "
        "pass a .lgcvd bundle or a run directory to --init-from"
    )


def refuse_student(source: Path, plan: SamplerPlan | None) -> None:
    """InitError where SOURCE records a plan: it is a distilled student (module header)."""
    if plan is None:
        return
    named = teacher_name(plan) or "its teacher"
    raise InitError(
        f"{source}: a student distilled for {plan_name(plan)} (its plan), not a model to "
        "fine-tune: the ordinary loss would undo its distillation; pass "
        f"{named} to --init-from and distil the result again"
    )


def checkpoint_plan(
    source: Path, state: dict, T: int, error: type[LgcvdError] = InitError
) -> SamplerPlan | None:
    """The plan a checkpoint's state records (None: not a student), checked against a schedule
    of T steps; a bad one is `error`, in one line (export and evaluation pass their own)."""
    try:
        return read_plan(state.get("plan"), T)
    except PlanError as e:
        raise error(f"{resolve(source)}: bad plan ({e}); distil the student again") from None


def _bundle_config(source: Path, manifest: Manifest) -> ModelConfig | None:
    """The architecture a bundle's provenance records (None before bundles carried it); fields
    this lgcvd does not know mean a newer lgcvd wrote it."""
    recorded = manifest.provenance.get("model_config")
    if not recorded:
        return None
    refuse_unknown_fields(source / MANIFEST, "model_config", ModelConfig, recorded, CheckpointError)
    return ModelConfig.from_dict(recorded)


def recorded_config(source: Path) -> tuple[ModelConfig | None, ScheduleSpec]:
    """(architecture, noise schedule) that SOURCE records; the architecture is None for bundles
    written before they carried `model_config`."""
    source = Path(source)
    if _is_bundle(source):
        manifest = load_manifest(source)
        refuse_student(source, manifest.plan)
        return _bundle_config(source, manifest), manifest.schedule
    ckpt = load_checkpoint(source)
    refuse_student(source, checkpoint_plan(source, ckpt.state, ckpt.schedule.T))
    return ckpt.model_config, ckpt.schedule


def init_model(source: Path, cfg: ModelConfig, residual: bool | None = None) -> tuple[LGCVD, dict]:
    """(model holding SOURCE's weights, provenance entry) for --init-from (`load_source`)."""
    model, facts, _ = load_source(source, cfg, residual)
    return model, facts


def load_source(
    source: Path, cfg: ModelConfig, residual: bool | None = None
) -> tuple[LGCVD, dict, Manifest | Checkpoint]:
    """(model holding SOURCE's weights, provenance entry, what SOURCE was read from: its verified
    manifest or its checkpoint, read once). The architecture is the one SOURCE records (a
    checkpoint always does, bundles since they carry `model_config`), else `cfg`; `residual`,
    where given, replaces what SOURCE denoised (no weight depends on it)."""
    source = Path(source)
    origin: Manifest | Checkpoint
    if _is_bundle(source):
        origin = load_manifest(source)
        refuse_student(source, origin.plan)
        model = LGCVD(_bundle_config(source, origin) or cfg)
        state, facts = bundle_weights(source, origin, model)
        load_initial(model, state, source)
    else:
        model, origin = load_model(source)  # EMA weights, checked against the checkpoint's config
        refuse_student(source, checkpoint_plan(source, origin.state, origin.schedule.T))
        model.train()
        facts = {
            "checkpoint": str(resolve(source)),
            "step": origin.step,
            "provenance": origin.state.get("provenance", {}),
        }
    if residual is not None:
        model.cfg = replace(model.cfg, residual=residual)
    return model, facts, origin


def load_initial(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Copy `state` into `model`, which must have exactly these parameters and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        first = (missing or extra or wrong)[0]
        raise InitError(
            f"{source}: its weights do not fit this model ({len(missing)} missing, {len(extra)} "
            f"unexpected, {len(wrong)} mis-shaped, e.g. {first}); pass the --preset it was "
            "trained with"
        )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
