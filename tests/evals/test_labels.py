import json

import pytest

from evals import labels
from evals.errors import InputError
from evals.labels import (
    default_label_files,
    find_label_files,
    is_reference_answer,
    match_questions,
    normalise,
    parse_prompt,
    question_key,
    read_labels,
)
from evals.truthfulqa import Question, TruthfulQA
from tests.helpers import SHARED_TRUTHFULQA


def _line(q, a, last="True:", completion=" yes"):
    return json.dumps({"prompt": f"Q: {q}\nA: {a}\n{last}", "completion": completion}) + "\n"


def _tq():
    return TruthfulQA((Question(0, "Is the sky blue?", "Yes, on a clear day.",
                                ("Yes, on a clear day.", "It looks blue"), ("No, it is green",)),),
                      "tiny", "0" * 64)


def test_parse_prompt__kind_from_last_line():
    assert parse_prompt("Q: Why?\nA: Because.\nTrue:", "x") == ("Why?", "Because.", "truthful")
    assert parse_prompt("Q: Why?\nA: Two\nlines\nHelpful:", "x") == (
        "Why?", "Two\nlines", "informative")
    assert parse_prompt("Q: Why?\nA:\nTrue:", "x") == ("Why?", "", "truthful")
    with pytest.raises(InputError, match="'True:' .* or 'Helpful:'"):
        parse_prompt("Q: Why?\nA: Because.\nCorrect:", "x")


def test_read_labels__rows_and_limit(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text(_line("Is the sky blue?", "Yes", completion=" yes") + "\n"
                 + _line("Is the sky blue?", "No", completion=" no"))
    rows = read_labels(p)
    assert [(r.answer, r.label, r.kind, r.line) for r in rows] == [
        ("Yes", True, "truthful", 1), ("No", False, "truthful", 3)]
    assert len(read_labels(p, limit=1)) == 1


@pytest.mark.parametrize("content,match", [
    ("{not json\n", r"l.jsonl:1: not valid JSON"),
    ('{"prompt": "Q: a\\nA: b\\nTrue:"}\n', r"l.jsonl:1: expected an object with"),
    (_line("q", "a", completion=" maybe"), r"l.jsonl:1: completion ' maybe'"),
    (json.dumps({"prompt": "a question", "completion": " yes"}) + "\n", "last line"),
    ("\n", "no labels in the file"),
])
def test_read_labels__bad_input_one_line_error(tmp_path, content, match):
    p = tmp_path / "l.jsonl"
    p.write_text(content)
    with pytest.raises(InputError, match=match) as err:
        read_labels(p)
    assert "\n" not in str(err.value)


def test_match_questions_and_reference_rows():
    tq = _tq()
    rows = [labels.LabelRow("Is the sky blue?", "yes, on a clear day", "truthful", True, 1),
            labels.LabelRow("Is the sky green?", "No", "truthful", True, 2)]
    matched = match_questions(rows, tq)
    assert matched[0] is tq.questions[0] and matched[1] is None
    assert is_reference_answer("  Yes, on a CLEAR day ", matched[0])  # normalised
    assert is_reference_answer("No, it is green.", matched[0])  # incorrect refs count too
    assert not is_reference_answer("Yes, always.", matched[0])
    assert not is_reference_answer("anything", None)
    assert normalise(" A  b. ") == "a b"
    assert question_key("Is  the sky blue?") == question_key("Is the sky blue?")


def test_find_label_files__both_naming_schemes(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="no human label files"):
        find_label_files(tmp_path)
    (tmp_path / "finetune_truth.jsonl").write_text(_line("q", "a"))
    (tmp_path / "finetune_info.jsonl").write_text(_line("q", "a", "Helpful:"))
    assert find_label_files(tmp_path)[0].name == "finetune_truth.jsonl"
    monkeypatch.setenv(labels.LABELS_ENV, str(tmp_path))
    assert default_label_files(None, tmp_path / "cache")[1].name == "finetune_info.jsonl"


def test_download_label_files__offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(labels.LABELS_ENV, raising=False)
    monkeypatch.setattr(labels, "GITHUB_RAW", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(InputError, match=f"could not download.*set {labels.LABELS_ENV}"):
        default_label_files(None, tmp_path)
    assert not list((tmp_path / "human_labels").glob("*.jsonl"))


def test_read_labels__shared_dev_files_match_truthfulqa():
    from evals.truthfulqa import load_csv
    from tests.helpers import truthfulqa_csv

    tq = load_csv(truthfulqa_csv())
    path = SHARED_TRUTHFULQA / "human_truth_dev.jsonl"
    if not path.exists():
        pytest.skip("shared human labels not found")
    rows = read_labels(path, limit=2000)
    matched = match_questions(rows, tq)
    assert sum(q is not None for q in matched) / len(rows) > 0.99
    ref = sum(is_reference_answer(r.answer, q) for r, q in zip(rows, matched)) / len(rows)
    assert 0.2 < ref < 0.45  # about a third of the labelled rows are reference answers
