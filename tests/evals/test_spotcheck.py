import csv
import json
from pathlib import Path

import pytest

from evals.errors import InputError
from evals.rundir import RunDir
from evals.scores import answer_sha256
from evals.spotcheck import (
    OVERSAMPLE,
    allocate,
    allocate_weighted,
    draw_sample,
    import_labels,
    parse_labels_csv,
    read_human_labels,
    read_verdicts,
    sample_run,
)
from evals.truthfulqa import Question, TruthfulQA
from tests.helpers import headless_chromium

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> & "quotes"'


def tiny_truthfulqa(n: int = 40) -> TruthfulQA:
    qs = tuple(Question(id=i, question=f"Question {i}?", best_answer=f"Best {i}",
                        correct_answers=(f"Best {i}", f"Also right {i}"),
                        incorrect_answers=(f"Wrong {i} <b>bold</b>",)) for i in range(n))
    return TruthfulQA(qs, "tiny", "0" * 64)


def make_run(root: Path, cells: dict[str, int], tq: TruthfulQA, scores: dict | None = None,
             evil_answer: bool = False) -> Path:
    """A run dir with ``cells`` {cell_id: n answers}; optional scores {slug: {(cell, q): 'yes'}}."""
    for cell, n in cells.items():
        rows = [{"cell_id": cell, "question_id": q, "question": tq.questions[q].question,
                 "answer": EVIL if evil_answer and q == 0 else f"answer {q} of {cell}"}
                for q in range(n)]
        RunDir(root).write_cell(cell, rows, {"cell_id": cell})
    for slug, verdicts in (scores or {}).items():
        (root / "scores").mkdir(exist_ok=True)
        with open(root / "scores" / f"{slug}.jsonl", "w") as fh:
            for (cell, q), v in verdicts.items():
                fh.write(json.dumps({"cell_id": cell, "question_id": q, "judge_id": slug,
                                     "truthful": {"verdict": v, "p_yes": 0.5},
                                     "informative": {"verdict": "yes", "p_yes": 0.9}}) + "\n")
    return root


def test_allocate__equal_split_capped_by_stratum_size():
    assert allocate({"a": 10, "b": 2, "c": 50}, 12) == {"a": 5, "b": 2, "c": 5}
    assert allocate({"a": 10, "b": 2, "c": 50}, 100) == {"a": 10, "b": 2, "c": 50}
    assert sum(allocate({"a": 3, "b": 3, "c": 3}, 7).values()) == 7


def test_allocate_weighted__shares_follow_weights_capped_and_equal_weights_match_allocate():
    sizes = {"a": 10, "b": 2, "c": 50, "d": 7}
    for n in (1, 5, 12, 30, 100):
        assert allocate_weighted(sizes, n, {}) == allocate(sizes, n)
    assert allocate_weighted({"a": 40, "b": 40, "c": 40}, 25, {"a": 3.0}) == {
        "a": 15, "b": 5, "c": 5}
    # a small oversampled stratum is capped and the rest goes to the others
    assert allocate_weighted({"a": 4, "b": 40, "c": 40}, 24, {"a": 3.0}) == {
        "a": 4, "b": 10, "c": 10}


def test_draw_sample__oversampled_cells_get_more_draws_and_keep_unbiased_weights():
    tq = tiny_truthfulqa()
    answers = [{"cell_id": c, "question_id": q, "question": tq.questions[q].question,
                "answer": "x"} for c in ("A", "B", "C") for q in range(40)]
    verdicts = {("A", q): ("yes" if q < 30 else "no", "yes") for q in range(40)}
    items = draw_sample(answers, verdicts, tq, n=25, seed=1, oversample=["A", "missing"])
    per_cell = {c: [it for it in items if it.cell_id == c] for c in "ABC"}
    assert [len(per_cell[c]) for c in "ABC"] == [3 * 5, 5, 5] and OVERSAMPLE == 3.0
    # within a cell each stratum's weights still sum to its size (the PPI correction's design)
    for c, strata in (("A", {"yes": 30, "no": 10}), ("B", {"none": 40})):
        for v, size in strata.items():
            drawn = [it for it in per_cell[c] if (it.judge_truthful or "none") == v]
            assert sum(it.weight for it in drawn) == pytest.approx(size)


