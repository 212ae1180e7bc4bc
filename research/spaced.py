"""Run `lgcvd-eval` or `eval_tasks.py interpolation` on a timestep grid other than respace's:

    python research/spaced.py --spacing trailing eval --model m=BUNDLE --data D ... --steps 4
    python research/spaced.py --spacing trailing interpolation --data D ... --steps 4

Everything after the subcommand goes to that command unchanged; its --steps sets the grid's
length, and `schedule.spaced_timesteps` the grid (the runtime has no spacing option yet). It works
by replacing `respace` where the plan is built (`lgcvd_runtime.plans`) in this process, so
every model run on evenly spaced steps (`api.load`, or a checkpoint in `lgcvd-eval`) samples on
the grid; the run fails if no model was loaded that way. Research only: it knows the
runtime's internals and nothing in lgcvd imports it.
"""

from __future__ import annotations

import click
import numpy as np

import lgcvd_runtime.plans as plans
from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.schedule import SPACINGS, Plan, ScheduleSpec, plan_at, spaced_timesteps


def use_spacing(spacing: str) -> list[Plan]:
    """Make `api.load` build its plan on `spacing`; returns the list of the plans it built."""
    built: list[Plan] = []

    def spaced(spec: ScheduleSpec, steps: int) -> Plan:
        built.append(plan_at(spec, spaced_timesteps(spec, steps, spacing)))
        return built[-1]

    plans.respace = spaced  # the only caller: `plans.SamplerPlan.over`
    return built


def run_command(name: str, args: list[str]) -> None:
    """The named command's body with its own options (standalone: it exits with its code)."""
    if name == "eval":
        from lgcvd_train.evaluate import main as command

        command.main(args=args, prog_name="lgcvd-eval", standalone_mode=False)
    else:
        from eval_tasks import main as group

        group.main(args=[name, *args], prog_name="eval_tasks.py", standalone_mode=False)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--spacing", type=click.Choice(SPACINGS), required=True, help="Timestep grid.")
@click.argument("command", type=click.Choice(["eval", "interpolation"]))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def main(spacing: str, command: str, args: tuple[str, ...]) -> None:
    """Run COMMAND (lgcvd-eval, or eval_tasks.py interpolation) on the --spacing grid."""
    built = use_spacing(spacing)
    run_command(command, list(args))
    if not built:
        raise LgcvdError("api.load no longer builds its plan with respace; update spaced.py")
    grids = {tuple(np.asarray(p.timesteps).tolist()) for p in built}
    click.echo(f"{spacing} grid(s) used: {sorted(grids)}", err=True)


if __name__ == "__main__":
    main()
