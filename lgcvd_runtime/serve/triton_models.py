"""The models that run inside Triton's Python backend (the generated model.py files import them).

- `PipelineModel` (the `lgcvd` model): one request = one clip. It runs the runtime's own
  `api.Model` / `Pipeline` on a `BlsBackend`, whose `encode` and `denoise` are BLS requests to the
  `context` and `denoiser` models; so Triton's dynamic batcher merges the denoiser calls of all
  requests in flight, and there is no second copy of window, fitting or sampler logic here.
- `GraphModel` (`--graphs python`): one ONNX graph on onnxruntime; it concatenates the requests
  Triton batched along the batch axis, runs once and splits the outputs back.

`triton_python_backend_utils` exists only inside Triton, so it is imported when a model starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lgcvd_runtime import api
from lgcvd_runtime.backends.base import GraphCallBackend
from lgcvd_runtime.backends.graph_io import prepare_inputs
from lgcvd_runtime.bundle import Manifest, load_manifest, sha256_file
from lgcvd_runtime.errors import BackendError, LgcvdError
from lgcvd_runtime.pipeline import Pipeline, SamplerSettings

from . import configs as wire  # the request and response names the client uses too
from .configs import triton_dims


def _pb():
    import triton_python_backend_utils as pb_utils

    return pb_utils


def _parameters(config: dict) -> dict[str, str]:
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def _model_folder(args: dict) -> Path:
    return Path(args["model_repository"]) / args["model_version"]


def _error_response(pb, err: Exception):
    message = str(err) if isinstance(err, LgcvdError) else f"{type(err).__name__}: {err}"
    return pb.InferenceResponse(error=pb.TritonError(message))


class BlsBackend(GraphCallBackend):
    """The pipeline's backend protocol as BLS requests to the graph models of this repository.
    Arrays are checked and cast against the manifest like every backend's (`prepare_inputs`)."""

    name = "triton-bls"

    def __init__(self, manifest: Manifest, graphs: tuple[str, ...]):
        super().__init__(graphs)
        self.manifest = manifest
        self._pb = _pb()

    def _run(self, model: str, arrays) -> list[np.ndarray]:
        pb, graph = self._pb, self.manifest.graphs[model]
        feeds = prepare_inputs(graph, arrays, self.manifest.max_batch)
        inputs = [
            pb.Tensor(s.name, feeds[s.name].reshape(len(feeds[s.name]), *triton_dims(s)))
            for s in graph.inputs
        ]
        request = pb.InferenceRequest(
            model_name=model,
            inputs=inputs,
            requested_output_names=[t.name for t in graph.outputs],
            preferred_memory=pb.PreferredMemory(pb.TRITONSERVER_MEMORY_CPU, 0),
        )
        response = request.exec()
        if response.has_error():
            raise BackendError(f"Triton model {model} failed: {response.error().message()}")
        return [
            np.array(pb.get_output_tensor_by_name(response, t.name).as_numpy())
            for t in graph.outputs
        ]

    def close(self) -> None:
        """Nothing to release: the graph models belong to the server."""


def _scalar(pb, request, name: str, default: int = 1) -> int:
    """One int input; `default` where an optional input was left out (Triton itself refuses a
    request that lacks a required one)."""
    tensor = pb.get_input_tensor_by_name(request, name)
    return default if tensor is None else int(tensor.as_numpy().reshape(-1)[0])


