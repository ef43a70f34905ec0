"""Output files appear whole or not at all, with the permissions an ordinary write gives them,
and a failed write names the file the user asked for."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from qhytime.atomic import TMP_MARK, atomic_open, atomic_path, write_text_atomic
from qhytime.errors import OutputError


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_new_file_gets_the_umask_mode_and_a_replaced_file_keeps_its_own(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        assert mode(tmp_path / "a.txt") == 0o640  # 0o666 less the umask, as open() gives
        (tmp_path / "b.txt").write_text("old")
        (tmp_path / "b.txt").chmod(0o604)
        write_text_atomic(tmp_path / "b.txt", "new")
        assert mode(tmp_path / "b.txt") == 0o604 and (tmp_path / "b.txt").read_text() == "new"
    finally:
        os.umask(old)


def test_missing_folder_names_the_output(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "out.csv"
    with pytest.raises(OutputError, match=r"out\.csv: cannot write it: the folder does not exist"):
        write_text_atomic(target, "x")
    assert not target.parent.exists()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "keep.txt"
    out.write_text("complete old content")
    with pytest.raises(RuntimeError), atomic_open(out) as fh:
        fh.write("half of the new")
        raise RuntimeError("the writer failed half-way")
    assert out.read_text() == "complete old content"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_write_error_on_the_temporary_names_the_final_file(tmp_path: Path) -> None:
    out = tmp_path / "x.fits"
    with pytest.raises(OutputError, match=r"x\.fits: cannot write it: No space left") as info:
        with atomic_path(out) as tmp:
            assert TMP_MARK in tmp.name
            raise OSError(28, "No space left on device", str(tmp))
    assert TMP_MARK not in str(info.value) and not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_an_unrelated_os_error_passes_through(tmp_path: Path) -> None:
    """Reading a source inside the block can fail too: that is not a write error."""
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "o.txt"):
        open(tmp_path / "missing-source.fits", "rb")
    assert list(tmp_path.iterdir()) == []
