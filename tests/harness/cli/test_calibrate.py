import json

import pytest

from harness.cli import main
from tests.helpers import mini_label_folder, mini_truthfulqa_csv


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A MiniLM-only learned judge trained on the 48 mini questions' labels, a quarter held out."""
    root = tmp_path_factory.mktemp("calibrate")
    folder = mini_label_folder(root)
    out = root / "judge"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRUTHSTEER_CACHE", str(root / "cache"))  # the feature cache, not ~/.cache
        code = main(["judge-train", "--human-truth", str(folder / "human_truth_dev.jsonl"),
                     "--human-info", str(folder / "human_info_dev.jsonl"),
                     "--truthfulqa", str(mini_truthfulqa_csv()), "--out", str(out),
                     "--holdout-frac", "0.25", "--probe-model", "none", "--folds", "3"])
    assert code == 0
    return root, folder, out


def test_judge_train__writes_judge_heldout_labels_and_reports_cv(trained, capsys):
    _root, folder, out = trained
    assert (out / "cfg.json").exists() and (out / "weights.safetensors").exists()
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["recipe"]["probe_model"] is None and cfg["holdout_frac"] == 0.25
    assert {"cv", "heldout"} <= set(cfg["agreement"])
    held = (out / "heldout_truth.jsonl").read_text().splitlines()
    all_lines = (folder / "human_truth_dev.jsonl").read_text().splitlines()
    assert 0 < len(held) < len(all_lines) and set(held) <= set(all_lines)


def test_calibrate__heldout_rows_in_order_with_agreement(trained, capsys, monkeypatch):
    root, _folder, out = trained
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(root / "cache"))
    scores = root / "scores.jsonl"
    capsys.readouterr()
    code = main(["calibrate", "--judge", f"learned:{out}", "--human",
                 str(out / "heldout_truth.jsonl"), "--truthfulqa", str(mini_truthfulqa_csv()),
                 "--out", str(scores)])
    assert code == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # held-out questions: no overlap with training
    assert "model_written" in captured.out and "kappa" in captured.out
    # the surface-only baseline on the same rows, with the judge's margin over it
    assert "surface-only baseline" in captured.out and "margin" in captured.out
    baseline = captured.out.split("surface-only baseline")[1]
    assert "truthful" in baseline and "informative" in baseline
    rows = [json.loads(x) for x in scores.read_text().splitlines()]
    src = (out / "heldout_truth.jsonl").read_text().splitlines()
    assert len(rows) == len(src)
    for row, line in zip(rows, src):
        assert json.loads(line)["prompt"].split("\nA:")[0] == f"Q: {row['question']}"
        assert row["verdict"] in ("yes", "no") and 0 <= row["p_yes"] <= 1
        assert row["kind"] == "truthful" and row["human"] in ("yes", "no")


def test_calibrate__warns_when_judge_trained_on_these_questions(trained, capsys, monkeypatch):
    root, folder, out = trained
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(root / "cache"))
    capsys.readouterr()
    code = main(["calibrate", "--judge", f"learned:{out}", "--human",
                 str(folder / "human_info_dev.jsonl"), "--truthfulqa", str(mini_truthfulqa_csv()),
                 "--limit", "40", "--out", str(root / "s2.jsonl")])
    assert code == 0
    err = capsys.readouterr().err
    assert "were used to train" in err and "optimistic" in err
    assert len((root / "s2.jsonl").read_text().splitlines()) == 40


def test_calibrate__bad_input_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Q: x\\nA: y\\nCorrect:", "completion": " yes"}\n')
    code = main(["calibrate", "--human", str(bad), "--truthfulqa", str(mini_truthfulqa_csv()),
                 "--out", str(tmp_path / "o.jsonl")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'True:'" in err
    assert not (tmp_path / "o.jsonl").exists()
    code = main(["calibrate", "--human", str(bad), "--out", str(tmp_path / "o.txt")])
    assert code == 2 and ".jsonl" in capsys.readouterr().err


@pytest.mark.slow
def test_calibrate__hf_judge_on_the_embedded_model_via_make_judge(trained, capsys):
    root, _folder, out = trained
    scores = root / "hf.jsonl"
    code = main(["calibrate", "--judge", "hf:smollm2-135m-instruct", "--human",
                 str(out / "heldout_truth.jsonl"), "--truthfulqa", str(mini_truthfulqa_csv()),
                 "--limit", "6", "--device", "cpu", "--out", str(scores)])
    assert code == 0
    rows = [json.loads(x) for x in scores.read_text().splitlines()]
    assert len(rows) == 6 and all(r["judge_id"] == "hf:smollm2-135m-instruct" for r in rows)
    assert all(r["verdict"] in ("yes", "no") and r["p_yes"] is not None for r in rows)


def test_calibrate__steered_files_split_per_configuration_and_true_x_informative(
        trained, capsys, monkeypatch):
    root, folder, out = trained
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(root / "cache"))
    lines = [json.loads(x) for x in (out / "heldout_truth.jsonl").read_text().splitlines()]
    question = lines[0]["prompt"].split("\n")[0][3:]
    answers = [("I'm ready.", "chat/broken@L15x12", "test", True, False),
               ("the the the the the the the the the the", "chat/broken@L15x12", "test",
                True, False),
               (lines[0]["prompt"].split("\nA: ")[1].split("\n")[0], "chat/baseline", "test",
                lines[0]["completion"] == " yes", True),
               ("Something else entirely.", "chat/baseline", "train", False, True)]
    paths = {}
    for kind, tail, col in (("truth", "True:", 3), ("info", "Helpful:", 4)):
        paths[kind] = root / f"steered_{kind}.jsonl"
        paths[kind].write_text("".join(json.dumps({
            "prompt": f"Q: {question}\nA: {a[0]}\n{tail}",
            "completion": " yes" if a[col] else " no", "config": a[1], "split": a[2],
            "question_id": 0, "answer_id": f"{a[1]}#{i}", "prompt_style": "chat"}) + "\n"
            for i, a in enumerate(answers)))
    scores = root / "steered_scores.jsonl"
    capsys.readouterr()
    code = main(["calibrate", "--judge", f"learned:{out}", "--human", str(paths["truth"]),
                 str(paths["info"]), "--split", "test", "--truthfulqa", str(mini_truthfulqa_csv()),
                 "--out", str(scores)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "6 labels (split: test)" in printed  # 3 test answers x 2 kinds; the train row is out
    assert "per configuration" in printed and "chat/broken@L15x12" in printed
    assert "true_x_info" in printed
    rows = [json.loads(x) for x in scores.read_text().splitlines()]
    assert len(rows) == 6 and {r["split"] for r in rows} == {"test"}
    assert {r["config"] for r in rows} == {"chat/broken@L15x12", "chat/baseline"}
    assert all(r["nonanswer"]["flagged"] for r in rows if r["config"] == "chat/broken@L15x12")
    code = main(["calibrate", "--judge", f"learned:{out}", "--human",
                 str(out / "heldout_truth.jsonl"), "--split", "test", "--truthfulqa",
                 str(mini_truthfulqa_csv()), "--out", str(root / "x.jsonl")])
    assert code == 2 and "'split' field" in capsys.readouterr().err
