"""What every lgcvd command line shares: one click base that turns errors and stop signals into
one line and an exit code. `lgcvd-run`, `lgcvd-serve`, `lgcvd-train`, `lgcvd-export`,
`lgcvd-eval` and the scripts in tools/ and research/ are declared with `cls=Command` (one
command) or `cls=Group` (subcommands).

    user error (`LgcvdError`)                  "Error: <its one line>", exit 1, no traceback
    a batch command stopped before its end     one line, exit 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
    a service (`cls=Service`) asked to stop    "stopped", exit 0: stopping is how it ends

A command runs inside `signals.sigterm_as_interrupt()`, so SIGTERM and SIGHUP take the same
KeyboardInterrupt clean-up as Ctrl-C. What a stop tells the user is the command's: a format
string given at declaration (`stopped="{word}; no output was written"`), or, once the command
knows more (the trainer's step, a bundle in place), `when_stopped(...)` from inside it; a stop
that comes once the output is complete (`Finished`) or the command has returned exits 0.
Knows click and the runtime's errors and signals; nothing about models or engines.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.files import remove_temporaries
from lgcvd_runtime.signals import exit_code, ignore_stops, sigterm_as_interrupt, stop_word

_TELL = "lgcvd.stopped"  # ctx.meta key (shared by a group and its subcommands)
HELP = {"help_option_names": ["-h", "--help"]}


class Finished(str):
    """What a stop tells once the command's output is complete: a `when_stopped` line of this
    type is printed and the exit is 0, the work being done."""


def when_stopped(tell: Callable[[str], str]) -> None:
    """From inside a running command: a stop from now on prints `tell(word)`, word being
    "interrupted", "terminated" or "hung up" (`signals.stop_word`); a `Finished` line exits 0."""
    click.get_current_context().meta[_TELL] = tell


def _run(ctx: click.Context, invoke: Callable[[], object], stopped: str, service: bool):
    """`invoke()` with the chassis's mapping of errors and stops. Once it has returned, a
    process run from its command line ignores stops while it exits (`signals.ignore_stops`)."""
    done = False
    try:
        with sigterm_as_interrupt():
            result = invoke()
            done = True
            if getattr(ctx.find_root().command, "ends_process", False):
                ignore_stops()
            return result
    except LgcvdError as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt as err:
        if done:  # the stop came as the command returned: its work is complete
            return None
        remove_temporaries()  # any output not yet in its writer's hands
        if service:
            click.echo("stopped", err=True)
            return None
        tell = ctx.meta.pop(_TELL, lambda word: stopped.format(word=word))
        line = tell(stop_word(err))
        click.echo(line, err=True)
        if not isinstance(line, Finished):
            raise click.exceptions.Exit(exit_code(err)) from None


class _Chassis:
    """What commands and groups share: `stopped`, -h, and the mapping of `_run`."""

    service = False
    ends_process = False  # True once run as the process's command line (`__call__`)

    def __init__(self, *args, stopped: str = "{word}", **kwargs):
        kwargs.setdefault("context_settings", HELP)
        super().__init__(*args, **kwargs)
        self.stopped = stopped

    def __call__(self, *args, **kwargs):
        """The process's own command line (a console script, `python -m`); click's CliRunner
        calls `main` instead, and the process goes on."""
        self.ends_process = True
        return super().__call__(*args, **kwargs)

    def invoke(self, ctx: click.Context):
        return _run(ctx, lambda: super(_Chassis, self).invoke(ctx), self.stopped, self.service)


class Command(_Chassis, click.Command):
    """A batch command: runs to its end; `stopped` is what a stop before then prints."""


class Service(Command):
    """A long-running service (a server, a live loop): a requested stop is its normal end, so
    it prints "stopped" and exits 0."""

    service = True


class Group(_Chassis, click.Group):
    """Subcommands under one chassis; `stopped` is their stop line unless a subcommand is a
    `Service` or says otherwise (`when_stopped`)."""
