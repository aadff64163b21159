"""A persistent judge cache in SQLite, so a rerun of the same judgements costs no calls.

Keyed by (backend, model, prompt version, kind, question, answer, hash of the reference answers).
Only replies the judge actually obtained are stored (yes, no, or an unparseable reply kept
verbatim); transient failures (timeouts, 5xx after all retries) are never cached, so a rerun
tries them again. WAL mode plus a busy timeout make it safe for several processes writing at once.

The default location is ``$TRUTHSTEER_CACHE/judge_cache.sqlite`` (``~/.cache/truthsteer``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from evals.io import cache_root
from evals.judges.base import JudgeItem, Verdict

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    kind TEXT NOT NULL,
    verdict TEXT NOT NULL,
    p_yes REAL,
    prompt TEXT NOT NULL,
    raw_reply TEXT NOT NULL,
    error TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_cache_path() -> Path:
    return cache_root() / "judge_cache.sqlite"


def references_hash(item: JudgeItem) -> str:
    refs = [item.best_answer, list(item.correct_answers), list(item.incorrect_answers)]
    return hashlib.sha256(json.dumps(refs, ensure_ascii=False).encode()).hexdigest()


def cache_key(backend: str, model: str, prompt_version: str, kind: str, item: JudgeItem) -> str:
    """The cache key of one judgement: a hash over everything that decides the reply."""
    fields = [backend, model, prompt_version, kind, item.question, item.answer,
              references_hash(item)]
    return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class CachedVerdict:
    verdict: Verdict
    prompt_tokens: int
    completion_tokens: int


class JudgeCache:
    """Get and put verdicts by key. One connection, guarded by a lock (usable from threads)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False,
                                     isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout=60000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                               (str(SCHEMA_VERSION),))

    def get(self, key: str) -> CachedVerdict | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT verdict, p_yes, prompt, raw_reply, error, prompt_tokens, "
                "completion_tokens FROM verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        verdict, p_yes, prompt, raw, error, n_in, n_out = row
        return CachedVerdict(Verdict(verdict, p_yes, prompt, raw, error), n_in, n_out)

    def put(self, key: str, *, backend: str, model: str, prompt_version: str, kind: str,
            verdict: Verdict, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, backend, model, prompt_version, kind, verdict.verdict, verdict.p_yes,
                 verdict.prompt, verdict.raw_reply, verdict.error, int(prompt_tokens),
                 int(completion_tokens), time.time()))

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JudgeCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_cache(cache: JudgeCache | str | os.PathLike | bool | None) -> JudgeCache | None:
    """``None``/``False`` -> no cache; ``True`` -> the default path; a path -> that file."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, JudgeCache):
        return cache
    return JudgeCache(default_cache_path() if cache is True else cache)
