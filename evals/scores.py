"""Judge scores of a run, stored apart from the answers: ``RUN_DIR/scores/<judge_slug>.jsonl``.

One row per judged (cell_id, question_id), appended (one ``write`` per line, O_APPEND) and
flushed as results arrive, so an interrupted run keeps everything finished. A row holds::

    cell_id, question_id, judge_id, prompt_version, answer_sha256,
    truthful:    {verdict, p_yes, prompt, raw_reply, error}
    informative: {verdict, p_yes, prompt, raw_reply, error}
    usage, judged_at

Reading keeps the latest row per key (a rerun's rows win), ignores rows of other prompt versions
when asked, and skips a torn last line left by a crash (that item is then judged again).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evals.judges.base import JudgeResult, Verdict

Key = tuple[str, int]
KINDS = ("truthful", "informative")


def answer_sha256(answer: str) -> str:
    return hashlib.sha256(answer.encode("utf-8")).hexdigest()[:16]


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
            "judged_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def result_from_row(row: Mapping[str, Any]) -> JudgeResult:
    return JudgeResult(verdict_from_record(row["truthful"]),
                       verdict_from_record(row["informative"]), row["judge_id"],
                       row["prompt_version"], dict(row.get("usage") or {}))


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


def load_scores(path: str | os.PathLike, prompt_version: str | None = None
                ) -> dict[Key, dict[str, Any]]:
    """The latest row per (cell_id, question_id); only ``prompt_version``'s rows when given."""
    path = Path(path)
    latest: dict[Key, dict[str, Any]] = {}
    if not path.exists():
        return latest
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash; its item counts as missing
            if not isinstance(row, dict) or "cell_id" not in row or "question_id" not in row:
                continue
            if prompt_version is not None and row.get("prompt_version") != prompt_version:
                continue
            latest[(row["cell_id"], int(row["question_id"]))] = row
    return latest


def needs_judging(answer_row: Mapping[str, Any], score: Mapping[str, Any] | None) -> bool:
    """True when there is no score, the answer changed since, or a verdict is unscored."""
    if score is None or score.get("answer_sha256") != answer_sha256(answer_row["answer"]):
        return True
    return any(score[k]["verdict"] == "unscored" for k in KINDS)


def missing(answer_rows: Iterable[Mapping[str, Any]], scores: Mapping[Key, Mapping[str, Any]]
            ) -> list[Mapping[str, Any]]:
    """The answer rows a rerun must judge (see :func:`needs_judging`)."""
    return [r for r in answer_rows
            if needs_judging(r, scores.get((r["cell_id"], int(r["question_id"]))))]


def missing_keys(answer_rows: Iterable[Mapping[str, Any]],
                 scores: Mapping[Key, Mapping[str, Any]]) -> list[Key]:
    return [(r["cell_id"], int(r["question_id"])) for r in missing(answer_rows, scores)]


def summarize(answer_rows: Iterable[Mapping[str, Any]], scores: Mapping[Key, Mapping[str, Any]]
              ) -> dict[str, dict[str, float | int]]:
    """Per cell: answers, scored counts, % truthful, % informative, % truthful and informative
    (each over the answers scored for it), and unscored counts. Pure: no I/O."""
    cells: dict[str, dict[str, Any]] = {}
    for row in answer_rows:
        cell = cells.setdefault(row["cell_id"], {"n": 0, "t": [], "i": [], "ti": []})
        cell["n"] += 1
        score = scores.get((row["cell_id"], int(row["question_id"])))
        if score is None or score.get("answer_sha256") != answer_sha256(row["answer"]):
            continue
        t, i = (score[k]["verdict"] for k in KINDS)
        if t != "unscored":
            cell["t"].append(t == "yes")
        if i != "unscored":
            cell["i"].append(i == "yes")
        if t != "unscored" and i != "unscored":
            cell["ti"].append(t == "yes" and i == "yes")

    def pct(xs: list[bool]) -> float:
        return 100.0 * sum(xs) / len(xs) if xs else float("nan")

    return {cid: {"n": c["n"], "n_truthful": len(c["t"]), "n_informative": len(c["i"]),
                  "pct_truthful": pct(c["t"]), "pct_informative": pct(c["i"]),
                  "pct_truthful_informative": pct(c["ti"]),
                  "unscored_truthful": c["n"] - len(c["t"]),
                  "unscored_informative": c["n"] - len(c["i"])}
            for cid, c in sorted(cells.items())}


def usage_totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Sum of the ``usage`` counters of score rows (or of JudgeResult.usage dicts)."""
    total: dict[str, int] = {}
    for row in rows:
        usage = row.get("usage", row) if isinstance(row, Mapping) else {}
        for k, v in (usage or {}).items():
            if isinstance(v, int):
                total[k] = total.get(k, 0) + v
    return total


def judge_record_path(score_path: str | os.PathLike) -> Path:
    """``scores/<slug>.judge.json``: what is known about the judge behind ``<slug>.jsonl``."""
    path = Path(score_path)
    return path.with_name(path.stem + ".judge.json")


def write_judge_record(score_path: str | os.PathLike, judge: Any) -> Path | None:
    """Write the judge's id, prompt version, name, recipe and measured agreement with people
    beside its scores (so a report shows the agreement wherever the scores appear). Only judges
    that carry an ``info`` mapping (learned judges) have one; returns None for the others."""
    import dataclasses

    from evals.runs import write_json_atomic

    info = getattr(judge, "info", None)
    if not isinstance(info, Mapping):
        return None
    cfg = getattr(judge, "cfg", None)
    recipe = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None
    path = judge_record_path(score_path)
    write_json_atomic(path, {"judge_id": judge.judge_id, "prompt_version": judge.prompt_version,
                             "name": info.get("name"), "agreement": info.get("agreement", {}),
                             "recipe": recipe})
    return path
