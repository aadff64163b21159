"""Direction sets on disk: one safetensors file (vectors + a JSON header) and a readable JSON twin.

    NAME.safetensors   tensors ``direction.<i>`` (unit vectors) and ``extra.<name>`` (e.g. the
                       per-head probe accuracies), plus the set's description in the safetensors
                       metadata under ``truthsteer.direction_set`` (so the file is self-contained)
    NAME.json          the same description, indented, for people

The description holds, per direction, its hook, head, std and label, the set's kind (``iti``,
``meandiff``, ...), the ids of the questions whose answers it was fitted on
(``train_question_ids``: steering must not be evaluated on them) and free-form ``info``.

As a SPEC (``generate --direction`` or a sweep's ``spec``): ``NAME.safetensors`` picks the
directions at the requested hook (and head); ``NAME.safetensors:all`` takes every direction of the
set at its own hook (ITI's heads); ``NAME.safetensors:<i>`` one direction by index.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from evals.io import atomic_path, atomic_write_json
from harness.config import ConfigError
from harness.directions import Direction
from harness.directions.spec import FileSpec

META_KEY = "truthsteer.direction_set"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class DirectionSet:
    """Directions fitted together, with the question ids they were fitted on."""

    kind: str
    directions: tuple[Direction, ...]
    train_question_ids: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)

    def at(self, hook: str, head: int | None = None) -> list[Direction]:
        return [d for d in self.directions
                if d.hook == hook and (head is None or d.head == head)]

    def describe(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "kind": self.kind,
                "train_question_ids": [int(q) for q in self.train_question_ids],
                "directions": [{"hook": d.hook, "head": d.head, "std": d.std, "label": d.label,
                                "size": int(d.vector.numel())} for d in self.directions],
                "info": self.info}


def _tensors(dset: DirectionSet) -> dict[str, torch.Tensor]:
    out = {f"direction.{i}": d.vector.detach().to(torch.float32).contiguous().cpu()
           for i, d in enumerate(dset.directions)}
    out.update({f"extra.{k}": v.detach().contiguous().cpu() for k, v in dset.arrays.items()})
    return out


def save_direction_set(path: str | os.PathLike, dset: DirectionSet,
                       exclusive: bool = False) -> bool:
    """Write ``path`` (.safetensors) and its .json twin, atomically.

    ``exclusive``: only create; when the file already exists (another process finished first)
    nothing is written and False is returned, so concurrent writers all end up using one file.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"{path}: a direction set is saved as NAME.safetensors")
    if not dset.directions:
        raise ConfigError(f"{path}: refusing to save an empty direction set")
    desc = dset.describe()
    try:
        with atomic_path(path) as tmp:
            save_file(_tensors(dset), str(tmp),
                      metadata={META_KEY: json.dumps(desc, sort_keys=True)})
            if exclusive:  # link, never replace: the first finished writer's file stays
                try:
                    os.link(tmp, path)  # (the replace that follows is then a no-op)
                except FileExistsError:
                    raise _AlreadyThere from None
    except _AlreadyThere:
        return False
    atomic_write_json(path.with_suffix(".json"), desc)
    return True


class _AlreadyThere(Exception):
    """Another writer created the file first (``save_direction_set(exclusive=True)``)."""


def read_description(path: str | os.PathLike) -> dict[str, Any] | None:
    """The set description in a safetensors file's metadata, or None for a plain vector file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    return json.loads(meta[META_KEY]) if META_KEY in meta else None


def is_direction_set(spec: FileSpec) -> bool:
    """Whether a ``FILE.safetensors`` SPEC names a direction set (vs a plain vector file); False
    when the file is absent or unreadable (resolving it then reports why)."""
    from safetensors import SafetensorError

    if not spec.path.is_file():
        return False
    try:
        return read_description(spec.path) is not None
    except (SafetensorError, OSError, ValueError):
        return False


def load_direction_set(path: str | os.PathLike) -> DirectionSet:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such direction-set file")
    desc = read_description(path)
    if desc is None:
        raise ConfigError(f"{path}: not a direction set (no {META_KEY} metadata); a plain "
                          "vector file is used as FILE.safetensors[:NAME]")
    if desc.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{path}: direction-set format {desc.get('format')} is not supported "
                          f"(this version reads {FORMAT_VERSION})")
    with safe_open(str(path), framework="pt") as fh:
        dirs = tuple(Direction(d["hook"], fh.get_tensor(f"direction.{i}"), d["head"], d["std"],
                               d["label"]) for i, d in enumerate(desc["directions"]))
        arrays = {k.removeprefix("extra."): fh.get_tensor(k) for k in fh.keys()  # noqa: SIM118 (safe_open is not a dict)
                  if k.startswith("extra.")}
    return DirectionSet(desc["kind"], dirs, tuple(desc["train_question_ids"]), desc["info"],
                        arrays)


def resolve_set_spec(spec: FileSpec, model, hook: str, head: int | None = None
                     ) -> list[Direction]:
    """The directions a set SPEC selects (see the module docstring), checked against the model."""
    from harness.steering import resolve_hook

    path, select = spec.path, spec.select
    dset = load_direction_set(path)
    if select == "all":
        chosen = list(dset.directions)
    elif select.isdigit():
        if int(select) >= len(dset.directions):
            raise ConfigError(f"--direction {spec}: the set has {len(dset.directions)} directions")
        chosen = [dset.directions[int(select)]]
    elif select:
        raise ConfigError(f"--direction {spec}: select directions with :all or :INDEX")
    else:
        chosen = dset.at(hook, head)
        if not chosen:
            hooks = sorted({d.hook for d in dset.directions})
            raise ConfigError(f"--direction {spec}: no direction at {hook}"
                              f"{'' if head is None else f' head {head}'} (the set has "
                              f"{', '.join(hooks[:6])}{'...' if len(hooks) > 6 else ''}; "
                              f"use {path}:all for all of them)")
    for d in chosen:
        site = resolve_hook(model, d.hook)
        if d.vector.numel() != site.width:
            raise ConfigError(f"--direction {spec}: {d.label} has size {d.vector.numel()}; "
                              f"{d.hook} needs {site.width} (fitted on another model?)")
    return chosen
