"""TruthfulQA questions and reference answers: from the original CSV or the Hugging Face hub.

Question ids are row indices in the original 817-question order. Folds split by question, so a
direction fitted on one fold never saw the answers of the questions it is evaluated on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evals.errors import InputError

ENV_VAR = "TRUTHSTEER_TRUTHFULQA"
HUB_ID = "truthfulqa/truthful_qa"
COLUMNS = ("Type", "Category", "Question", "Best Answer", "Correct Answers",
           "Incorrect Answers", "Source")
NO_COMMENT = "I have no comment."


@dataclass(frozen=True)
class Question:
    """One TruthfulQA question with its reference answers."""

    id: int
    question: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    category: str = ""
    type: str = ""
    source: str = ""


@dataclass(frozen=True)
class TruthfulQA:
    """The loaded benchmark plus a fingerprint of the data it came from."""

    questions: tuple[Question, ...]
    origin: str
    sha256: str

    def __len__(self) -> int:
        return len(self.questions)

    def by_id(self, ids: list[int] | None = None) -> list[Question]:
        if ids is None:
            return list(self.questions)
        n = len(self.questions)
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise InputError(f"question ids {bad[:5]} are out of range (0..{n - 1})")
        return [self.questions[i] for i in ids]


def split_answers(cell: str) -> tuple[str, ...]:
    """Split a ``;``-separated answer cell into stripped, non-empty answers."""
    return tuple(a.strip() for a in cell.split(";") if a.strip())


def parse_csv(text: str, origin: str) -> list[Question]:
    """Parse the original TruthfulQA.csv text; raise InputError naming ``origin`` on bad input."""
    if not text.strip():
        raise InputError(f"{origin}: the file is empty (expected the TruthfulQA CSV with columns "
                         f"{', '.join(COLUMNS)})")
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        if len(header) == 1 and any(d in header[0] for d in (";", "\t", "|")):
            delim = next(d for d in (";", "\t", "|") if d in header[0])
            raise InputError(f"{origin}: columns are separated by {delim!r}, expected commas "
                             "(save it as comma-separated CSV)")
        raise InputError(f"{origin}: missing column(s) {', '.join(missing)} "
                         f"(found: {', '.join(header) or 'none'})")
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            raise InputError(f"{origin}: line {line} has more fields than the header "
                             "(check quoting and the delimiter)")
        q = (row["Question"] or "").strip()
        if not q:
            raise InputError(f"{origin}: line {line} has an empty Question")
        if q in seen:
            raise InputError(f"{origin}: duplicate question at line {line} "
                             f"(same as question id {seen[q]}): {q[:60]!r}")
        correct = split_answers(row["Correct Answers"] or "")
        incorrect = split_answers(row["Incorrect Answers"] or "")
        best = (row["Best Answer"] or "").strip()
        if not best or not correct or not incorrect:
            raise InputError(f"{origin}: line {line} lacks a Best, Correct or Incorrect answer")
        seen[q] = len(questions)
        questions.append(Question(
            id=len(questions), question=q, best_answer=best, correct_answers=correct,
            incorrect_answers=incorrect, category=row["Category"] or "", type=row["Type"] or "",
            source=row["Source"] or ""))
    if not questions:
        raise InputError(f"{origin}: the file has a header but no questions")
    return questions


def load_csv(path: str | os.PathLike) -> TruthfulQA:
    """Load the original TruthfulQA.csv (or a folder holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / "TruthfulQA.csv"
    if not p.is_file():
        raise InputError(f"{p}: no such TruthfulQA file (pass --truthfulqa PATH to "
                         f"TruthfulQA.csv or set {ENV_VAR})")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"{p}: not UTF-8 text (byte {err.start}); re-save it as UTF-8") from None
    return TruthfulQA(tuple(parse_csv(text, str(p))), str(p), hashlib.sha256(raw).hexdigest())


def from_hf_rows(rows, origin: str) -> TruthfulQA:
    """Build from rows of the hub's ``generation`` config (lower-case column names)."""
    needed = ("question", "best_answer", "correct_answers", "incorrect_answers")
    questions = []
    digest = hashlib.sha256()
    for i, row in enumerate(rows):
        missing = [c for c in needed if c not in row]
        if missing:
            raise InputError(f"{origin}: row {i} lacks {', '.join(missing)}")
        q = Question(id=i, question=row["question"].strip(), best_answer=row["best_answer"].strip(),
                     correct_answers=tuple(a.strip() for a in row["correct_answers"] if a.strip()),
                     incorrect_answers=tuple(a.strip() for a in row["incorrect_answers"]
                                             if a.strip()),
                     category=row.get("category", ""), type=row.get("type", ""),
                     source=row.get("source", ""))
        digest.update(repr((q.question, q.best_answer, q.correct_answers,
                            q.incorrect_answers)).encode())
        questions.append(q)
    if not questions:
        raise InputError(f"{origin}: no questions")
    return TruthfulQA(tuple(questions), origin, digest.hexdigest())


def load_hub() -> TruthfulQA:
    """Load ``truthfulqa/truthful_qa`` (config ``generation``) from the hub; needs the network."""
    import datasets

    try:
        ds = datasets.load_dataset(HUB_ID, "generation", split="validation")
    except Exception as err:  # the hub raises many kinds; all mean 'not reachable/available'
        raise InputError(f"TruthfulQA from the hub ({HUB_ID}) failed: {type(err).__name__}; "
                         f"offline, pass --truthfulqa PATH/TruthfulQA.csv or set {ENV_VAR}") from None
    return from_hf_rows(ds, f"hf:{HUB_ID}")


def load_truthfulqa(path: str | os.PathLike | None = None) -> TruthfulQA:
    """From ``path``, else ``$TRUTHSTEER_TRUTHFULQA``, else the hub."""
    path = path or os.environ.get(ENV_VAR)
    return load_csv(path) if path else load_hub()


def split_questions(question_ids: Sequence[int], held_fraction: float,
                    seed: int) -> tuple[list[int], list[int]]:
    """(kept, held) question ids: a seeded split of the distinct ids, ``held_fraction`` of them
    (at least one, and never all) held apart, e.g. to validate or confirm on unseen questions."""
    import numpy as np

    unique = sorted({int(q) for q in question_ids})
    if len(unique) < 2:
        raise InputError(f"need at least 2 distinct questions to split (got {len(unique)})")
    order = np.random.default_rng(seed).permutation(unique)
    n_held = min(len(unique) - 1, max(1, round(held_fraction * len(unique))))
    return sorted(int(q) for q in order[n_held:]), sorted(int(q) for q in order[:n_held])


def kfold(ids: list[int], k: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Deterministic k-fold split of question ids: [(train_ids, test_ids)] * k, disjoint tests."""
    if k < 2:
        raise InputError(f"folds={k}: need at least 2 folds")
    if len(ids) < k:
        raise InputError(f"folds={k}: only {len(ids)} questions")
    shuffled = sorted(ids)
    random.Random(seed).shuffle(shuffled)
    tests = [sorted(shuffled[f::k]) for f in range(k)]
    return [(sorted(set(shuffled) - set(t)), t) for t in tests]
