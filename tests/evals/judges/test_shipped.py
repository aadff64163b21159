"""The offline judges shipped in the package: named by the content hash of their files, loaded
with no build, giving the verdicts recorded when they were built; and a rebuild from the labels
gives the same verdicts."""

import json

import pytest

from evals.judges.shipped import SAMPLE_FILE, content_id, judge_sample, shipped_folder


def _sample(folder):
    return [json.loads(x) for x in (folder / SAMPLE_FILE).read_text().splitlines() if x]


@pytest.mark.parametrize("name", ["quick", "default"])
def test_shipped_folder__named_by_the_content_hash_of_its_files(name):
    folder = shipped_folder(name)
    assert folder is not None, f"no shipped {name} judge of the current recipe"
    assert folder.name == f"{name}-{content_id(folder)}"
    assert len(_sample(folder)) >= 30


def test_make_judge__quick_loads_the_shipped_judge_without_labels_or_build(tmp_path,
                                                                         monkeypatch):
    from evals.judges import make_judge

    monkeypatch.setenv("TRUTHSTEER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TRUTHSTEER_HUMAN_LABELS", str(tmp_path / "no-labels-here"))
    judge = make_judge("quick")  # would need the labels (and minutes) to build
    folder = shipped_folder("quick")
    stored = json.loads((folder / "cfg.json").read_text())["weights_sha256"]
    assert judge.judge_id == f"learned:quick@{stored[:len(judge.judge_id.split('@')[1])]}"
    assert not (tmp_path / "cache" / "judges").exists()
    sample = _sample(folder)
    again = judge_sample(judge, [{k: s[k] for k in ("question", "answer", "correct_answers",
                                                     "incorrect_answers", "best_answer")}
                                 for s in sample])
    for s, a in zip(sample, again):
        assert a["truthful"] == pytest.approx(s["truthful"], abs=1e-4)
        assert a["informative"] == pytest.approx(s["informative"], abs=1e-4)


@pytest.mark.slow
def test_judge_ship__a_rebuild_of_the_quick_judge_gives_the_shipped_verdicts(tmp_path):
    """Rebuilt from TruthfulQA's label files and the packaged development sets (needs the shared
    data): the same P(yes) on the shipped sample, to 1e-3 (refits are deterministic; the
    tolerance covers BLAS summation order across machines)."""
    from evals.judges.default import ship
    from tests.helpers import SHARED_TRUTHFULQA

    if not (SHARED_TRUTHFULQA / "human_truth_dev.jsonl").exists():
        pytest.skip("shared TruthfulQA labels not found")
    folder = ship("quick", SHARED_TRUTHFULQA, tmp_path / "out", None, tmp_path / "work")
    shipped = _sample(shipped_folder("quick"))
    rebuilt = _sample(folder)
    assert [s["answer"] for s in rebuilt] == [s["answer"] for s in shipped]
    for s, r in zip(shipped, rebuilt):
        assert r["truthful"] == pytest.approx(s["truthful"], abs=1e-3)
        assert r["informative"] == pytest.approx(s["informative"], abs=1e-3)


@pytest.mark.parametrize("name", ["quick", "default"])
def test_shipped_folder__the_docs_name_the_shipped_folder_and_its_judge_id(name):
    """docs/learned_judges.md names each shipped folder and the judge id reports print, so a
    reader can check they run the judge the docs measured (a re-ship must update the docs)."""
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[3] / "docs" / "learned_judges.md").read_text()
    folder = shipped_folder(name)
    digest = json.loads((folder / "cfg.json").read_text())["weights_sha256"][:8]
    assert f"`{folder.name}`" in docs
    assert f"`learned:{name}@{digest}`" in docs
