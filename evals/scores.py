"""Judge scores of a run, stored apart from the answers: ``RUN_DIR/scores/<judge_slug>.jsonl``,
owned by :class:`ScoreFile`; the one loop that judges a run is :func:`evals.judging.judge_run`.

One row per judged (cell_id, question_id), appended (one ``write`` per line, O_APPEND) and
flushed as results arrive, so an interrupted run keeps everything finished. A row holds::

    cell_id, question_id, judge_id, prompt_version, answer_sha256,
    truthful:    {verdict, p_yes, prompt, raw_reply, error}
    informative: {verdict, p_yes, prompt, raw_reply, error}
    usage, judged_at, and (learned judges) nonanswer: {flagged, score, reasons}

Reading keeps the latest row per key (a rerun's rows win), ignores rows of other prompt versions
when asked, and skips a torn last line left by a crash (that item is then judged again). Beside
a score file live ``<slug>.runs.jsonl`` (one usage record per ``truthsteer judge``; not scores)
and ``<slug>.judge.json`` (what is known about the judge: name, recipe, measured agreement).

A score counts for an answer only while the answer is the one it scored
(:func:`answer_changed`); a verdict is read as True / False / None (:func:`verdict_label`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evals.errors import InputError
from evals.judges.base import KINDS, JudgeResult, NonAnswer, Verdict
from evals.rundir import RunDir, judge_slug

Key = tuple[str, int]
SUFFIX = ".jsonl"
USAGE_LOG_SUFFIX = ".runs.jsonl"  # scores/<slug>.runs.jsonl: a judge's usage log, not scores
RECORD_SUFFIX = ".judge.json"

__all__ = ["KINDS", "ScoreFile", "ScoreWriter", "answer_changed", "answer_sha256",
           "append_scores", "load_scores", "missing",
           "missing_keys", "needs_judging", "result_from_row", "score_row", "summarize",
           "usage_totals", "verdict_label"]


# --- one row ---------------------------------------------------------------------------------

def answer_sha256(answer: str) -> str:
    return hashlib.sha256(answer.encode("utf-8")).hexdigest()[:16]


def key_of(row: Mapping[str, Any]) -> Key:
    return str(row["cell_id"]), int(row["question_id"])


def answer_changed(score: Mapping[str, Any], answer_row: Mapping[str, Any]) -> bool:
    """True when ``score`` was given to another text than ``answer_row``'s answer. A row without
    an ``answer_sha256`` (written by hand) cannot be checked and counts as unchanged."""
    sha = score.get("answer_sha256")
    return sha is not None and sha != answer_sha256(str(answer_row.get("answer", "")))


def verdict_label(value: Any) -> bool | None:
    """True / False / None (unscored or missing) from a score row's verdict record
    (``{"verdict": "yes"}``), a bool, or a yes/no string."""
    if isinstance(value, Mapping):
        value = value.get("verdict", value.get("label"))
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
        return value.strip().lower() == "yes"
    return None


def verdict_record(v: Verdict) -> dict[str, Any]:
    return {"verdict": v.verdict, "p_yes": v.p_yes, "prompt": v.prompt, "raw_reply": v.raw_reply,
            "error": v.error}


def verdict_from_record(d: Mapping[str, Any]) -> Verdict:
    return Verdict(d["verdict"], d.get("p_yes"), d.get("prompt", ""), d.get("raw_reply", ""),
                   d.get("error"))


def score_row(answer_row: Mapping[str, Any], result: JudgeResult) -> dict[str, Any]:
    """The scores-file row for one judged answer row."""
    return {"cell_id": answer_row["cell_id"], "question_id": int(answer_row["question_id"]),
            "judge_id": result.judge_id, "prompt_version": result.prompt_version,
            "answer_sha256": answer_sha256(answer_row["answer"]),
            "truthful": verdict_record(result.truthful),
            "informative": verdict_record(result.informative),
            "usage": dict(result.usage),
            **({"nonanswer": result.nonanswer.to_dict()} if result.nonanswer else {}),
            "judged_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def result_from_row(row: Mapping[str, Any]) -> JudgeResult:
    return JudgeResult(verdict_from_record(row["truthful"]),
                       verdict_from_record(row["informative"]), row["judge_id"],
                       row["prompt_version"], dict(row.get("usage") or {}),
                       NonAnswer.from_dict(row["nonanswer"]) if row.get("nonanswer") else None)


def needs_judging(answer_row: Mapping[str, Any], score: Mapping[str, Any] | None) -> bool:
    """True when there is no score, the answer changed since, or a verdict is unscored."""
    if score is None or answer_changed(score, answer_row):
        return True
    return any(verdict_label(score.get(k)) is None for k in KINDS)


def missing(answer_rows: Iterable[Mapping[str, Any]], scores: Mapping[Key, Mapping[str, Any]]
            ) -> list[Mapping[str, Any]]:
    """The answer rows a rerun must judge (see :func:`needs_judging`)."""
    return [r for r in answer_rows if needs_judging(r, scores.get(key_of(r)))]


def missing_keys(answer_rows: Iterable[Mapping[str, Any]],
                 scores: Mapping[Key, Mapping[str, Any]]) -> list[Key]:
    return [key_of(r) for r in missing(answer_rows, scores)]


def usage_totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Sum of the ``usage`` counters of score rows (or of JudgeResult.usage dicts)."""
    total: dict[str, int] = {}
    for row in rows:
        usage = row.get("usage", row) if isinstance(row, Mapping) else {}
        for k, v in (usage or {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total


class ScoreWriter:
    """Append rows to a scores file, each flushed to the OS as it is written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        size = os.fstat(self._fd).st_size
        if size:  # a crash may have left a torn last line: start ours on a fresh line
            with open(self.path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    os.write(self._fd, b"\n")

    def write(self, row: Mapping[str, Any]) -> None:
        os.write(self._fd, (json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ScoreWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def append_scores(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    with ScoreWriter(path) as writer:
        for row in rows:
            writer.write(row)


# --- one file --------------------------------------------------------------------------------

class ScoreFile:
    """``scores/<slug>.jsonl`` of one judge, with its usage log and judge record beside it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ScoreFile({str(self.path)!r})"

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def usage_log_path(self) -> Path:
        return self.path.with_name(self.stem + USAGE_LOG_SUFFIX)

    @property
    def record_path(self) -> Path:
        return self.path.with_name(self.stem + RECORD_SUFFIX)

    # --- choosing ----------------------------------------------------------------------------

    @classmethod
    def for_judge(cls, run: RunDir, judge_id: str) -> ScoreFile:
        """Where ``judge_id`` writes its scores in ``run``."""
        return cls(run.scores_dir / f"{judge_slug(judge_id)}{SUFFIX}")

    @classmethod
    def all(cls, run: RunDir) -> list[ScoreFile]:
        """Every judge's score file in ``run`` (not the usage logs), sorted by name."""
        folder = run.scores_dir
        if not folder.is_dir():
            return []
        return [cls(p) for p in sorted(folder.glob(f"*{SUFFIX}"))
                if not p.name.endswith(USAGE_LOG_SUFFIX)]

    @classmethod
    def pick(cls, run: RunDir, judge: str | None) -> ScoreFile | None:
        """The score file of ``judge`` (an id, its slug, or the file's name), or the only one.

        None when the run has no scores (and no judge was asked for); InputError when ``judge``
        scored nothing here, or when several judges did and none was chosen.
        """
        files = cls.all(run)
        if judge is not None:
            wanted = {judge, judge_slug(judge), judge.removesuffix(SUFFIX)}
            hits = [f for f in files if f.stem in wanted] or [
                f for f in files if f.judge_id() == judge]
            if not hits:
                have = ", ".join(f.stem for f in files) or "none"
                raise InputError(f"--judge {judge}: {run.path} has no scores by that judge (it "
                                 f"has: {have}; score it with `truthsteer judge {run.path} "
                                 f"--judge {judge}`)")
            return hits[0]
        if len(files) > 1:
            raise InputError(f"{run.path}: several judges scored this run "
                             f"({', '.join(f.stem for f in files)}); pick one with --judge")
        return files[0] if files else None

    # --- reading -----------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """Every well-formed row in file order; a torn line (a crash mid-write) is skipped."""
        rows: list[dict[str, Any]] = []
        if not self.path.exists():
            return rows
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash; its item counts as missing
                if isinstance(row, dict) and "cell_id" in row and "question_id" in row:
                    rows.append(row)
        return rows

    def latest(self, prompt_version: str | None = None) -> dict[Key, dict[str, Any]]:
        """The latest row per (cell_id, question_id); only ``prompt_version``'s when given."""
        return {key_of(r): r for r in self.rows()
                if prompt_version is None or r.get("prompt_version") == prompt_version}

    def latest_of_newest_version(self) -> tuple[dict[Key, dict[str, Any]], str | None, int]:
        """(latest row per key of the prompt version of the last row written, that version,
        number of rows of other versions). After a judge's prompt changed, the file holds rows
        of several versions; the older ones count as unscored unless rescored."""
        rows = self.rows()
        if not rows:
            return {}, None, 0
        version = rows[-1].get("prompt_version")
        latest = {key_of(r): r for r in rows if r.get("prompt_version") == version}
        return latest, version, sum(1 for r in rows if r.get("prompt_version") != version)

    def judge_id(self) -> str | None:
        """The judge id of the first row that names one."""
        return next((str(r["judge_id"]) for r in self.rows() if r.get("judge_id")), None)

    def current(self, answers: Iterable[Mapping[str, Any]], prompt_version: str | None = None
                ) -> dict[Key, dict[str, Any]]:
        """The latest score of each of ``answers`` whose answer has not changed since."""
        latest = self.latest(prompt_version)
        out = {}
        for a in answers:
            score = latest.get(key_of(a))
            if score is not None and not answer_changed(score, a):
                out[key_of(a)] = score
        return out

    def read_record(self) -> dict[str, Any] | None:
        """``<slug>.judge.json``, when the judge wrote one."""
        if not self.record_path.is_file():
            return None
        return json.loads(self.record_path.read_text(encoding="utf-8"))

    # --- writing -----------------------------------------------------------------------------

    def writer(self) -> ScoreWriter:
        return ScoreWriter(self.path)

    def append_usage(self, record: Mapping[str, Any]) -> None:
        append_scores(self.usage_log_path, [record])

    def write_record(self, judge: Any) -> Path | None:
        """Write the judge's record (id, prompt version, name, recipe, measured agreement with
        people) beside its scores, so a report shows the agreement wherever the scores appear.
        Only judges that have one (learned judges) write it; returns None for the others."""
        from evals.io import atomic_write_json

        record = judge.record()
        if record is None:
            return None
        atomic_write_json(self.record_path, record)
        return self.record_path


def load_scores(path: str | os.PathLike, prompt_version: str | None = None
                ) -> dict[Key, dict[str, Any]]:
    """``ScoreFile(path).latest(prompt_version)``."""
    return ScoreFile(path).latest(prompt_version)


def summarize(answer_rows: Iterable[Mapping[str, Any]], scores: Mapping[Key, Mapping[str, Any]]
              ) -> dict[str, dict[str, float | int]]:
    """Per cell: answers, scored counts, % truthful, % informative, % truthful and informative
    (each over the answers scored for it), and unscored counts. Pure: no I/O."""
    cells: dict[str, dict[str, Any]] = {}
    for row in answer_rows:
        cell = cells.setdefault(row["cell_id"], {"n": 0, "t": [], "i": [], "ti": []})
        cell["n"] += 1
        score = scores.get(key_of(row))
        if score is None or answer_changed(score, row):
            continue
        t, i = (verdict_label(score.get(k)) for k in KINDS)
        if t is not None:
            cell["t"].append(t)
        if i is not None:
            cell["i"].append(i)
        if t is not None and i is not None:
            cell["ti"].append(t and i)

    def pct(xs: list[bool]) -> float:
        return 100.0 * sum(xs) / len(xs) if xs else float("nan")

    return {cid: {"n": c["n"], "n_truthful": len(c["t"]), "n_informative": len(c["i"]),
                  "pct_truthful": pct(c["t"]), "pct_informative": pct(c["i"]),
                  "pct_truthful_informative": pct(c["ti"]),
                  "unscored_truthful": c["n"] - len(c["t"]),
                  "unscored_informative": c["n"] - len(c["i"])}
            for cid, c in sorted(cells.items())}
