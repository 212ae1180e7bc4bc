"""The model bundle: the contract between export and runtime (docs/design.md, Bundle).

A directory `NAME.lgcvd/` holding `manifest.json` and the ONNX graphs it names. This module reads,
validates and writes manifests and checks file hashes; it knows nothing about torch, and of ONNX
only each graph's metadata (`metadata_props`, read with protobuf). Graph I/O (names, dtypes,
symbolic shapes) is described here once and read by the exporter, TensorRT profiles and the
runtime's input checks.

Bound fields: the manifest's fields that define the maths (the model layout, the schedule,
precision, max batch and, from format 3, the plan a student was distilled for) are also written by
export into every graph's metadata, as `lgcvd.<field>` = JSON, so the graph hash covers them; a
manifest that disagrees with its graphs was edited, and is refused. A format-version-1 bundle,
written before, has none and loads; a version-2 one has all but the plan.

The plan (format 3, `plans.read_plan`): a distilled student's sampler, steps, exact timesteps and
teacher provenance; null for a model trained on the ordinary loss, which runs `plans.DEFAULT_PLAN`
unless told otherwise. Its sampler, steps and timesteps are bound: a student's graphs were trained
to jump between exactly those timesteps, so an edited plan would forecast worse without an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from lgcvd_runtime.checks import is_whole, refuse_unknown_fields
from lgcvd_runtime.errors import BundleError
from lgcvd_runtime.files import write_then_rename
from lgcvd_runtime.framing import Framing
from lgcvd_runtime.layout import ModelSpec
from lgcvd_runtime.plans import PlanError, SamplerPlan, read_plan
from lgcvd_runtime.schedule import ScheduleSpec

FORMAT = "lgcvd-bundle"
# 1: the first format. 2: adds the optional fields of robot use and reliability (the model's
# frame period and frame fit, the maths fields bound to the graphs); a version-1 bundle still
# loads, read as having none of them. Raised once for all the changes that ship together.
# 3: adds the plan a distilled student was made for ("plan", bound); 1 and 2 load with none.
FORMAT_VERSION = 3
MANIFEST = "manifest.json"
BATCH = "batch"  # symbolic batch dimension
BOUND = "lgcvd."  # key prefix of the bound fields in a graph's metadata
FIRST_BOUND_VERSION = 2  # the format version from which graphs must record them
PLAN_VERSION = 3  # the format version from which a manifest has a plan (null or a record)
PLAN = "plan"  # its key in the manifest and, after the prefix, in the graphs' metadata


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32" | "float16"
    shape: tuple  # ints and the symbolic "batch"

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        shape = tuple(d["shape"])
        if not (isinstance(d["name"], str) and isinstance(d["dtype"], str)):
            raise ValueError(
                f"tensor name and dtype must be text, got {d['name']!r}, {d['dtype']!r}"
            )
        if not all(n == BATCH or is_whole(n) and n >= 1 for n in shape):
            raise ValueError(f"{d['name']} has shape {list(shape)}: not sizes or {BATCH!r}")
        return cls(d["name"], d["dtype"], shape)


@dataclass(frozen=True)
class GraphSpec:
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> GraphSpec:
        return cls(
            d["file"],
            d["sha256"],
            tuple(TensorSpec.from_dict(t) for t in d["inputs"]),
            tuple(TensorSpec.from_dict(t) for t in d["outputs"]),
        )


def graph_io(spec: ModelSpec, context_shapes: list[tuple[int, ...]], dtype: str = "float32"):
    """The I/O of both graphs: (context inputs, context outputs, denoiser inputs, denoiser outputs).

    `context_shapes`: per context tensor its shape without batch, e.g. (heads, Lz, d) for each
    cross-attention K and V, in order. Graph inputs and outputs are float32 unless `dtype` says.
    """
    h = w = spec.image_size
    window = (BATCH, spec.window_channels, h, w)
    ctx = tuple(
        TensorSpec(f"ctx_{'kv'[i % 2]}{i // 2}", dtype, (BATCH, *s))
        for i, s in enumerate(context_shapes)
    )
    cond = (BATCH, spec.cond_channels, h, w)
    ctx_in = (TensorSpec("prev", dtype, window),)
    den_in = (
        TensorSpec("x_t", dtype, window),
        TensorSpec("t", "float32", (BATCH,)),
        TensorSpec("cond", dtype, cond),
        *ctx,
    )
    den_out = (TensorSpec("out", dtype, window),)
    return ctx_in, ctx, den_in, den_out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    model: ModelSpec
    schedule: ScheduleSpec
    precision: str  # "fp32" | "fp16"
    max_batch: int
    graphs: dict  # name ("context", "denoiser") -> GraphSpec
    provenance: dict
    format_version: int = FORMAT_VERSION
    ood: dict | None = None  # optional: the input score's calibration (lgcvd_runtime.ood)
    framing: Framing = Framing()  # period, fit and region of the model's frames (format 2)
    plan: SamplerPlan | None = None  # the plan a distilled student was made for (format 3)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "model": asdict(self.model),
            "schedule": self.schedule.to_dict(),
            "precision": self.precision,
            "max_batch": self.max_batch,
            "graphs": {k: g.to_dict() for k, g in self.graphs.items()},
            "provenance": self.provenance,
            **({"ood": self.ood} if self.ood is not None else {}),
            "framing": self.framing.to_dict(),
            PLAN: None if self.plan is None else self.plan.to_record(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        """The manifest `d`; PlanError for a plan that cannot run, or one in a format before 3."""
        schedule = ScheduleSpec.from_dict(d["schedule"])
        version = int(d["format_version"])
        if d.get(PLAN) is not None and version < PLAN_VERSION:
            raise PlanError(f"format version {version} has no plan, {PLAN_VERSION} does")
        return cls(
            model=ModelSpec(**d["model"]),
            schedule=schedule,
            precision=d["precision"],
            max_batch=int(d["max_batch"]),
            graphs={k: GraphSpec.from_dict(g) for k, g in d["graphs"].items()},
            provenance=d.get("provenance", {}),
            format_version=version,
            ood=d.get("ood"),
            framing=Framing.from_dict(d.get("framing")),
            plan=read_plan(d.get(PLAN), schedule.T),
        )


def write_manifest(directory: Path, manifest: Manifest) -> None:
    text = json.dumps(manifest.to_dict(), indent=2, sort_keys=False) + "\n"
    with write_then_rename(directory / MANIFEST) as tmp:  # a reader never sees half a manifest
        tmp.write_text(text)


def load_manifest(path: Path, verify: bool = True) -> Manifest:
    """Read and check `path/manifest.json`; unless told not to, verify each graph's sha256 and
    that the graphs' bound fields agree with the manifest (`check_bound_fields`)."""
    path = Path(path)
    mf = path / MANIFEST
    if not path.is_dir():
        raise BundleError(
            f"{path}: no such bundle directory; pass a NAME.lgcvd folder from lgcvd-export"
        )
    if not mf.is_file():
        raise BundleError(f"{path}: no {MANIFEST}; the bundle is incomplete, export it again")
    try:
        raw = json.loads(mf.read_text())
        if not isinstance(raw, dict):
            raise BundleError(
                f"{mf}: not an lgcvd bundle manifest (a JSON {type(raw).__name__}, not an "
                "object); export the bundle again"
            )
        if raw.get("format") != FORMAT:
            raise BundleError(
                f"{mf}: not an lgcvd bundle manifest (format {raw.get('format')!r}); "
                "pass a NAME.lgcvd folder made by lgcvd-export"
            )
        version = int(raw["format_version"])
        if version > FORMAT_VERSION:
            raise BundleError(
                f"{path}: bundle format version {version} is newer than this runtime's "
                f"({FORMAT_VERSION}); upgrade lgcvd"
            )
        refuse_unknown_fields(path, "the bundle's model", ModelSpec, raw["model"], BundleError)
        manifest = Manifest.from_dict(raw)
    except PlanError as e:
        raise BundleError(f"{mf}: bad plan ({e}); export the bundle again") from None
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        raise BundleError(f"{mf}: corrupt manifest ({e}); export the bundle again") from None
    for name in required_graphs(manifest):
        if name not in manifest.graphs:
            raise BundleError(f"{mf}: manifest names no {name} graph; export the bundle again")
        if verify:
            verify_graph(path, manifest.graphs[name])
    if verify:
        check_bound_fields(path, manifest)
    return manifest


