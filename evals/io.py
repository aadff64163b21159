"""The project's one atomic write, one cache root and one progress-bar factory.

A leaf module (standard library only, plus tqdm imported lazily by :func:`progress`): every
package may import it (harness, dictionaries, evals, reports).

Atomic writes go to a temp name in the target's folder and are ``os.replace``'d onto the target
only when complete, so a reader sees the old file or the new one, never half of one; on error
the temp name is removed. Files get the permissions a plain ``open()`` would give them (0666
minus the umask), not the 0600 of ``tempfile.mkstemp``.

Progress bars: on a terminal, an ordinary tqdm bar. When the stream is not a terminal (CI logs,
``> log 2>&1``) the bar is redrawn at most every :data:`LOG_INTERVAL_S` seconds and each redraw
is written as its own line, without carriage returns or cursor movement: a job prints a start
line, one line per half minute while it runs, and an end line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "TRUTHSTEER_CACHE"
LOG_INTERVAL_S = 30.0


# --- cache -----------------------------------------------------------------------------------

def cache_root() -> Path:
    """``$TRUTHSTEER_CACHE``, else ``~/.cache/truthsteer`` (models, judge caches, labels)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "truthsteer")


# --- atomic writes ---------------------------------------------------------------------------

def _temp_name(path: Path, suffix: str = ".tmp") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a not-yet-existing temp path beside ``path``; the caller writes the file there (for
    example ``safetensors.save_file(t, str(tmp))``). On success it replaces ``path``; on error it
    is removed and ``path`` is left as it was. Creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (flushed and fsync'ed before the rename)."""
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with two-space indent and sorted keys, newline-terminated."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> None:
    """One JSON object per line (sorted keys)."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``path``; the caller fills it. On success it becomes
    ``path`` (an existing ``path`` is removed first when ``replace``; otherwise, when another
    process got there first, that folder is kept and ours dropped). On error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, ".partial")
    tmp.mkdir()
    try:
        yield tmp
        if replace and path.exists():
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)
        except OSError:
            if replace or not path.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --- progress --------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class _LineWriter:
    """A stream for tqdm that turns each redraw into one plain line (for logs, not terminals)."""

    def __init__(self, stream: IO[str]):
        self.stream = stream

    def write(self, s: str) -> int:
        for part in _ANSI.sub("", s).replace("\r", "\n").split("\n"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None,
             desc: str | None = None, unit: str = "it", disable: bool = False,
             leave: bool = True, file: IO[str] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one: ``update(n)``, ``close()``; also a context
    manager). On a terminal: tqdm as usual. Otherwise: a start line, at most one line per
    :data:`LOG_INTERVAL_S` seconds, and an end line (the final counts), each a plain line.
    ``disable=True`` prints nothing."""
    from tqdm.auto import tqdm

    stream = file if file is not None else sys.stderr
    if not _is_terminal(stream):
        kwargs.update(mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, miniters=1,
                      dynamic_ncols=False)
        stream, leave = _LineWriter(stream), True  # the end line is the useful one in a log
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave,
                file=stream, **kwargs)


def package_file(name: str) -> Path:
    """A data file shipped inside the ``evals`` package (``name`` relative to it, e.g.
    ``reference_text.txt``), found with :mod:`importlib.resources` wherever the package is
    installed. truthsteer is installed as plain files (never zipped), so this is a real path."""
    from importlib.resources import files

    return Path(str(files("evals").joinpath(name)))