def test_draw_sample__stratified_by_cell_and_verdict_with_weights():
    tq = tiny_truthfulqa()
    answers = [{"cell_id": c, "question_id": q, "question": tq.questions[q].question,
                "answer": "x"} for c in ("A", "B") for q in range(40)]
    verdicts = {("A", q): ("yes" if q < 35 else "no", "yes") for q in range(40)}
    items = draw_sample(answers, verdicts, tq, n=20, seed=1)
    assert len(items) == 20 and len({it.id for it in items}) == 20
    a_items = [it for it in items if it.cell_id == "A"]
    assert len(a_items) == 10
    assert sum(it.judge_truthful == "no" for it in a_items) == 5  # rare verdict oversampled
    assert {it.weight for it in a_items if it.judge_truthful == "yes"} == {7.0}
    assert {it.weight for it in a_items if it.judge_truthful == "no"} == {1.0}
    assert {it.weight for it in items if it.cell_id == "B"} == {4.0}  # 40 unscored, 10 drawn
    assert items[0].correct_answers == tq.questions[items[0].question_id].correct_answers
    again = draw_sample(answers, verdicts, tq, n=20, seed=1)
    assert [it.id for it in again] == [it.id for it in items]
    assert {it.id for it in draw_sample(answers, verdicts, tq, n=20, seed=2)} != {
        it.id for it in items}


def test_read_verdicts__several_judges_need_a_choice(tmp_path):
    tq = tiny_truthfulqa()
    run = make_run(tmp_path, {"A": 4}, tq, scores={"j1": {("A", 0): "yes"},
                                                     "j2": {("A", 0): "no"}})
    (run / "scores" / "j1.runs.jsonl").write_text('{"requests": 1}\n')  # usage log, not scores
    with open(run / "scores" / "j2.jsonl", "a") as fh:
        fh.write('{"cell_id": "A", "question_id": 1, "trut')  # a torn last line is skipped
    with pytest.raises(InputError, match="several judges"):
        read_verdicts(run)
    judge_id, verdicts = read_verdicts(run, "j2")
    assert judge_id == "j2" and verdicts[("A", 0)] == ("no", "yes")
    with pytest.raises(InputError, match="no scores by that judge"):
        read_verdicts(run, "j3")