def required_graphs(manifest: Manifest) -> tuple[str, ...]:
    """A model without global context has no context graph: its denoiser reads no ctx_* input."""
    denoiser = manifest.graphs.get("denoiser")
    if denoiser is not None and not any(t.name.startswith("ctx_") for t in denoiser.inputs):
        return ("denoiser",)
    return ("context", "denoiser")


def verify_graph(path: Path, graph: GraphSpec) -> None:
    f = path / graph.file
    if not f.is_file():
        raise BundleError(f"{path}: missing graph file {graph.file}; export the bundle again")
    if sha256_file(f) != graph.sha256:
        raise BundleError(
            f"{f}: sha256 does not match the manifest (file changed or corrupt); export the bundle again"
        )


def bound_fields(
    model: ModelSpec,
    schedule: ScheduleSpec,
    precision: str,
    max_batch: int,
    plan: SamplerPlan | None,
) -> dict[str, str]:
    """What export writes into every graph's metadata (module header): `lgcvd.<manifest
    field>` -> the field's value as JSON, e.g. "lgcvd.schedule.T" -> "1000", "lgcvd.plan" ->
    the plan's sampler, steps and timesteps, or "null" for a model with no plan."""
    values = {
        **{f"model.{k}": v for k, v in asdict(model).items()},
        **{f"schedule.{k}": v for k, v in schedule.to_dict().items()},
        "precision": precision,
        "max_batch": max_batch,
        PLAN: None if plan is None else plan.bound(),
    }
    return {BOUND + k: json.dumps(v) for k, v in values.items()}


