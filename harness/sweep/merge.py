"""Merge shard run directories made on other machines into one run directory."""

from __future__ import annotations

import os
from pathlib import Path

from evals.rundir import RunDir


def merge_runs(sources: list[str | os.PathLike], dest: str | os.PathLike) -> int:
    """Copy the finished cells (and fitted directions) of shard run dirs made elsewhere into
    ``dest``; all must come from the same config and data. Returns the number of cells copied.

    A direction file present in two places must be byte-identical (fit directions once, copy
    RUN_DIR/directions to every machine, then shard), and so must a cell present in both.
    """
    from evals.errors import InputError

    dest = Path(dest)
    copied = 0
    for src in map(Path, sources):
        src_run, dest_run = RunDir.open(src), RunDir(dest)
        info, mine = src_run.info(), dest_run.info()
        if not info:
            raise InputError(f"--merge {src}: no run.json (not a sweep run dir)")
        if mine and mine.get("identity") != info.get("identity"):
            raise InputError(f"--merge {src}: made with a different config or data than {dest}")
        if not mine:
            dest_run.write_info(info)
        for f in sorted((src / "directions").glob("*")) if (src / "directions").is_dir() else []:
            target = dest / "directions" / f.name
            if target.exists():
                if target.read_bytes() != f.read_bytes():
                    raise InputError(f"--merge {src}: {f.name} differs from {target} (the shards "
                                     "fitted their own directions; fit once, then shard)")
                continue
            _copy_atomic(f, target)
        have = dest_run.finished_cells()
        for cell in sorted(src_run.finished_cells()):
            (s_rows, s_desc), (d_rows, d_desc) = src_run.cell_paths(cell), dest_run.cell_paths(cell)
            if cell in have:
                if s_rows.read_bytes() != d_rows.read_bytes():
                    raise InputError(f"--merge {src}: cell {cell} exists in {dest} with other rows")
                continue
            _copy_atomic(s_rows, d_rows)
            _copy_atomic(s_desc, d_desc)  # the description last: it marks the cell finished
            copied += 1
    return copied


def _copy_atomic(src: Path, dst: Path) -> None:
    from evals.io import atomic_write_bytes

    atomic_write_bytes(dst, src.read_bytes())
