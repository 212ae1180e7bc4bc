"""Writing outputs so that nothing is lost: a reader sees the old file or the complete new one,
never a partial one, and nothing is overwritten without --force (docs/design.md, Conventions).

Every output, a file or a folder, is written under a temporary name beside its target, then
renamed. The temporary name is hidden (leading dot), unique, carries the writer's pid, and is
never longer than the file system's name limit, however long the target's name; the renamed file
gets the permissions the user's umask gives, as if it had been created under its own name (a
temporary file is often private). A temporary is abandoned, and may be deleted, only when the
process named in it no longer runs. This module knows nothing about what is written.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lgcvd_runtime.errors import OutputError, OutputExistsError
from lgcvd_runtime.signals import signals_deferred

NAME_MAX = 255  # bytes per file name where the file system does not say (ext4, xfs, btrfs, tmpfs)
_FILE_MODE, _DIR_MODE = 0o666, 0o777  # before the umask, as open() and mkdir() use them


def refuse_existing(path: Path, force: bool) -> None:
    """Raise OutputExistsError if `path` exists and `force` is not given."""
    if not force and Path(path).exists():
        raise OutputExistsError(f"{path} already exists; pass --force to overwrite it")


def file_in_the_way(path: Path) -> Path | None:
    """The file (not a directory) at `path` or above it, where directories must be; else None."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def _name_limit(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def temporary_path(path: Path) -> Path:
    """A fresh hidden name beside `path`: `.NAME.<pid>-<random>.tmp`, NAME shortened (at a
    character boundary) so that the whole name fits the folder's name limit."""
    path = Path(path)
    tag = f".{os.getpid()}-{secrets.token_hex(4)}.tmp"
    room = _name_limit(path.parent) - 1 - len(tag)
    stem = os.fsencode(path.name)[:room].decode("utf-8", "ignore")
    return path.with_name(f".{stem}{tag}")


def abandoned_temporaries(path: Path) -> list[Path]:
    """The temporary files and folders of `path` (`temporary_path`'s names) whose process no
    longer runs: what a SIGKILL or a power loss left behind."""
    path = Path(path)
    limit, found = _name_limit(path.parent), []
    for tmp in path.parent.glob(".*.tmp"):
        stem, _, tag = tmp.name[1:-4].rpartition(".")
        pid, _, token = tag.partition("-")
        shortened = len(os.fsencode(tmp.name)) > limit - 4 and path.name.startswith(stem)
        if not (pid.isdigit() and len(token) == 8 and (stem == path.name or shortened)):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            found.append(tmp)
        except PermissionError:  # another user's live process
            pass
    return sorted(found)


def remove_abandoned(path: Path) -> list[Path]:
    """Delete `abandoned_temporaries(path)`, files and folders; return what was deleted."""
    found = abandoned_temporaries(path)
    for left in found:
        if left.is_dir():
            shutil.rmtree(left, ignore_errors=True)
        else:
            left.unlink(missing_ok=True)
    return found


_CREATED: set[Path] = set()  # temporary files this process made and has not yet published


def create_temporary(path: Path) -> Path:
    """Create an empty temporary file beside `path` (see `temporary_path`) and return its name,
    first deleting what killed writers of `path` left (`remove_abandoned`); a folder that cannot
    be written is an OutputError. The name is registered before the file exists, so that a stop
    arriving before its writer owns it still finds it (`remove_temporaries`)."""
    remove_abandoned(path)
    while True:
        tmp = temporary_path(path)
        _CREATED.add(tmp)
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE))
            return tmp
        except FileExistsError:
            _CREATED.discard(tmp)
            continue
        except OSError as err:
            _CREATED.discard(tmp)
            raise OutputError(
                f"cannot write {path} ({err.strerror}); choose a folder you can write to"
            ) from None


def remove_temporaries() -> None:
    """Delete every temporary file this process made and did not publish: what a stop that came
    between a file's creation and its writer's `with` block would otherwise leave behind."""
    for tmp in list(_CREATED):
        tmp.unlink(missing_ok=True)
    _CREATED.clear()


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (threads may be
    creating files meanwhile), else by setting and restoring it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_umask_permissions(path: Path) -> None:
    """Set `path` (a file, or a folder and everything in it) to the mode it would have had if
    created under its final name: 0666 (files) or 0777 (folders) less the umask."""
    mask = _umask()
    path = Path(path)
    if path.is_dir():
        for folder, _, files in os.walk(path):
            os.chmod(folder, _DIR_MODE & ~mask)
            for name in files:
                os.chmod(os.path.join(folder, name), _FILE_MODE & ~mask)
    else:
        os.chmod(path, _FILE_MODE & ~mask)


def publish(tmp: Path, path: Path) -> None:
    """Give `tmp` the umask's permissions and rename it onto `path`."""
    give_umask_permissions(tmp)
    os.replace(tmp, path)
    _CREATED.discard(tmp)


@contextmanager
def write_then_rename(path: Path, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds, delete
    it if the block fails. With force=False an existing `path` is refused first."""
    path = Path(path)
    refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        yield tmp
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def move_into_place(new: Path, target: Path) -> None:
    """Rename the finished folder `new` to `target`; an old folder there is removed only
    afterwards. Ctrl-C and SIGTERM take effect after the renames, never between them."""
    with signals_deferred():
        if not target.exists():
            os.replace(new, target)
            return
        old = temporary_path(target)  # the old folder moves in here until the new one is in place
        old.mkdir()
        os.replace(target, old / target.name)
        try:
            os.replace(new, target)
        except BaseException:
            os.replace(old / target.name, target)
            raise
        finally:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def folder_then_rename(path: Path, force: bool = True) -> Iterator[Path]:
    """`write_then_rename` for a folder: yield a new empty temporary folder beside `path` (the
    umask's permissions, as if made under its own name); it replaces `path` if the block succeeds
    (`move_into_place`) and is deleted if the block fails or is interrupted."""
    path = Path(path)
    refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)  # within the name limit for any legal name
    tmp.mkdir()
    try:
        yield tmp
        move_into_place(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