class PipelineModel:
    """The `lgcvd` model: requests (frames, n, seed[, samples]) -> (predicted, starts,
    input_score), the score as the library's results carry it (none if uncalibrated).

    What reaches `execute` has the config's dtypes and ranks (Triton refuses others before);
    the rest is checked here or by the library: a bad request gets its one-line error and the
    instance serves the next one."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = _parameters(config)
        folder = _model_folder(args)
        manifest = load_manifest(folder, verify=False)  # the graph models hold the graphs
        graphs = tuple(params["graphs"].split(","))
        # the repository's plan: the bundle's own, whose timesteps only the manifest holds
        spacing = params.get("spacing") or None  # none: the recorded timesteps (or older repos)
        plan = api.plan_of(manifest, params["sampler"], int(params["steps"]), spacing)
        settings = SamplerSettings(plan.plan.over(manifest.schedule), plan.plan.sampler)
        self.max_frames = int(params.get(wire.MAX_FRAMES_PARAMETER, wire.DEFAULT_MAX_FRAMES))
        self.backend = BlsBackend(manifest, graphs)
        pipeline = Pipeline(self.backend, manifest.model, settings, manifest.max_batch)
        self.model = api.Model(folder, manifest, self.backend, pipeline, None, plan)

    def _forecast(self, pb, request):
        frames = pb.get_input_tensor_by_name(request, wire.REQUEST_FRAMES).as_numpy()
        n = _scalar(pb, request, wire.REQUEST_N)
        seed = _scalar(pb, request, wire.REQUEST_SEED)
        samples = _scalar(pb, request, wire.REQUEST_SAMPLES)
        if refusal := wire.frames_limit_error(n, samples, self.max_frames):
            raise LgcvdError(refusal)  # before a huge n holds this instance for hours
        windows = list(self.model.predict(frames, n, samples, seed=seed))
        predicted = np.concatenate([w.frames for w in windows], axis=1)
        starts = np.array([w.start for w in windows], dtype=np.int32)
        score = windows[0].input_score  # None where the bundle is not calibrated
        scores = np.array([] if score is None else [score], dtype=np.float64)
        return pb.InferenceResponse(
            output_tensors=[
                pb.Tensor(wire.RESPONSE_FRAMES, np.ascontiguousarray(predicted)),
                pb.Tensor(wire.RESPONSE_STARTS, starts),
                pb.Tensor(wire.RESPONSE_SCORE, scores),
            ]
        )

    def execute(self, requests):
        pb = _pb()
        responses = []
        for request in requests:
            try:
                responses.append(self._forecast(pb, request))
            except Exception as err:  # every failure goes back to its client, as one line
                responses.append(_error_response(pb, err))
        return responses

    def finalize(self) -> None:
        self.backend.close()


def _to_rank(array: np.ndarray, rank: int) -> np.ndarray:
    """A batch-only tensor travels as (B, 1) (configs.triton_dims); the graph takes (B,)."""
    return array.reshape(len(array)) if rank == 1 else array


class GraphModel:
    """One graph on onnxruntime's CPU provider; the batch of all requests Triton merged runs as
    one call. The ONNX file's sha256 must be the manifest's (a config parameter)."""

    def initialize(self, args: dict) -> None:
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        params = _parameters(config)
        path = _model_folder(args) / params["onnx_file"]
        if sha256_file(path) != params["sha256"]:
            raise BackendError(
                f"{path}: sha256 does not match the bundle's; generate the repository again"
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.ranks = {i.name: len(i.shape) for i in self.session.get_inputs()}
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        pb = _pb()
        try:
            per_request = [
                {name: pb.get_input_tensor_by_name(r, name).as_numpy() for name in self.ranks}
                for r in requests
            ]
            sizes = [len(next(iter(arrays.values()))) for arrays in per_request]
            feeds = {
                name: _to_rank(np.concatenate([a[name] for a in per_request]), rank)
                for name, rank in self.ranks.items()
            }
            outs = self.session.run(self.outputs, feeds)
        except Exception as err:
            return [_error_response(pb, err) for _ in requests]
        cuts = np.cumsum(sizes)[:-1]
        parts = [np.split(out, cuts) for out in outs]
        return [
            pb.InferenceResponse(
                output_tensors=[
                    pb.Tensor(name, p[i]) for name, p in zip(self.outputs, parts, strict=True)
                ]
            )
            for i in range(len(requests))
        ]
