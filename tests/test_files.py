"""Outputs appear whole or not at all, and are never overwritten without force."""

import os
import stat

import pytest
from conftest import check_unwritable_folder_is_refused, dead_pid

from lgcvd_runtime.errors import OutputExistsError
from lgcvd_runtime.files import (
    abandoned_temporaries,
    create_temporary,
    folder_then_rename,
    give_umask_permissions,
    remove_abandoned,
    temporary_path,
    write_then_rename,
)


def test_the_file_appears_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "sub" / "out.json"
    with write_then_rename(path) as tmp:
        tmp.write_text("new")
        assert tmp.parent == path.parent and not path.exists()
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_a_failing_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), write_then_rename(path) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_an_existing_file_is_replaced_only_with_force(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(OutputExistsError) as err, write_then_rename(path, force=False):
        pass
    assert str(err.value) == f"{path} already exists; pass --force to overwrite it"
    with write_then_rename(path, force=True) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new"


def test_temporary_names_fit_the_name_limit_and_cut_at_a_character(tmp_path):
    for name in ["a" * 254, "é" * 127, "clip.mkv", "ü" * 100 + "x" * 55]:
        tmp = temporary_path(tmp_path / name)
        encoded = os.fsencode(tmp.name)
        assert len(encoded) <= 255 and tmp.parent == tmp_path
        assert tmp.name.startswith(".") and tmp.name.endswith(".tmp")
        encoded.decode("utf-8")  # no character cut in half
    assert temporary_path(tmp_path / "x") != temporary_path(tmp_path / "x")


def test_a_long_output_name_is_written_and_leaves_no_temporary(tmp_path):
    path = tmp_path / ("n" * 250 + ".npy")  # 254 bytes: legal, one under the limit
    with write_then_rename(path) as tmp:
        tmp.write_bytes(b"data")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_private_temporary_file_gets_the_umask_permissions_once_renamed(tmp_path, umask):
    path = tmp_path / "weights.bin"
    old = os.umask(umask)
    try:
        with write_then_rename(path) as tmp:
            os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))  # as mkstemp would
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_folder_gets_the_umask_permissions_throughout(tmp_path):
    folder = tmp_path / "bundle"
    (folder / "engines").mkdir(parents=True, mode=0o700)
    (folder / "engines" / "a.plan").write_bytes(b"x")
    os.chmod(folder / "engines" / "a.plan", 0o600)
    old = os.umask(0o002)
    try:
        give_umask_permissions(folder)
    finally:
        os.umask(old)
    assert stat.S_IMODE((folder / "engines").stat().st_mode) == 0o775
    assert stat.S_IMODE((folder / "engines" / "a.plan").stat().st_mode) == 0o664


def test_create_temporary_in_a_folder_that_cannot_be_written_is_one_line_error(tmp_path):
    check_unwritable_folder_is_refused(create_temporary, tmp_path)


def test_temporaries_of_processes_that_no_longer_run_are_found_and_only_they(tmp_path):
    target = tmp_path / "m.lgcvd"
    dead = tmp_path / f".m.lgcvd.{dead_pid()}-0123abcd.tmp"
    alive = tmp_path / f".m.lgcvd.{os.getpid()}-0123abcd.tmp"
    other = tmp_path / f".other.lgcvd.{dead_pid()}-0123abcd.tmp"  # another output's
    longer = tmp_path / f".m.lgcvd2.{dead_pid()}-0123abcd.tmp"  # a name that only starts alike
    for folder in (dead, alive, other, longer):
        folder.mkdir()
    assert abandoned_temporaries(target) == [dead]
    long_target = tmp_path / ("n" * 250 + ".lgcvd")  # its temporary name is shortened
    cut = temporary_path(long_target)  # this process's name, given a dead pid of as many digits
    pid = next(p for p in iter(dead_pid, None) if len(str(p)) == len(str(os.getpid())))
    cut = cut.with_name(cut.name.replace(f".{os.getpid()}-", f".{pid}-"))
    cut.write_bytes(b"")
    assert abandoned_temporaries(long_target) == [cut]


def test_only_the_temporaries_of_processes_that_no_longer_run_are_removed(tmp_path):
    target = tmp_path / "m.lgcvd"
    dead_folder = tmp_path / f".m.lgcvd.{dead_pid()}-0123abcd.tmp"
    dead_file = tmp_path / f".m.lgcvd.{dead_pid()}-4567cdef.tmp"
    alive = tmp_path / f".m.lgcvd.{os.getpid()}-0123abcd.tmp"
    dead_folder.mkdir()
    (dead_folder / "denoiser.onnx").write_bytes(b"half")
    dead_file.write_bytes(b"half")
    alive.write_bytes(b"being written")
    assert remove_abandoned(target) == sorted([dead_folder, dead_file])
    assert [p.name for p in tmp_path.iterdir()] == [alive.name]


def test_a_folder_appears_whole_in_place_of_the_old_one_only_when_the_block_succeeds(tmp_path):
    path = tmp_path / "repo"
    with folder_then_rename(path) as tmp:
        (tmp / "a").write_text("first")
        assert tmp.parent == path.parent and not path.exists()
    with pytest.raises(OutputExistsError), folder_then_rename(path, force=False):
        pass
    with pytest.raises(KeyboardInterrupt), folder_then_rename(path) as tmp:
        (tmp / "b").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in path.iterdir()] == ["a"]
    with folder_then_rename(path) as tmp:
        (tmp / "b").write_text("second")
    assert [p.name for p in path.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temporary, no old folder left


def test_a_stop_before_a_writer_owns_its_temporary_file_leaves_nothing(tmp_path):
    """A stop that lands between a temporary file's creation and its writer's `with` block (seen
    under load: SIGTERM right after the file appeared) is cleaned up by the chassis."""
    import click
    from click.testing import CliRunner

    from lgcvd_runtime.cli.chassis import Command
    from lgcvd_runtime.files import create_temporary, publish

    @click.command(cls=Command, stopped="{word}; no output was written")
    def writes():
        publish(create_temporary(tmp_path / "done.mkv"), tmp_path / "done.mkv")
        create_temporary(tmp_path / "out.mkv")
        raise KeyboardInterrupt  # the stop, before any writer holds the file

    result = CliRunner().invoke(writes, [])
    assert result.exit_code == 130 and "interrupted; no output was written" in result.output
    assert os.listdir(tmp_path) == ["done.mkv"]  # the published file stays, the temporary goes
