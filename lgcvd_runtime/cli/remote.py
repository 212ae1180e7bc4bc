"""`lgcvd-run predict --server HOST:PORT`: a Triton server made with `lgcvd-serve` in the place
of a loaded model (docs/serving.md).

The server runs the windows with its own bundle, sampler and steps, so the command line keeps
only what the server does not do: reading the input, the output, the seed. `server_options`
alone refuses what does not go with the choice: options that choose a local model with --server
(rather than silently ignoring them), --timeout and --retries (the client's, `serve.client` says
when a request is tried again) without it. The client checks the seed as the library does,
before it connects.
`tritonclient` (the `serve` extra) is imported only when a server is used (`client.TritonClient`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import click
import numpy as np
from click.core import ParameterSource

from lgcvd_runtime.cli.options import count_option, model_options, positive_option
from lgcvd_runtime.serve.configs import DEFAULT_RETRIES, DEFAULT_TIMEOUT


@dataclass(frozen=True)
class Remote:
    """The server a command was pointed at, and how patiently to call it."""

    url: str  # HOST:PORT of Triton's gRPC endpoint
    timeout: float  # seconds one request may take
    retries: int  # tries after the first for a call that finds no server


_SERVER_OPTIONS = (
    click.option(
        "--server",
        metavar="HOST:PORT",
        default=None,
        help="Predict on a Triton server made with lgcvd-serve (its gRPC port, e.g. "
        "localhost:8001) instead of a local bundle; the server's model, sampler and steps apply.",
    ),
    positive_option(
        "--timeout",
        metavar="SECONDS",
        default=DEFAULT_TIMEOUT,
        help="With --server: how long one request may take before it fails.",
    ),
    count_option(
        "--retries",
        least=0,
        default=DEFAULT_RETRIES,
        help="With --server: how often a request that finds no server (down, restarting) is "
        "sent again, 0.5 s, 1 s, 2 s, then 4 s apart; safe, as the seeds are fixed first.",
    ),
)


def server_options(command):
    """--server, --timeout and --retries; the command gets `server`, a `Remote` or None, once
    the options that do not go with it are refused (module header)."""

    @functools.wraps(command)
    def with_server(*args, server, timeout, retries, **kwargs):
        ctx = click.get_current_context()
        if server is None:
            _refuse_without_server(ctx)
        else:
            _refuse_local_options(ctx)
        remote = None if server is None else Remote(server, timeout, retries)
        return command(*args, server=remote, **kwargs)

    for option in reversed(_SERVER_OPTIONS):
        with_server = option(with_server)
    return with_server


def _refuse_without_server(ctx: click.Context) -> None:
    """A usage error naming --timeout / --retries given on the command line without --server."""
    given = [
        f"--{name}"
        for name in ("timeout", "retries")
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(f"{', '.join(given)} apply to --server only: drop them or add one")


def _local_options(command: click.Command) -> list[click.Parameter]:
    """The options of `command` that choose a local model: `model_options` but --seed (the
    server seeds its calls as a local model does)."""
    model = {p.name for p in click.command()(model_options(lambda **_: None)).params} - {"seed"}
    return [p for p in command.params if p.name in model]


def _refuse_local_options(ctx: click.Context) -> None:
    """A usage error naming the local-model options given on the command line with --server."""
    given = [
        param.opts[0]
        for param in _local_options(ctx.command)
        if ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"{', '.join(given)} choose a local model; with --server the server's model, "
            "sampler and steps apply: drop them"
        )


class Served:
    """The server behind `url`, with the `size` and `predict` a command uses of a model."""

    def __init__(self, remote: Remote, seed: int | None, quiet: bool):
        from lgcvd_runtime.serve.client import TritonClient

        # checks `seed` and seeds its calls as `api.load(seed=...)` does
        self.client = TritonClient(remote.url, seed, remote.timeout, remote.retries)
        if not quiet:
            sampler, steps = (self.client.settings.get(k, "?") for k in ("sampler", "steps"))
            click.echo(f"server: {remote.url} ({sampler}, {steps} steps)", err=True)

    @property
    def size(self) -> int:
        return self.client.size

    def predict(self, given: np.ndarray, n: int, samples: int, times=None):
        """The server's windows; `times` is unused: a served model's period is not known here."""
        return self.client.predict(given, n, samples)

    def input_warning(self, score: float | None) -> str | None:
        return self.client.input_warning(score)


def window_spec(model):
    """The window rule's model spec for a timeline: the bundle's, or None with a server (which
    applies the rule itself; the timeline then only collects the frames it returns)."""
    return None if isinstance(model, Served) else model.manifest.model
