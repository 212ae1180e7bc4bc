"""The text of `lgcvd-run info`: what a bundle is, how it would be sampled (its plan or the
default, or the options given, and where that plan came from; a distilled student's teacher),
whether its input score is calibrated, which backends can run it here, and a few lines of where
it came from.

The essentials come first; provenance follows as a short summary (training data, steps, the
bundle it was fine-tuned from, versions). The full record is nested (a fine-tuned model carries
the provenance of the bundle it started from, and so on back) and is printed only on request
(`provenance=True`, `lgcvd-run info --provenance`), as an indented tree, one fact per line, so
that a person can read a training history. Knows the manifest, not the graphs' contents.
"""

from __future__ import annotations

from pathlib import Path

from lgcvd_runtime.api import plan_of
from lgcvd_runtime.backends import availability
from lgcvd_runtime.bundle import load_manifest
from lgcvd_runtime.ood import THRESHOLD, Calibration
from lgcvd_runtime.plans import SamplerPlan, plan_name, teacher_name
from lgcvd_runtime.schedule import Plan

INDENT = "  "
LABEL = 12  # width of the left-hand column ("provenance  ")


def tree(value, depth: int = 0) -> list[str]:
    """Lines for a JSON-like value: a mapping as `key: value` lines (nested ones indented below
    their key), a list of scalars on one line, other lists as `- ` items."""
    pad = INDENT * depth
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item and not _flat(item):
                lines += [f"{pad}{key}:", *tree(item, depth + 1)]
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    if isinstance(value, list) and not _flat(value):
        lines = []
        for item in value:
            inner = tree(item, depth + 1)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
        return lines
    return [f"{pad}{_scalar(value)}"]


def _flat(value) -> bool:
    return isinstance(value, list) and not any(isinstance(v, (dict, list)) for v in value)


def _scalar(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}"
    return "none" if value is None else str(value)


def describe(
    path: Path,
    sampler: str | None,
    steps: int | None,
    provenance: bool = False,
    spacing: str | None = None,
) -> str:
    """Every line of `lgcvd-run info` for the bundle at `path` (`sampler`, `steps`, `spacing`:
    the options, None where not given); the full provenance tree last with `provenance`, else a
    summary."""
    m = load_manifest(path)
    spec = m.model
    lines = [
        f"bundle      {path} (format version {m.format_version}, {m.precision}, "
        f"max batch {m.max_batch})",
        f"frames      {spec.image_size}x{spec.image_size}, {spec.channels} channels; window "
        f"N={spec.frames}, K={spec.cond_slots} condition slots, {spec.new_frames} new frames",
        f"time        {_period(m.framing.period_s)}",
        f"model       {spec.parameterization}-prediction"
        f"{' of the residual from the condition frames' if spec.residual else ''}; "
        f"schedule {m.schedule.type}, "
        f"T={m.schedule.T}",
    ]
    for name, graph in m.graphs.items():
        ins = ", ".join(f"{t.name}{list(t.shape)}" for t in graph.inputs)
        outs = ", ".join(f"{t.name}{list(t.shape)}" for t in graph.outputs)
        lines.append(f"graph       {name}: {graph.file} ({ins}) -> ({outs})")
    choice = plan_of(m, sampler, steps, spacing)
    over = choice.plan.over(m.schedule)
    steps_at = over.describe() if over.steps > 7 else f"{over.steps} steps at t = {_at(over)}"
    lines.append(f"sampling    {choice.plan.sampler}, {steps_at} ({choice.origin()})")
    if m.plan is not None:
        lines.append(f"{'distilled':<{LABEL}}{_distilled(m.plan)}")
    lines.append(f"input score {_calibration(m.ood)}")
    for name, reason in availability().items():
        lines.append(f"backend     {name}: {'available' if reason is None else reason}")
    if provenance:
        record = {**m.provenance, **({"teacher": m.plan.teacher} if m.plan else {})}
        history = tree(record) or ["none recorded"]
        lines += [
            f"{'provenance' if i == 0 else '':<{LABEL}}{line}" for i, line in enumerate(history)
        ]
    else:
        lines += [f"{label:<{LABEL}}{text}" for label, text in summary(m.provenance)]
    return "\n".join(lines)


def _distilled(plan: SamplerPlan) -> str:
    """The plan a student was distilled for, and from which teacher, in one line."""
    source = teacher_name(plan) or "a teacher not recorded"
    return f"for {plan_name(plan)} at t = {list(plan.timesteps or ())}, from {source}"


def _at(plan: Plan) -> str:
    return ", ".join(str(int(t)) for t in plan.timesteps)


def _period(period_s: float | None) -> str:
    """The model's frame period in one line (`framing.Framing.period_s`)."""
    if period_s is None:
        return "no frame period recorded: frames are taken by index, input is not resampled"
    return (
        f"frame period {period_s:g} s ({1 / period_s:.3g} Hz): input at another rate is "
        "resampled by time; forecasts carry their times"
    )


def _calibration(record: dict | None) -> str:
    """The input score's calibration (`ood.Calibration`) in one line."""
    calibration = Calibration.of_record(record)
    if calibration is None or record is None:
        return "not calibrated: no warning for inputs unlike the training data"
    kind = "held-out" if record.get("held_out", True) else "training"
    percentiles = ", ".join(f"{p}th {v:g}" for p, v in calibration.percentiles.items())
    return (
        f"warns above {calibration.threshold:g}, the {THRESHOLD}th percentile on "
        f"{calibration.clips} {kind} clips of {record.get('data', 'unrecorded data')} "
        f"({percentiles})"
    )


def summary(prov: dict) -> list[tuple[str, str]]:
    """(label, text) lines of a provenance record: what the model was trained on and for how
    long, what it was fine-tuned from, what exported it, and where the rest is."""
    if not prov:
        return [("provenance", "none recorded")]
    lines = []
    if "training_data" in prov:
        videos = prov.get("training_videos")
        count = f" ({videos} videos)" if videos else ""
        lines.append(("trained", f"on {prov['training_data']}{count}"))
    if "checkpoint_step" in prov:
        checkpoint = prov.get("checkpoint")
        where = f" (checkpoint {checkpoint})" if checkpoint else ""
        lines.append(("steps", f"{prov['checkpoint_step']}{where}"))
    source = prov.get("training_init_from")
    if source:
        lines.append(("fine-tuned", f"from {source.get('bundle') or source.get('checkpoint')}"))
    names = {"lgcvd_version": "lgcvd", "torch_version": "torch", "onnx_version": "onnx"}
    versions = [f"{name} {prov[key]}" for key, name in names.items() if key in prov]
    if versions:
        lines.append(("exported", "with " + ", ".join(versions)))
    lines.append(("provenance", "all of it: lgcvd-run info --provenance"))
    return lines
