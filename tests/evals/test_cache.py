"""The SQLite judge cache: keys, round trips, WAL mode, concurrent writers in several processes."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3

from evals.cache import JudgeCache, cache_key
from evals.judges.base import JudgeItem, Verdict

ITEM = JudgeItem("Q?", "A.", ("right",), ("wrong",), "right")


def test_cache_key__changes_with_every_field_that_decides_the_reply():
    base = cache_key("openai", "m", "ref-aware-v1", "truthful", ITEM)
    assert base == cache_key("openai", "m", "ref-aware-v1", "truthful", ITEM)
    variants = [
        cache_key("openai@http://127.0.0.1:1/v1", "m", "ref-aware-v1", "truthful", ITEM),
        cache_key("openai", "m2", "ref-aware-v1", "truthful", ITEM),
        cache_key("openai", "m", "ref-aware-v2", "truthful", ITEM),
        cache_key("openai", "m", "ref-aware-v1", "informative", ITEM),
        cache_key("openai", "m", "ref-aware-v1", "truthful", JudgeItem("Q2?", "A.", ("right",),
                                                                       ("wrong",), "right")),
        cache_key("openai", "m", "ref-aware-v1", "truthful", JudgeItem("Q?", "B.", ("right",),
                                                                       ("wrong",), "right")),
        cache_key("openai", "m", "ref-aware-v1", "truthful", JudgeItem("Q?", "A.", ("right",),
                                                                       ("wrong", "x"), "right")),
    ]
    assert len(set(variants)) == len(variants) and base not in variants


def test_judge_cache__round_trips_verdicts_and_uses_wal(tmp_path):
    path = tmp_path / "c.sqlite"
    v = Verdict("yes", 0.75, "prompt text", "Yes.")
    u = Verdict("unscored", None, "p", "Hmm", "unparseable reply")
    with JudgeCache(path) as cache:
        cache.put("k1", backend="openai", model="m", prompt_version="v1", kind="truthful",
                  verdict=v, prompt_tokens=12, completion_tokens=1)
        cache.put("k2", backend="openai", model="m", prompt_version="v1", kind="truthful",
                  verdict=u)
        assert cache.get("missing") is None
    with JudgeCache(path) as reopened:  # persistent
        hit = reopened.get("k1")
        assert hit.verdict == v and (hit.prompt_tokens, hit.completion_tokens) == (12, 1)
        assert reopened.get("k2").verdict == u and len(reopened) == 2
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def _writer(path: str, worker: int, n: int) -> None:
    cache = JudgeCache(path)
    for i in range(n):
        verdict = Verdict("yes" if i % 2 else "no", i / n, f"prompt {worker}-{i}", "r")
        cache.put(f"{worker}-{i}", backend="b", model="m", prompt_version="v", kind="truthful",
                  verdict=verdict)
        cache.get(f"{(worker + 1) % 4}-{i}")  # readers interleave with writers
    cache.close()


def test_judge_cache__concurrent_writer_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    JudgeCache(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with JudgeCache(path) as cache:
        assert len(cache) == 600
        hit = cache.get("3-7")
        assert hit.verdict == Verdict("yes", 7 / 150, "prompt 3-7", "r")
