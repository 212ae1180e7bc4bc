"""Writing outputs so that nothing is lost: a reader sees the old file or the complete new one,
never a partial one, and nothing is overwritten without --force (style.md 14)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError


def refuse_existing(path: Path, force: bool) -> None:
    """Raise OutputExistsError if `path` exists and `force` is not given."""
    if not force and Path(path).exists():
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")


@contextmanager
def write_then_rename(path: Path, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds, delete
    it if the block fails. With force=False an existing `path` is refused first."""
    path = Path(path)
    refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