@cache
def _onnx_metadata_message() -> type:
    """A protobuf class for the one part of onnx.proto read here: ModelProto's
    `repeated StringStringEntryProto metadata_props = 14` (key = 1, value = 2). The graph and
    every other field of the file are skipped as unknown fields."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="lgcvd_onnx_meta.proto", package="lgcvd")
    entry = proto.message_type.add(name="Entry")
    for number, name in ((1, "key"), (2, "value")):
        entry.field.add(
            name=name, number=number, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL
        )
    model = proto.message_type.add(name="Model")
    model.field.add(
        name="metadata_props",
        number=14,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_REPEATED,
        type_name=".lgcvd.Entry",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("lgcvd.Model"))


def graph_metadata(file: Path) -> dict[str, str]:
    """The ONNX graph `file`'s metadata (`metadata_props`), key -> value."""
    model = _onnx_metadata_message()()
    try:
        model.ParseFromString(Path(file).read_bytes())
    except DecodeError:
        raise BundleError(f"{file}: not an ONNX graph; export the bundle again") from None
    return {p.key: p.value for p in model.metadata_props}


def check_bound_fields(path: Path, manifest: Manifest) -> None:
    """Refuse, in one line, a manifest whose bound fields differ from those its graphs record
    (module header), or a format-2 bundle whose graphs record none. Graphs before format 3
    record no plan."""
    m = manifest
    wanted = bound_fields(m.model, m.schedule, m.precision, m.max_batch, m.plan)
    if m.format_version < PLAN_VERSION:
        del wanted[BOUND + PLAN]
    for name in required_graphs(manifest):
        file = manifest.graphs[name].file
        meta = graph_metadata(path / file)
        if not any(key.startswith(BOUND) for key in meta):
            if manifest.format_version < FIRST_BOUND_VERSION:
                continue  # written before graphs recorded them
            raise BundleError(
                f"{path / file}: the graph records none of the manifest's bound fields, which "
                f"format version {manifest.format_version} requires; export the bundle again"
            )
        for key, value in wanted.items():
            recorded = meta.get(key)
            if recorded is None or json.loads(recorded) != json.loads(value):
                raise BundleError(
                    f"{path / MANIFEST}: {key.removeprefix(BOUND)} is {value} in the manifest "
                    f"but {recorded or 'absent'} in {file}; the manifest was edited, export the "
                    "bundle again"
                )
