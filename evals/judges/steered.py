"""Label files of the steered development set (``evals/steered_dev/steered_{truth,info}.jsonl``).

Same lines as TruthfulQA's label files (``{"prompt": "Q: …\\nA: …\\nTrue:", "completion":
" yes"}``) plus ``config`` (e.g. ``chat/meandiff15@L15x6``), ``split`` (``train`` | ``test``),
``question_id``, ``answer_id`` and ``prompt_style``. Labelled by the project's maintainers (two
independent reading passes, disagreements resolved; see evals/steered_dev/README.md), not by
TruthfulQA's authors. Only the ``train`` split may train or tune a judge; ``test`` is for
measuring.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from evals.errors import InputError
from evals.labels import LabelRow, read_labels

STEERED_DIR = "steered_dev"  # inside the evals package; only these two files are shipped
STEERED_FILES = ("steered_truth.jsonl", "steered_info.jsonl")
SPLITS = ("train", "test", "all")


@dataclass(frozen=True)
class LabelMeta:
    """What a steered label line adds to a TruthfulQA-format one (empty for plain files)."""

    config: str | None = None
    split: str | None = None
    question_id: int | None = None


def read_label_meta(path: str | os.PathLike, limit: int | None = None) -> list[LabelMeta]:
    """The extra fields of each non-empty line of a label file, in the order of
    :func:`evals.labels.read_labels` (absent fields are None)."""
    out: list[LabelMeta] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            obj = json.loads(line)
            qid = obj.get("question_id")
            out.append(LabelMeta(obj.get("config"), obj.get("split"),
                                 None if qid is None else int(qid)))
            if limit is not None and len(out) >= limit:
                break
    return out


def read_split(path: str | os.PathLike, split: str = "all", limit: int | None = None
               ) -> tuple[list[LabelRow], list[LabelMeta]]:
    """Rows (and their extra fields) of a label file, keeping only ``split`` ("all": every row;
    a file without a ``split`` field has only "all")."""
    if split not in SPLITS:
        raise InputError(f"--split {split}: must be one of {', '.join(SPLITS)}")
    rows = read_labels(path, limit=limit)
    meta = read_label_meta(path, limit=limit)
    if split == "all":
        return rows, meta
    if not any(m.split for m in meta):
        raise InputError(f"{path}: --split {split} needs a file whose lines have a 'split' field "
                         "(the steered development set's files); use --split all")
    keep = [i for i, m in enumerate(meta) if m.split == split]
    return [rows[i] for i in keep], [meta[i] for i in keep]


def read_steered_train(truth_path: str | os.PathLike, info_path: str | os.PathLike
                       ) -> tuple[list[LabelRow], list[LabelRow], dict[str, int]]:
    """The TRAIN rows of a pair of steered label files, for training a judge: (truth rows,
    info rows, {"skipped_non_train": n}). Rows of any other split are skipped (counted), never
    trained on; a file without ``split`` fields is refused."""
    out, skipped = [], 0
    for path, kind in ((truth_path, "truthful"), (info_path, "informative")):
        rows = read_labels(path)
        meta = read_label_meta(path)
        if not all(m.split for m in meta):
            raise InputError(f"{path}: every line of a steered label file needs a 'split' field "
                             "('train' or 'test'); only 'train' rows train a judge")
        wrong = [r for r in rows if r.kind != kind]
        if wrong:
            raise InputError(f"{path}:{wrong[0].line}: a {wrong[0].kind} label where {kind} "
                             "labels were expected (give --steered TRUTH_FILE INFO_FILE)")
        out.append([r for r, m in zip(rows, meta) if m.split == "train"])
        skipped += sum(m.split != "train" for m in meta)
    return out[0], out[1], {"skipped_non_train": skipped}


def packaged_steered_files() -> tuple[Path, Path] | None:
    """The steered development set shipped inside the package, or None when absent."""
    from evals.io import package_file

    paths = tuple(package_file(f"{STEERED_DIR}/{name}") for name in STEERED_FILES)
    return paths if all(p.is_file() for p in paths) else None  # type: ignore[return-value]


LONGFORM_DIR = "longform_dev"  # inside the evals package; only these two files are shipped
LONGFORM_FILES = ("longform_truth.jsonl", "longform_info.jsonl")


def packaged_longform_files() -> tuple[Path, Path] | None:
    """The long-form development set's label files shipped inside the package, or None."""
    from evals.io import package_file

    paths = tuple(package_file(f"{LONGFORM_DIR}/{name}") for name in LONGFORM_FILES)
    return paths if all(p.is_file() for p in paths) else None  # type: ignore[return-value]
