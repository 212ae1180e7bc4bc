"""A gRPC client of an lgcvd Triton server, with the library's `predict` shape.

    client = TritonClient("localhost:8001")
    for window in client.predict(frames, 6, seed=0):         # like model.predict(frames, 6, seed=0)
        use(window.start, window.frames)                     # (samples, F, size, size, 3) uint8
    client.predict([front, left], 6, seed=[1, 2])            # (2, samples, F, ...): one camera each

The server (a repository from `lgcvd-serve triton-repo`) runs the runtime's own Pipeline, so for
the same seed the frames equal the library's with the server's sampler and steps. Each clip is
one request; the clips of one call are sent at once, so Triton batches them (and other clients')
in the denoiser. Seeds follow the library's rule (`pipeline.clip_seeds`): one for all clips, one per
clip, or drawn from the client's own generator. The windows carry the server's input score
(`ood`) as the library's do, and `input_warning` words it against the served bundle's
calibration. `tritonclient[grpc]` is imported here only, when a client is built
(`pip install 'lgcvd[serve]'`).
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator

import numpy as np

from lgcvd_runtime.api import PredictedWindow, Seed
from lgcvd_runtime.checks import check_frames, is_clip_list
from lgcvd_runtime.errors import BackendError, LgcvdError
from lgcvd_runtime.ood import Calibration, input_warning
from lgcvd_runtime.pipeline import clip_seeds
from lgcvd_runtime.serve.configs import (
    OOD_PARAMETER,
    PIPELINE_MODEL,
    REQUEST_FRAMES,
    REQUEST_N,
    REQUEST_SAMPLES,
    REQUEST_SEED,
    RESPONSE_FRAMES,
    RESPONSE_SCORE,
    RESPONSE_STARTS,
)

INSTALL = "pip install 'lgcvd[serve]'"


def _grpc():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise BackendError(f"tritonclient is not installed; {INSTALL}") from None
    return grpcclient


class TritonClient:
    """Connects to the `lgcvd` model at `url` (HOST:PORT of Triton's gRPC endpoint). `seed`
    seeds the generator that draws the seeds of calls given none, as `lgcvd_runtime.load`'s."""

    def __init__(self, url: str, seed: int | None = None, timeout: float = 600.0):
        grpcclient = _grpc()
        self.url, self.timeout = url, timeout
        self.rng = np.random.default_rng(seed)
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url)
        try:
            ready = self._client.is_model_ready(PIPELINE_MODEL)
        except Exception as err:  # tritonclient raises its own exception for any transport error
            raise BackendError(
                f"no Triton server answers at {url} ({_message(err)}); start one (docs/serving.md) "
                "or check HOST:PORT (Triton's gRPC port, 8001 by default)"
            ) from None
        if not ready:
            raise BackendError(
                f"the Triton server at {url} has no ready {PIPELINE_MODEL!r} model; serve a "
                "repository made by lgcvd-serve triton-repo"
            )
        config = self._client.get_model_config(PIPELINE_MODEL, as_json=True)["config"]
        # sampler, steps, image_size: what the server was generated with
        self.settings = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        record = self.settings.get(OOD_PARAMETER)  # the served bundle's calibration, if any
        declared = {output["name"] for output in config.get("output", [])}
        self._outputs = [
            x for x in (RESPONSE_FRAMES, RESPONSE_STARTS, RESPONSE_SCORE) if x in declared
        ]  # a repository made before the score was served has no score output
        self.calibration = Calibration.of_record(json.loads(record) if record else None)

    @property
    def size(self) -> int:
        """Frame side of the served model (its forecasts are size x size)."""
        return int(self.settings["image_size"])

    def input_warning(self, score: float | None) -> str | None:
        """The one-line warning for a score beyond the served bundle's calibrated range (as
        `api.Model.input_warning`), else None."""
        return input_warning(self.calibration, score)

    def _inputs(self, clip: np.ndarray, n: int, seed: int, samples: int) -> list:
        g = self._grpc
        arrays = (
            (REQUEST_FRAMES, np.ascontiguousarray(clip), "UINT8"),
            (REQUEST_N, np.array([n], dtype=np.int32), "INT32"),
            (REQUEST_SEED, np.array([seed], dtype=np.int64), "INT64"),
            (REQUEST_SAMPLES, np.array([samples], dtype=np.int32), "INT32"),
        )
        inputs = []
        for name, array, dtype in arrays:
            tensor = g.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return inputs

    def _send(self, clips: list[np.ndarray], n: int, seeds: list[int], samples: int) -> list:
        """All requests at once; the responses in the order of `clips`."""
        answers: queue.Queue = queue.Queue()
        outputs = [self._grpc.InferRequestedOutput(x) for x in self._outputs]
        for i, (clip, seed) in enumerate(zip(clips, seeds, strict=True)):
            self._client.async_infer(
                PIPELINE_MODEL,
                self._inputs(clip, n, seed, samples),
                callback=lambda result, error, i=i: answers.put((i, result, error)),
                outputs=outputs,
                client_timeout=self.timeout,
            )
        results: list = [None] * len(clips)
        for _ in clips:
            i, result, error = answers.get()
            if error is not None:
                raise BackendError(
                    f"the Triton server at {self.url} refused clip {i}: {_message(error)}"
                )
            results[i] = result
        return results

    def predict(
        self, clips, n: int, samples: int = 1, seed: Seed = None
    ) -> Iterator[PredictedWindow]:
        """The n frames after each clip's p given frames, window by window, as
        `api.Model.predict`: one clip (p, H, W, 3) uint8 gives windows of (S, F, size, size, 3),
        a list of clips (one per camera, same p) windows of (C, S, F, size, size, 3)."""
        many = is_clip_list(clips)
        listed = [check_frames(c) for c in clips] if many else [check_frames(clips)]
        seeds = clip_seeds(seed, len(listed), self.rng)  # the library's seed rule
        results = self._send(listed, n, seeds, samples)
        frames = [r.as_numpy(RESPONSE_FRAMES) for r in results]  # each (S, n, size, size, 3)
        starts = [tuple(r.as_numpy(RESPONSE_STARTS).tolist()) for r in results]
        if len(set(starts)) > 1:
            raise LgcvdError(
                "the clips' windows start at different frames; give every camera as many frames"
            )
        stacked = np.stack(frames) if many else frames[0]
        scores = [_score(r.as_numpy(RESPONSE_SCORE)) for r in results]
        score = (np.array(scores) if many else scores[0]) if None not in scores else None
        return iter(_windows(stacked, list(starts[0]), axis=2 if many else 1, score=score))

    def batch_counts(self, model: str = "denoiser") -> dict[int, int]:
        """Triton's statistics of `model` since it loaded: batch size -> executions of that size
        (how well dynamic batching merges the clients' calls)."""
        stats = self._client.get_inference_statistics(model, as_json=True)
        batches = stats["model_stats"][0].get("batch_stats", [])
        return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in batches}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _windows(frames: np.ndarray, starts: list[int], axis: int, score=None) -> list[PredictedWindow]:
    """Split the predicted frames (along the frame `axis`) at the windows' first frames; every
    window carries the input `score`, as the library's do."""
    offsets = [s - starts[0] for s in starts]
    parts = np.split(frames, offsets[1:], axis=axis)
    return [
        PredictedWindow(i, s, p, score) for i, (s, p) in enumerate(zip(starts, parts, strict=True))
    ]


def _score(values: np.ndarray | None) -> float | None:
    """A response's input score: one value, or none (an uncalibrated bundle, or a server made
    before the score was served)."""
    return None if values is None or values.size == 0 else float(values.reshape(-1)[0])


def _message(err: Exception) -> str:
    text = err.message() if hasattr(err, "message") and callable(err.message) else str(err)
    return (text or type(err).__name__).strip().splitlines()[0]
