"""`lgcvd-serve`: serve a bundle on NVIDIA Triton Inference Server.

    lgcvd-serve triton-repo BUNDLE -o REPO [--graphs onnxruntime|tensorrt|python] ...
    lgcvd-serve local REPO                 # the nvidia-pytriton binary on this machine (CPU)

Errors and signals are the chassis's (`lgcvd_runtime.cli.chassis`): user errors end in one line
and exit 1; `local` is a service, so Ctrl-C or SIGTERM stops it with "stopped" and exit 0. No
Triton package is imported here; `local` needs the nvidia-pytriton wheel.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from lgcvd_runtime.cli.chassis import Group, Service
from lgcvd_runtime.cli.options import choice_option, count_option, path_option, sampler_options
from lgcvd_runtime.errors import LgcvdError

from .configs import GRAPH_BACKENDS, KINDS
from .repository import RepoOptions, write_repository

DEFAULTS = RepoOptions()


@click.group(cls=Group, stopped="{word}; no repository written")
@click.version_option(package_name="lgcvd")
def main() -> None:
    """Serve lgcvd bundles on NVIDIA Triton Inference Server."""


@main.command("triton-repo")
@click.argument("bundle", type=click.Path(path_type=Path))
@path_option("-o", "--out", required=True, help="Repository folder to write.")
@choice_option(
    "--graphs",
    choices=GRAPH_BACKENDS,
    default=DEFAULTS.graphs,
    help="Triton backend of the context and denoiser models; python runs the ONNX graphs on "
    "onnxruntime inside Triton's Python backend (all the nvidia-pytriton wheel can serve).",
)
@count_option(
    "--queue-delay-us",
    least=0,
    default=DEFAULTS.queue_delay_us,
    help="Dynamic batching: how long a graph call may wait for others to batch with.",
)
@count_option("--instances", default=DEFAULTS.graph_instances, help="Copies of each graph model.")
@choice_option(
    "--kind",
    choices=KINDS,
    default=DEFAULTS.kind,
    help="Where the graph models run (python graphs always run on the CPU).",
)
@count_option(
    "--pipelines",
    default=DEFAULTS.pipelines,
    help="Copies of the lgcvd model: how many requests run their windows at once.",
)
@count_option(
    "--max-frames",
    default=DEFAULTS.max_frames,
    help="The most frames (n x samples) one request may ask for; larger requests are refused.",
)
@sampler_options(" the server uses for every request")
@click.option("--force", is_flag=True, help="Replace an existing repository.")
def triton_repo(
    bundle,
    out,
    graphs,
    queue_delay_us,
    instances,
    kind,
    pipelines,
    max_frames,
    sampler,
    steps,
    spacing,
    force,
):
    """Write a Triton model repository for BUNDLE (a NAME.lgcvd folder)."""
    options = RepoOptions(
        graphs, queue_delay_us, instances, kind, pipelines, sampler, steps, max_frames, spacing
    )
    models = write_repository(bundle, out, options, force)
    click.echo(f"wrote {out} ({', '.join(models)}); see {out / 'README.md'} to start it")


@main.command(cls=Service)
@click.argument("repo", type=click.Path(path_type=Path))
@count_option("--grpc-port", most=65535, default=8001, help="gRPC port on 127.0.0.1.")
@count_option("--http-port", most=65535, default=8000, help="HTTP port on 127.0.0.1.")
def local(repo, grpc_port, http_port):
    """Serve REPO (made with --graphs python) with the nvidia-pytriton wheel's tritonserver on
    127.0.0.1, CPU only, until Ctrl-C or SIGTERM (then exit 0)."""
    from .local_server import LocalServer

    with LocalServer(repo, grpc_port, http_port) as server:
        click.echo(f"ready: gRPC {server.grpc_url}, HTTP 127.0.0.1:{server.http_port}", err=True)
        while server.process.poll() is None:
            time.sleep(0.5)
        raise LgcvdError(
            f"tritonserver exited with code {server.process.returncode}: {server.log_tail()}"
        )
