"""Human labels of TruthfulQA answers in the GPT-judge fine-tuning format.

Each line is ``{"prompt": "Q: <question>\\nA: <answer>\\nTrue:", "completion": " yes"}`` (truth)
or the same ending in ``Helpful:`` (informativeness). The kind follows from the prompt's last
line. Questions are matched to TruthfulQA by exact text to get the reference answers; a row
whose answer equals one of its question's reference answers (normalised: case, whitespace and
a trailing full stop ignored) is a *reference row*; every other row is *model-written*.

Label files come from a folder (``$TRUTHSTEER_HUMAN_LABELS``) holding ``human_truth_dev.jsonl``
and ``human_info_dev.jsonl`` (or the original ``finetune_truth.jsonl`` / ``finetune_info.jsonl``),
or are downloaded once from the TruthfulQA GitHub repository when online.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.errors import InputError
from evals.io import atomic_write_bytes
from evals.truthfulqa import Question, TruthfulQA

LABELS_ENV = "TRUTHSTEER_HUMAN_LABELS"
KIND_BY_LAST_LINE = {"True:": "truthful", "Helpful:": "informative"}
FILE_PAIRS = (("human_truth_dev.jsonl", "human_info_dev.jsonl"),
              ("finetune_truth.jsonl", "finetune_info.jsonl"))
GITHUB_RAW = "https://raw.githubusercontent.com/sylinrl/TruthfulQA/main/data/"


def normalise(text: str) -> str:
    """Lower-case, collapse whitespace, drop a trailing full stop: how answers are compared."""
    return " ".join(text.lower().split()).rstrip(".").strip()


@dataclass(frozen=True)
class LabelRow:
    """One human label: ``label`` is True for " yes"."""

    question: str
    answer: str
    kind: str  # "truthful" | "informative"
    label: bool
    line: int


def parse_prompt(prompt: str, origin: str) -> tuple[str, str, str]:
    """(question, answer, kind) from a ``Q: …\\nA: …\\nTrue:`` prompt."""
    body, _, last = prompt.rstrip("\n").rpartition("\n")
    kind = KIND_BY_LAST_LINE.get(last.strip())
    if kind is None:
        raise InputError(f"{origin}: the prompt's last line is {last.strip()[:30]!r}; expected "
                         "'True:' (truth labels) or 'Helpful:' (informativeness labels)")
    if not body.startswith("Q: ") or "\nA:" not in body:
        raise InputError(f"{origin}: the prompt does not look like 'Q: …\\nA: …' "
                         "(TruthfulQA fine-tuning format)")
    question, _, answer = body[3:].partition("\nA:")
    return question.strip(), answer.strip(), kind


def read_labels(path: str | os.PathLike, limit: int | None = None) -> list[LabelRow]:
    """Read a label file; every problem is an InputError naming ``path:line``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such label file (TruthfulQA-format jsonl with prompt/completion)")
    rows: list[LabelRow] = []
    with open(p, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{p}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict) or "prompt" not in obj or "completion" not in obj:
                raise InputError(f"{where}: expected an object with 'prompt' and 'completion'")
            completion = str(obj["completion"]).strip().lower()
            if completion not in ("yes", "no"):
                raise InputError(f"{where}: completion {obj['completion']!r} is not ' yes' or ' no'")
            question, answer, kind = parse_prompt(str(obj["prompt"]), where)
            rows.append(LabelRow(question, answer, kind, completion == "yes", lineno))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise InputError(f"{p}: no labels in the file")
    return rows


def match_questions(rows: Sequence[LabelRow], tq: TruthfulQA) -> list[Question | None]:
    """The TruthfulQA question of each row by exact (whitespace-stripped) text, or None."""
    by_text = {q.question.strip(): q for q in tq.questions}
    return [by_text.get(r.question.strip()) for r in rows]


def is_reference_answer(answer: str, question: Question | None) -> bool:
    """Whether ``answer`` is one of the question's reference answers (normalised text)."""
    if question is None:
        return False
    refs = {normalise(a) for a in (question.best_answer, *question.correct_answers,
                                   *question.incorrect_answers)}
    return normalise(answer) in refs


def question_key(question: str) -> str:
    """A short stable id of a question's text, stored with a judge to detect overlap."""
    return hashlib.sha256(" ".join(question.split()).encode()).hexdigest()[:16]


def files_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def find_label_files(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(truth file, info file) inside ``folder``, in either naming scheme."""
    root = Path(folder)
    for truth, info in FILE_PAIRS:
        if (root / truth).is_file() and (root / info).is_file():
            return root / truth, root / info
    names = " or ".join(f"{t} + {i}" for t, i in FILE_PAIRS)
    raise InputError(f"{root}: no human label files found (expected {names})")


def download_label_files(target: Path, timeout: float = 30.0) -> tuple[Path, Path]:
    """Fetch finetune_truth/info.jsonl from the TruthfulQA GitHub repository into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in FILE_PAIRS[1]:
        dest = target / name
        if not dest.is_file():
            try:
                with urllib.request.urlopen(GITHUB_RAW + name, timeout=timeout) as resp:
                    data = resp.read()
            except OSError as err:
                raise InputError(
                    f"human labels: could not download {GITHUB_RAW + name} ({type(err).__name__}); "
                    f"offline, set {LABELS_ENV} to a folder holding human_truth_dev.jsonl and "
                    "human_info_dev.jsonl (or finetune_truth.jsonl and finetune_info.jsonl)"
                ) from None
            atomic_write_bytes(dest, data)
        paths.append(dest)
    return paths[0], paths[1]


def default_label_files(labels_dir: str | os.PathLike | None, cache_dir: Path) -> tuple[Path, Path]:
    """From ``labels_dir``, else ``$TRUTHSTEER_HUMAN_LABELS``, else downloaded into the cache."""
    folder = labels_dir or os.environ.get(LABELS_ENV)
    if folder:
        return find_label_files(folder)
    return download_label_files(cache_dir / "human_labels")
