"""A gRPC client of an lgcvd Triton server, with the library's `predict` shape.

    client = TritonClient("localhost:8001")
    for window in client.predict(frames, 6, seed=0):         # like model.predict(frames, 6, seed=0)
        use(window.start, window.frames)                     # (samples, F, size, size, 3) uint8
    client.predict([front, left], 6, seed=[1, 2])            # (2, samples, F, ...): one camera each

The server (a repository from `lgcvd-serve triton-repo`) runs the runtime's own Pipeline, so for
the same seed the frames equal the library's with the server's sampler and steps. Each clip is
one request; the clips of one call are sent at once, so Triton batches them (and other clients')
in the denoiser. Seeds follow the library's rule (`pipeline.clip_seeds`): one for all clips, one per
clip, or drawn from the client's own generator, each 0 <= seed < 2**63 (the request's int64).
The windows carry the server's input score (`ood`) as the library's do, and `input_warning`
words it against the served bundle's calibration. `tritonclient[grpc]` is imported here only,
when a client is built (`pip install 'lgcvd[serve]'`).

Faults: a request may take `timeout` seconds (the checks on connecting at most
`CONNECT_TIMEOUT`); a call that finds no server (refused or lost connection, gRPC UNAVAILABLE)
is tried again `retries` times on a new channel, 0.5 s, 1 s, 2 s, then 4 s apart. Repeating a
request that may have run is safe: the server keeps no state, a clip's forecast is a function
of its frames, n, samples and seed, and the seeds are fixed before the first try. A refusal or
a timeout is not retried (the same request would be refused again; a slow server would only get
more work). Bad arguments are refused here before anything is sent, and the server checks them
again for clients that are not this one. Every failure is one line naming the server's url.
"""

from __future__ import annotations

import json
import math
import queue
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from lgcvd_runtime.api import PredictedWindow, Seed
from lgcvd_runtime.checks import camera_clips, check_count, check_frames, is_whole
from lgcvd_runtime.errors import BackendError, LgcvdError, first_line, plural
from lgcvd_runtime.ood import Calibration, input_warning
from lgcvd_runtime.pipeline import check_seed, clip_seeds
from lgcvd_runtime.serve.configs import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    MAX_FRAMES_PARAMETER,
    OOD_PARAMETER,
    PIPELINE_MODEL,
    REQUEST_FRAMES,
    REQUEST_N,
    REQUEST_SAMPLES,
    REQUEST_SEED,
    RESPONSE_FRAMES,
    RESPONSE_SCORE,
    RESPONSE_STARTS,
    frames_limit_error,
)

INSTALL = "pip install 'lgcvd[serve]'"
CONNECT_TIMEOUT = 10.0  # seconds the readiness and config calls on connecting may take
BACKOFF = 0.5  # seconds before the first retry, doubled for each further one, up to 4
LOST = "StatusCode.UNAVAILABLE"  # gRPC's status for a refused, reset or closed connection
TIMED_OUT = "StatusCode.DEADLINE_EXCEEDED"
T = TypeVar("T")


def _grpc():
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        raise BackendError(f"tritonclient is not installed; {INSTALL}") from None
    return grpcclient


