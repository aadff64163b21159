"""evals.io: the one atomic write, cache root and progress-bar factory."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from evals.io import (
    atomic_dir,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    cache_root,
    progress,
)


def test_atomic_write__replaces_whole_file_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]


def test_atomic_write__file_gets_umask_permissions_not_0600(tmp_path: Path):
    umask = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "x.bin", b"x")
    finally:
        os.umask(umask)
    assert (tmp_path / "x.bin").stat().st_mode & 0o777 == 0o644


def test_atomic_path__error_keeps_old_file_and_removes_temp(tmp_path: Path):
    target = tmp_path / "w.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of a new fi")  # the writer dies half-way
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_atomic_write__unserializable_json_writes_nothing(tmp_path: Path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir__whole_folder_or_nothing(tmp_path: Path):
    target = tmp_path / "judge"
    with atomic_dir(target) as tmp:
        (tmp / "cfg.json").write_text("{}")
    assert (target / "cfg.json").read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "cfg.json").write_text('{"new": 1}')
        raise RuntimeError("killed")
    assert (target / "cfg.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["judge"]


def test_cache_root__honours_env_var_else_home(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("TRUTHSTEER_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "truthsteer"
    monkeypatch.setenv("TRUTHSTEER_CACHE", "")  # empty counts as unset
    assert cache_root() == tmp_path / ".cache" / "truthsteer"


def test_progress__non_terminal_stream_gets_a_few_plain_lines(tmp_path: Path):
    log = io.StringIO()  # not a tty
    for _ in progress(range(1000), desc="judging", unit="ans", file=log):
        pass
    text = log.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert 1 <= len(lines) <= 3
    assert "1000/1000" in lines[-1] and "judging" in lines[-1]


def test_progress__manual_bar_and_disable(tmp_path: Path):
    log = io.StringIO()
    with progress(total=500, desc="cells", file=log) as bar:
        for _ in range(500):
            bar.update(1)
    assert len(log.getvalue().splitlines()) <= 3
    assert "500/500" in log.getvalue().splitlines()[-1]
    quiet = io.StringIO()
    for _ in progress(range(10), file=quiet, disable=True):
        pass
    assert quiet.getvalue() == ""


def test_progress__terminal_gets_ordinary_tqdm(tmp_path: Path):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    for _ in progress(range(3), file=tty, mininterval=0):
        pass
    assert "\r" in tty.getvalue()
