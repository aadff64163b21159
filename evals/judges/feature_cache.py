"""A persistent cache of the learned judge's per-answer features (SQLite, float32 blobs).

Probe features are what the learned judge spends its time on; judging the same answers again
(calibrating after ``judge-train``, rebuilding the default judge, re-judging a run) reads them
from here instead. Rows live in a *space* named by everything that decides the numbers (feature
block, model name and a fingerprint of its weights, layers, prompt settings), and are keyed by a
hash of (question, answer, references). WAL mode and a busy timeout make concurrent use safe.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    space TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (space, key)
);
"""


def space_name(**fields: Any) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def answer_key(question: str, answer: str, correct: Sequence[str], incorrect: Sequence[str],
               best: str = "") -> str:
    payload = json.dumps([question, answer, list(correct), list(incorrect), best],
                         ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def model_fingerprint(hf_model: Any) -> str:
    """Config plus a checksum of a few weights: a changed model never reads stale features."""
    import torch

    h = hashlib.sha256(hf_model.config.to_json_string().encode())
    with torch.no_grad():
        for _, p in list(hf_model.named_parameters())[:3] + list(hf_model.named_parameters())[-2:]:
            h.update(p.detach().float().flatten()[:4096].cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class FeatureCache:
    """get / put float32 vectors by (space, key)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def get_many(self, space: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        uniq = list(dict.fromkeys(keys))
        for start in range(0, len(uniq), 500):
            chunk = uniq[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value FROM features WHERE space = ? AND key IN ({marks})",
                [space, *chunk])
            for key, blob in rows:
                found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, space: str, items: dict[str, np.ndarray]) -> None:
        now = time.time()
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO features (space, key, value, created) VALUES (?,?,?,?)",
                [(space, k, np.asarray(v, dtype=np.float32).tobytes(), now)
                 for k, v in items.items()])

    def close(self) -> None:
        self._db.close()