def test_sample_run__writes_csv_page_and_design_with_everything_escaped(tmp_path):
    tq = tiny_truthfulqa()
    run = make_run(tmp_path, {"A": 5, "B": 5}, tq, evil_answer=True)
    paths, summary = sample_run(run, n=10, truthfulqa=tq)
    assert summary == {"n": 10, "cells": 2, "judge_id": None}
    page = paths[1].read_text()
    assert "window.__pwned" in page and "<script>window" not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "Wrong 0 &lt;b&gt;bold&lt;/b&gt;" in page
    assert page.count("<script") == 1  # only the page's own (nonce-carrying) script
    with open(paths[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10 and EVIL in {r["answer"] for r in rows}
    design = json.loads(paths[2].read_text())
    assert len(design["items"]) == 10 and design["stratified_by"] == ["cell_id"]


def test_parse_labels_csv__one_line_errors():
    ids = {"A/0", "A/1"}
    ok = parse_labels_csv("id,truthful,informative\nA/0,yes,\nA/1,False,1\n", "l.csv", ids)
    assert ok == {"A/0": {"truthful": "yes", "informative": ""},
                  "A/1": {"truthful": "no", "informative": "yes"}}
    for text, match in [("id,truthful\nA/9,yes\n", r"l.csv:2: unknown id 'A/9'"),
                        ("id,truthful\nA/0,yes\nA/0,no\n", r"l.csv:3: duplicate id .*line 2"),
                        ("id,truthful\nA/0,maybe\n", r"l.csv:2: truthful='maybe'"),
                        ("name,truthful\nA/0,yes\n", "needs an 'id' column")]:
        with pytest.raises(InputError, match=match) as err:
            parse_labels_csv(text, "l.csv", ids)
        assert "\n" not in str(err.value)


def test_import_labels__all_or_nothing_then_merge(tmp_path):
    tq = tiny_truthfulqa()
    run = make_run(tmp_path, {"A": 5}, tq)
    sample_run(run, n=5, truthfulqa=tq)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,truthful,informative\nA/0,yes,yes\nA/1,perhaps,no\n")
    with pytest.raises(InputError, match="perhaps"):
        import_labels(run, bad)
    assert not (run / "labels").exists()  # nothing half-imported
    good = tmp_path / "good.csv"
    good.write_text("id,truthful,informative\nA/0,yes,yes\nA/1,no,\nA/2,,\n")
    assert import_labels(run, good) == {"imported": 2, "updated": 0, "total": 2}
    again = tmp_path / "again.csv"
    again.write_text("id,truthful,informative\nA/1,yes,no\nA/3,no,no\n")
    assert import_labels(run, again) == {"imported": 2, "updated": 1, "total": 3}
    stored = {r["id"]: r for r in read_human_labels(run)}
    assert stored["A/1"]["truthful"] == "yes" and stored["A/1"]["informative"] == "no"
    assert stored["A/0"]["weight"] == "1.0" and stored["A/3"]["cell_id"] == "A"


@pytest.mark.slow
def test_label_page__clicks_keys_save_and_import_in_headless_chromium(tmp_path):
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from harness.cli import main

    tq = tiny_truthfulqa()
    run = make_run(tmp_path / "run", {"A": 2, "B": 1}, tq, evil_answer=True)
    paths, _ = sample_run(run, n=3, truthfulqa=tq)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = headless_chromium(download_dir=downloads)
    try:
        driver.get(paths[1].resolve().as_uri())
        ids = [el.get_attribute("data-id") for el in driver.find_elements(By.CSS_SELECTOR, ".item")]
        assert sorted(ids) == ["A/0", "A/1", "B/0"]

        def current():
            return driver.find_element(By.CSS_SELECTOR, ".item.current")

        def keys(text):
            ActionChains(driver).send_keys(text).perform()

        # the hostile answer is shown as text and none of it ran
        evil = next(el for el in driver.find_elements(By.CSS_SELECTOR, ".item")
                    if el.get_attribute("data-id") in ("A/0", "B/0")
                    and "__pwned" in el.get_attribute("textContent"))
        assert evil.find_element(By.CSS_SELECTOR, ".answer").get_attribute("textContent") == EVIL
        assert driver.execute_script("return window.__pwned") is None

        assert current().get_attribute("data-id") == ids[0]
        keys("ti")  # item 1: true, informative (keys)
        keys("j")
        assert current().get_attribute("data-id") == ids[1]
        current().find_element(By.CSS_SELECTOR, "button[data-kind=truthful][data-value=no]").click()
        current().find_element(By.CSS_SELECTOR, "button[data-kind=informative][data-value=no]").click()
        keys("j")
        keys("k")  # back and forth
        assert current().get_attribute("data-id") == ids[1]
        assert driver.find_element(By.ID, "pos").text == "2 / 3"
        keys("j")
        keys("f")  # item 3: truthful only
        keys("u")
        keys("i")  # changed mind: informative after all
        assert driver.find_element(By.ID, "done").text == "3 fully labelled"
        driver.refresh()  # labels survive a reload (localStorage)
        assert driver.find_element(By.ID, "done").text == "3 fully labelled"
        driver.find_element(By.ID, "save").click()
        target = downloads / "labels.csv"
        deadline = time.time() + 20
        while not target.exists() and time.time() < deadline:
            time.sleep(0.2)
        assert target.exists(), f"no download in {list(downloads.iterdir())}"
    finally:
        driver.quit()
    with open(target, newline="") as fh:
        saved = {r["id"]: (r["truthful"], r["informative"]) for r in csv.DictReader(fh)}
    assert saved == {ids[0]: ("yes", "yes"), ids[1]: ("no", "no"), ids[2]: ("no", "yes")}
    assert main(["spotcheck", "import", str(run), str(target)]) == 0
    stored = {r["id"]: (r["truthful"], r["informative"]) for r in read_human_labels(run)}
    assert stored == saved


def test_sample_run__verdict_on_a_changed_answer_does_not_count(tmp_path):
    tq = tiny_truthfulqa()
    run = make_run(tmp_path, {"A": 2}, tq)
    (run / "scores").mkdir()
    rows = [{"cell_id": "A", "question_id": q, "judge_id": "j", "prompt_version": "v",
             "answer_sha256": sha, "truthful": {"verdict": "yes"},
             "informative": {"verdict": "yes"}}
            for q, sha in ((0, answer_sha256("answer 0 of A")), (1, answer_sha256("old text")))]
    (run / "scores" / "j.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths, _ = sample_run(run, n=2, truthfulqa=tq)
    items = {it["id"]: it for it in json.loads(paths[2].read_text())["items"]}
    assert items["A/0"]["judge_truthful"] == "yes"
    assert items["A/1"]["judge_truthful"] is None
