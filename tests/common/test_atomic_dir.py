"""besa_common.fileio.atomic_dir: the one temporary-directory pattern (fill a sibling, swap it in)."""

import os

import pytest

from besa_common.fileio import atomic_dir


def _siblings(d):
    return sorted(p.name for p in d.parent.iterdir() if p != d)


def test_success_replaces_and_leaves_no_temp(tmp_path):
    out = tmp_path / "sub" / "model"
    with atomic_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".model.pid") and not out.exists()
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new" and _siblings(out) == []
    umask = os.umask(0)
    os.umask(umask)
    assert (out.stat().st_mode & 0o777) == 0o777 & ~umask  # an ordinary directory, not mkdtemp's 0700
    with atomic_dir(out) as tmp:  # an existing directory is replaced as a whole
        (tmp / "b.txt").write_text("newer")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and _siblings(out) == []


def test_failure_keeps_the_old_directory_and_removes_the_temp(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("killed midway")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and _siblings(out) == []
