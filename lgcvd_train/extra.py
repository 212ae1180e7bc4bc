"""The `train` extra: in a runtime-only install (`pip install lgcvd`) `lgcvd-train` and
`lgcvd-export` say in one line which module is missing and how to install it, instead of a
ModuleNotFoundError traceback. Imports nothing the runtime does not have (click only)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

INSTALL = "pip install 'lgcvd[train]'"


@contextmanager
def train_extra(command: str) -> Iterator[None]:
    """Within the block, a third-party module that cannot be imported (every module training and
    export use beyond the runtime's belongs to the train extra) is a one-line click error."""
    try:
        yield
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0].startswith("lgcvd"):
            raise  # a module of lgcvd itself: a broken install, not a missing extra
        raise click.ClickException(
            f"{command} needs the Python package that provides '{e.name.split('.')[0]}', which "
            f"is not installed (a runtime-only install?); install the train extra: {INSTALL}"
        ) from None
