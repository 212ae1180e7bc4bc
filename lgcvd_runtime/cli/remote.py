"""`lgcvd-run predict --server HOST:PORT`: a Triton server made with `lgcvd-serve` in the place
of a loaded model (docs/serving.md).

The server runs the windows with its own bundle, sampler and steps, so the command line keeps
only what the server does not do: reading the input, the output, the seed. Options that choose
a local model are refused with --server rather than silently ignored. `tritonclient` (the
`serve` extra) is imported only when a server is used (`client.TritonClient`).
"""

from __future__ import annotations

import click
import numpy as np
from click.core import ParameterSource

from lgcvd_runtime.cli.options import model_options
from lgcvd_runtime.pipeline import row_generators


def _local_options(command: click.Command) -> list[click.Parameter]:
    """The options of `command` that choose a local model: `model_options` but --seed (the
    server seeds its calls as a local model does)."""
    model = {p.name for p in click.command()(model_options(lambda **_: None)).params} - {"seed"}
    return [p for p in command.params if p.name in model]


def refuse_local_options(ctx: click.Context) -> None:
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

    def __init__(self, url: str, seed: int | None, quiet: bool):
        from lgcvd_runtime.serve.client import TritonClient

        if seed is not None:
            row_generators(seed, 1)  # the seed rule's own check, before anything is sent
        self.client = TritonClient(url, seed)  # seeds its calls as `api.load(seed=...)` does
        if not quiet:
            sampler, steps = (self.client.settings.get(k, "?") for k in ("sampler", "steps"))
            click.echo(f"server: {url} ({sampler}, {steps} steps)", err=True)

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
