"""Outputs appear whole or not at all, and are never overwritten without force."""

import pytest

from lgcvd_runtime.errors import OutputExistsError
from lgcvd_runtime.files import write_then_rename


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