class TritonClient:
    """Connects to the `lgcvd` model at `url` (HOST:PORT of Triton's gRPC endpoint). `seed`
    seeds the generator that draws the seeds of calls given none, as `lgcvd_runtime.load`'s, and
    is checked as theirs, before connecting.
    `timeout`: seconds one request may take; `retries`: tries after the first for a call that
    finds no server (module header)."""

    def __init__(
        self,
        url: str,
        seed: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ):
        if seed is not None:
            check_seed(seed)
        _check_faults(timeout, retries)
        grpcclient = _grpc()
        self.url, self.timeout, self.retries = url, float(timeout), retries
        self.rng = np.random.default_rng(seed)
        self._grpc = grpcclient
        self._client = grpcclient.InferenceServerClient(url)
        try:
            ready, config = self._retried(self._describe)
        except grpcclient.InferenceServerException as err:
            raise BackendError(
                f"no Triton server answers at {url} ({_message(err)}); start one (docs/serving.md) "
                "or check HOST:PORT (Triton's gRPC port, 8001 by default)"
            ) from None
        if not ready:
            raise BackendError(
                f"the Triton server at {url} has no ready {PIPELINE_MODEL!r} model; serve a "
                "repository made by lgcvd-serve triton-repo"
            )
        # sampler, steps, image_size, max_frames: what the server was generated with
        self.settings = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        record = self.settings.get(OOD_PARAMETER)  # the served bundle's calibration, if any
        declared = {output["name"] for output in config.get("output", [])}
        self._outputs = [
            x for x in (RESPONSE_FRAMES, RESPONSE_STARTS, RESPONSE_SCORE) if x in declared
        ]  # a repository made before the score was served has no score output
        self.calibration = Calibration.of_record(json.loads(record) if record else None)

    def _describe(self) -> tuple[bool, dict]:
        """Whether the lgcvd model is ready, and its config (if it is)."""
        wait = min(self.timeout, CONNECT_TIMEOUT)
        if not self._client.is_model_ready(PIPELINE_MODEL, client_timeout=wait):
            return False, {}
        config = self._client.get_model_config(PIPELINE_MODEL, as_json=True, client_timeout=wait)
        return True, config["config"]

    def _retried(self, call: Callable[[], T]) -> T:
        """`call()`, tried again on a new channel while it finds no server (module header);
        `retries` counts the tries of the whole call, across outages."""
        attempt = 0
        while True:
            try:
                return call()
            except self._grpc.InferenceServerException as err:
                if _status(err) != LOST or attempt == self.retries:
                    raise
            attempt += 1
            time.sleep(min(BACKOFF * 2 ** (attempt - 1), 4.0))
            self._client.close()
            self._client = self._grpc.InferenceServerClient(self.url)

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

    def _round(self, requests: dict[int, list], results: list) -> None:
        """Send `requests` (clip index -> inputs) at once and put each answer in `results`; the
        answered leave `requests`. Raises a refusal at once, a lost connection after all
        answers are in."""
        answers: queue.Queue = queue.Queue()
        outputs = [self._grpc.InferRequestedOutput(x) for x in self._outputs]
        for i, inputs in requests.items():
            self._client.async_infer(
                PIPELINE_MODEL,
                inputs,
                callback=lambda result, error, i=i: answers.put((i, result, error)),
                outputs=outputs,
                client_timeout=self.timeout,
            )
        errors = {}
        for _ in range(len(requests)):
            i, result, error = answers.get()
            if error is None:
                results[i] = result
                del requests[i]
            else:
                errors[i] = error
        for i, error in sorted(errors.items()):
            if _status(error) not in (LOST, TIMED_OUT):
                raise BackendError(
                    f"the Triton server at {self.url} refused clip {i}: {_message(error)}"
                )
        if errors:
            raise min(errors.items())[1]

    def _send(self, clips: list[np.ndarray], n: int, seeds: list[int], samples: int) -> list:
        """All requests at once, those that found no server again (`retries`); the responses in
        the order of `clips`."""
        requests = {
            i: self._inputs(clip, n, seed, samples)
            for i, (clip, seed) in enumerate(zip(clips, seeds, strict=True))
        }
        results: list = [None] * len(clips)
        try:
            self._retried(lambda: self._round(requests, results))
        except self._grpc.InferenceServerException as err:
            raise BackendError(self._failure(err)) from None
        return results

    def _failure(self, err: Exception) -> str:
        """The one line for a request that timed out or found no server after every try."""
        if _status(err) == TIMED_OUT:
            return (
                f"the Triton server at {self.url} did not answer within {self.timeout:g} s; "
                "allow more time (--timeout) or ask for fewer frames"
            )
        tries = plural(self.retries + 1, "attempt")
        return (
            f"the Triton server at {self.url} is down or was lost ({_message(err)}; {tries}); "
            "check that it runs (docs/serving.md), or allow more --retries"
        )

    def predict(
        self, clips, n: int, samples: int = 1, seed: Seed = None
    ) -> Iterator[PredictedWindow]:
        """The n frames after each clip's p given frames, window by window, as
        `api.Model.predict`: one clip (p, H, W, 3) uint8 gives windows of (S, F, size, size, 3),
        a list of clips (one per camera, same p) windows of (C, S, F, size, size, 3)."""
        listed, many = camera_clips(clips, check_frames)  # the library's checks and words
        check_count("n", n)
        check_count("samples", samples)
        limit = int(self.settings.get(MAX_FRAMES_PARAMETER, DEFAULT_MAX_FRAMES))
        if refusal := frames_limit_error(n, samples, limit):
            raise LgcvdError(refusal)
        seeds = clip_seeds(seed, len(listed), self.rng)  # the library's seed rule
        results = self._send(listed, n, seeds, samples)
        frames = [r.as_numpy(RESPONSE_FRAMES) for r in results]  # each (S, n, size, size, 3)
        starts = results[0].as_numpy(RESPONSE_STARTS).tolist()  # alike: the clips' p are alike
        stacked = np.stack(frames) if many else frames[0]
        scores = [_score(r.as_numpy(RESPONSE_SCORE)) for r in results]
        score = (np.array(scores) if many else scores[0]) if None not in scores else None
        return iter(_windows(stacked, starts, axis=2 if many else 1, score=score))

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


def _check_faults(timeout: float, retries: int) -> None:
    """One-line errors for a timeout that is not a finite positive number of seconds, or a
    retry count that is not a whole number of at least 0."""
    number = isinstance(timeout, (int, float)) and not isinstance(timeout, bool)
    if not number or not 0 < timeout < math.inf:
        raise LgcvdError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not is_whole(retries) or retries < 0:
        raise LgcvdError(f"retries must be a whole number of at least 0, got {retries!r}")


def _status(err: Exception) -> str | None:
    """tritonclient's gRPC status of an error, e.g. "StatusCode.UNAVAILABLE"."""
    status = getattr(err, "status", None)
    return status() if callable(status) else None


def _message(err: Exception) -> str:
    text = err.message() if hasattr(err, "message") and callable(err.message) else None
    return first_line(err, text)
