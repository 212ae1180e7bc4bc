"""Soak tests: the library's live stream, the Triton server and the ROS 2 node held under load
for minutes, on loopback only, while the memory, threads and open files of the processes under
test are read from /proc (`make soak`; not part of `make test`).

    nice .venv/bin/python tools/soak.py --out soak_out     # live 10 min, Triton 5, ROS 2 5
    .venv/bin/python tools/soak.py --out o --scenario live --live-seconds 60 --warmup-s 15

Scenarios (tools/soaklib/scenarios.py): `live`, 2 cameras x 10 Hz of real BAIR clips pushed
into `model.live` (the process under test is the one that pushes); `triton`, several clients
against `lgcvd-serve local` (the server's process tree, and the clients' process); `ros2`, the
`lgcvd-ros2` node fed 2 camera topics x 10 Hz over DDS on loopback (the node). A run passes
if, after the warm-up, each process's RSS grew at most --max-growth-mb, no thread or fd was
left over, the forecast age's p99 stayed under its bound and nothing failed (soaklib/judge.py);
otherwise it exits 1 with one line. OUT gets soak.json (settings, machine, verdicts, series),
soak.png (memory and age over time), the load's logs and the exported model.

The model: without --bundle, a `tiny` random-weight bundle exported here (the runtime's work
per frame is what a soak exercises; the shipped model takes about a second per 2-camera
forecast on a shared 2-core CPU and cannot keep up with 10 Hz). Needs `make test`'s two
environments (.venv with torch to export and cyclonedds for ROS 2, .venv-serve for Triton).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from benchlib import random_checkpoint, sampler_option
from lgcvd_runtime.cli.options import count_option, path_option, positive_option
from lgcvd_runtime.errors import first_line
from soaklib import probe
from soaklib.judge import Limits, Sample, judge
from soaklib.report import machine, series, write_plot, write_record
from soaklib.scenarios import Live, Ros2, Triton

ROOT = Path(__file__).resolve().parents[1]
BAIR_REAL = ROOT.parent / "shared" / "data" / "bair-real"


def tiny_bundle(work: Path) -> Path:
    """work/tiny.lgcvd: the `tiny` preset with random weights, exported once and reused."""
    bundle = work / "tiny.lgcvd"
    if not bundle.exists():
        checkpoint = random_checkpoint("tiny", work / "tiny-run")
        export = Path(sys.executable).with_name("lgcvd-export")
        made = subprocess.run([export, checkpoint, "-o", bundle], capture_output=True, text=True)
        if made.returncode != 0:
            raise click.ClickException(f"lgcvd-export failed: {made.stderr.strip()}")
    return bundle


def watch(scenario) -> tuple[list[Sample], list[str]]:
    """Run a scenario; at each line its load prints, read the usage of its processes. Returns
    the samples and the names of the processes watched."""
    samples = []
    with scenario.running() as (load, pids):
        for line in load.stdout:
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            usage = {name: probe.usage(pid) for name, pid in pids.items()}
            samples.append(
                Sample(
                    event["t"],
                    usage,
                    event["ages"],
                    event["done"],
                    event["errors"],
                    event.get("skipped"),
                    event.get("first_error"),
                )
            )
    return samples, list(pids)


def soak(scenario, limits: Limits) -> dict:
    """One scenario's record: settings, verdict (with what its processes' exits said), series."""
    try:
        samples, targets = watch(scenario)
        verdict = judge(samples, targets, limits)
    except RuntimeError as err:  # a server that never became ready, a repository not made
        samples, targets = [], []
        verdict = {"passed": False, "problems": [first_line(err)]}
    verdict["problems"] += scenario.problems
    verdict["passed"] = not verdict["problems"]
    return {
        "settings": scenario.settings,
        "limits": vars(limits),
        "load": scenario.describe(verdict.get("done", 0)),
        "age_label": scenario.age_label,
        "verdict": verdict,
        "series": series(samples, targets),
    }


@click.command()
@path_option("--out", required=True, help="Folder for soak.json, soak.png, logs and the model.")
@click.option(
    "--scenario",
    "names",
    multiple=True,
    type=click.Choice(["live", "triton", "ros2"]),
    default=["live", "triton", "ros2"],
    show_default=True,
    help="Scenarios to run, one after the other (repeat the option).",
)
@path_option("--bundle", help="Bundle to soak [default: a tiny random-weight one, exported].")
@sampler_option("Sampler of the live stream and the server.")
@count_option("--steps", default=1, help="Sampler steps (1 keeps up with 2 cameras x 10 Hz).")
@positive_option("--live-seconds", default=600.0, help="Length of the live run.")
@count_option("--cameras", default=2, help="Cameras pushed into the live stream.")
@positive_option("--rate", default=10.0, help="Frames per second per camera.")
@positive_option("--triton-seconds", default=300.0, help="Length of the Triton run.")
@count_option("--clients", default=4, help="Concurrent Triton clients.")
@positive_option("--ros2-seconds", default=300.0, help="Length of the ROS 2 node's run.")
@positive_option("--warmup-s", default=60.0, help="Seconds at the start that are not judged.")
@positive_option("--max-growth-mb", default=5.0, help="Most RSS growth after the warm-up.")
@positive_option("--max-age-s", default=10.0, help="Bound of the live forecast age's p99.")
@positive_option("--max-latency-s", default=30.0, help="Bound of the Triton latency's p99.")
@path_option("--videos", default=BAIR_REAL, help="Folder of the real clip*.mkv to play.")
@click.option("--leak", is_flag=True, hidden=True, help="Live load keeps every frame (tests).")
def main(out, names, bundle, sampler, steps, **o):
    """Hold the live stream, the Triton server and the ROS 2 node under load, read the memory,
    threads and open files of the processes under test, and judge them; exit 1 with one line
    on failure."""
    out.mkdir(parents=True, exist_ok=True)
    videos = sorted(Path(o["videos"]).glob("clip*.mkv"))
    if not videos:
        raise click.ClickException(f"no clip*.mkv in {o['videos']}; pass --videos FOLDER")
    bundle = bundle or tiny_bundle(out)
    common = (bundle, sampler, steps)
    scenarios, limits = {}, {}
    if "live" in names:
        scenarios["live"] = Live(
            *common, o["live_seconds"], videos, out, o["cameras"], o["rate"], leak=o["leak"]
        )
        limits["live"] = Limits(o["warmup_s"], o["max_growth_mb"], o["max_age_s"])
    if "triton" in names:
        scenarios["triton"] = Triton(*common, o["triton_seconds"], videos, out, o["clients"])
        limits["triton"] = Limits(o["warmup_s"], o["max_growth_mb"], o["max_latency_s"])
    if "ros2" in names:
        scenarios["ros2"] = Ros2(*common, o["ros2_seconds"], videos, out, o["cameras"], o["rate"])
        limits["ros2"] = Limits(o["warmup_s"], o["max_growth_mb"], o["max_age_s"])
    start = machine()
    runs = {name: soak(s, limits[name]) for name, s in scenarios.items()}
    record = {"command": sys.argv, "machine": start, "loadavg_end": machine()["loadavg"]}
    write_record(out / "soak.json", {**record, "scenarios": runs})
    write_plot(out / "soak.png", runs, limits)
    problems = [f"{n}: {p}" for n, r in runs.items() for p in r["verdict"]["problems"]]
    if problems:
        raise click.ClickException("soak failed: " + "; ".join(problems))
    click.echo("; ".join(f"{n}: passed, {r['load']}" for n, r in runs.items()))


if __name__ == "__main__":
    main()
