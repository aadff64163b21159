import csv

from harness.cli import main
from tests.evals.test_spotcheck import make_run, tiny_truthfulqa


def write_truthfulqa_csv(path, tq):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Type", "Category", "Question", "Best Answer", "Correct Answers",
                    "Incorrect Answers", "Source"])
        for q in tq.questions:
            w.writerow(["Adversarial", "Misc", q.question, q.best_answer,
                        "; ".join(q.correct_answers), "; ".join(q.incorrect_answers), ""])
    return path


def test_spotcheck_cli__sample_then_import(tmp_path, capsys):
    tq = tiny_truthfulqa()
    run = make_run(tmp_path / "run", {"A": 6, "B": 6}, tq,
                   scores={"default": {("A", q): "yes" if q % 3 else "no" for q in range(6)}})
    tqa_csv = write_truthfulqa_csv(tmp_path / "TruthfulQA.csv", tq)
    assert main(["spotcheck", "sample", str(run), "--n", "4", "--seed", "3",
                 "--truthfulqa", str(tqa_csv)]) == 0
    out = capsys.readouterr().out
    assert "Sampled 4 answers from 2 configuration(s), stratified by default's verdicts" in out
    with open(run / "spotcheck" / "sample.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["correct_answers"]  # references filled in from TruthfulQA
    for r in rows:
        r["truthful"], r["informative"] = "yes", "no"
    labels = tmp_path / "filled.csv"
    with open(labels, "w", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["spotcheck", "import", str(run), str(labels)]) == 0
    assert "Imported 4 labelled answer(s)" in capsys.readouterr().out
    assert (run / "labels" / "human.csv").exists()


def test_spotcheck_cli__bad_labels_one_line_exit_2(tmp_path, capsys):
    tq = tiny_truthfulqa()
    run = make_run(tmp_path / "run", {"A": 3}, tq)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,truthful\nZ/1,yes\n")
    assert main(["spotcheck", "import", str(run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown id 'Z/1'" in err
    assert not (run / "labels").exists()
    assert main(["spotcheck", "sample", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_spotcheck_cli__sample_finds_the_truthfulqa_file_the_sweep_recorded(tmp_path, capsys,
                                                                            monkeypatch):
    """A sweep records its data file as run.json ``data.origin`` (harness/sweep/run.py); with no
    --truthfulqa and no $TRUTHSTEER_TRUTHFULQA the sample takes its references from there."""
    from evals.rundir import RunDir
    from evals.truthfulqa import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    tq = tiny_truthfulqa()
    run = make_run(tmp_path / "run", {"A": 4}, tq)
    (tmp_path / "elsewhere").mkdir()
    tqa_csv = write_truthfulqa_csv(tmp_path / "elsewhere" / "TruthfulQA.csv", tq)
    RunDir(run).write_info({"data": {"origin": str(tqa_csv), "sha256": "x", "n_questions": 4},
                            "config": {"data": {"truthfulqa": None}}})
    assert main(["spotcheck", "sample", str(run), "--n", "2"]) == 0
    with open(run / "spotcheck" / "sample.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2
    by_q = {q.question: q for q in tq.questions}
    for r in rows:
        assert r["correct_answers"] == "; ".join(by_q[r["question"]].correct_answers)
        assert r["best_answer"] == by_q[r["question"]].best_answer != ""
