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
knows more (the trainer's step, a bundle in place), `when_stopped(...)` from inside it.
Knows click and the runtime's errors and signals; nothing about models or engines.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from lgcvd_runtime.errors import LgcvdError
from lgcvd_runtime.signals import exit_code, sigterm_as_interrupt, stop_word

_TELL = "lgcvd.stopped"  # ctx.meta key (shared by a group and its subcommands)
HELP = {"help_option_names": ["-h", "--help"]}


def when_stopped(tell: Callable[[str], str]) -> None:
    """From inside a running command: a stop from now on prints `tell(word)`, word being
    "interrupted", "terminated" or "hung up" (`signals.stop_word`)."""
    click.get_current_context().meta[_TELL] = tell


def _run(ctx: click.Context, invoke: Callable[[], object], stopped: str, service: bool):
    """`invoke()` with the chassis's mapping of errors and stops."""
    try:
        with sigterm_as_interrupt():
            return invoke()
    except LgcvdError as err:
        raise click.ClickException(str(err)) from None
    except KeyboardInterrupt as err:
        if service:
            click.echo("stopped", err=True)
            return None
        tell = ctx.meta.pop(_TELL, lambda word: stopped.format(word=word))
        click.echo(tell(stop_word(err)), err=True)
        raise click.exceptions.Exit(exit_code(err)) from None


class Command(click.Command):
    """A batch command: runs to its end; `stopped` is what a stop before then prints."""

    service = False

    def __init__(self, *args, stopped: str = "{word}", **kwargs):
        kwargs.setdefault("context_settings", HELP)
        super().__init__(*args, **kwargs)
        self.stopped = stopped

    def invoke(self, ctx: click.Context):
        return _run(ctx, lambda: super(Command, self).invoke(ctx), self.stopped, self.service)


class Service(Command):
    """A long-running service (a server, a live loop): a requested stop is its normal end, so
    it prints "stopped" and exits 0."""

    service = True


class Group(click.Group):
    """Subcommands under one chassis; `stopped` is their stop line unless a subcommand is a
    `Service` or says otherwise (`when_stopped`)."""

    def __init__(self, *args, stopped: str = "{word}", **kwargs):
        kwargs.setdefault("context_settings", HELP)
        super().__init__(*args, **kwargs)
        self.stopped = stopped

    def invoke(self, ctx: click.Context):
        return _run(ctx, lambda: super(Group, self).invoke(ctx), self.stopped, False)
