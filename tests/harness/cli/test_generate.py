"""`truthsteer generate`: a one-cell run folder (read by judge, report, spotcheck and export),
resume after interruption, one-line errors for bad input."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import save_file

from evals.rundir import RunDir
from harness.cli import main
from tests.helpers import mini_truthfulqa_csv

ROW_KEYS = {"question_id", "question", "model", "hook", "direction", "magnitude", "positions",
            "prompt_token_ids", "answer_token_ids", "answer"}


def _generate(tiny_folder, out, *extra):
    return main(["generate", "--model", str(tiny_folder), "--truthfulqa", str(mini_truthfulqa_csv()),
                 "--questions", "5", "--max-new-tokens", "6", "--batch-size", "2",
                 "--out", str(out), *extra])


def _rows(run_dir):
    return RunDir.open(run_dir).answers()


def test_generate__writes_a_one_cell_run_folder_with_every_field(tiny_folder, tmp_path):
    out = tmp_path / "a"
    assert _generate(tiny_folder, out, "--hook", "blocks.1.hook_resid_post",
                     "--direction", "random:3", "--magnitude", "2") == 0
    run = RunDir.open(out)
    assert len(run.finished_cells()) == 1
    rows = _rows(out)
    assert [r["question_id"] for r in rows] == [0, 1, 2, 3, 4]
    assert ROW_KEYS | {"cell_id", "kind"} <= set(rows[0])
    assert rows[0]["direction"] == "random:3" and rows[0]["magnitude"] == 2.0
    info = run.info()
    assert info["generate"]["interventions"][0]["hook"] == "blocks.1.hook_resid_post"
    assert info["data"]["origin"] == str(mini_truthfulqa_csv()) and info["cells"] == [rows[0]["cell_id"]]
    desc, _ = next(run.iter_cells())
    assert desc["direction"] == "random:3" and desc["hook"] == "blocks.1.hook_resid_post"
    assert not list((out / "cells").glob("*.partial"))


def test_generate__an_unsteered_run_is_the_baseline_cell(tiny_folder, tmp_path):
    assert _generate(tiny_folder, tmp_path / "b") == 0
    assert RunDir.open(tmp_path / "b").finished_cells() == {"baseline"}


def test_generate__output_is_read_by_judge_report_spotcheck_and_export(tiny_folder, tmp_path,
                                                                      capsys):
    """One run format: what generate writes, judge scores (a real judge: the tiny model asked
    yes/no), report renders, spotcheck samples and export tabulates."""
    out = tmp_path / "run"
    assert _generate(tiny_folder, out, "--hook", "blocks.1.hook_resid_post",
                     "--direction", "random:3", "--magnitude", "4") == 0
    judge = f"hf:{tiny_folder}"
    assert main(["judge", str(out), "--judge", judge, "--device", "cpu", "--no-progress"]) == 0
    scores = list((out / "scores").glob("*.jsonl"))
    scores = [p for p in scores if not p.name.endswith(".runs.jsonl")]
    assert len(scores) == 1 and len(scores[0].read_text().splitlines()) == 5
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert "random:3" in html and "blocks.1.hook_resid_post" in html
    assert main(["spotcheck", "sample", str(out), "--n", "3"]) == 0
    with open(out / "spotcheck" / "sample.csv", newline="") as fh:
        sample = list(csv.DictReader(fh))
    assert len(sample) == 3 and all(r["correct_answers"] for r in sample)
    assert main(["export", str(out), "--out", str(tmp_path / "answers.csv")]) == 0
    with open(tmp_path / "answers.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["question_id"]) for r in table] == [0, 1, 2, 3, 4]
    assert {r["direction"] for r in table} == {"random:3"}
    assert any(k.endswith("_truthful") and table[0][k] in ("yes", "no", "unscored")
               for k in table[0])
    capsys.readouterr()


def test_generate__resumes_an_interrupted_run_without_redoing_finished_questions(tiny_folder,
                                                                                  tmp_path):
    full = tmp_path / "full"
    assert _generate(tiny_folder, full) == 0
    rows = _rows(full)
    # Simulate a run killed after two questions, the third row cut off mid-write.
    out = tmp_path / "b"
    (out / "cells").mkdir(parents=True)
    RunDir(out).write_info(RunDir(full).info())
    done = [dict(r, answer=f"SENTINEL {r['question_id']}") for r in rows[:2]]
    partial = "".join(json.dumps(r) + "\n" for r in done) + json.dumps(rows[2])[:25]
    RunDir(out).partial_cell_path("baseline").write_text(partial)
    assert _generate(tiny_folder, out) == 0
    resumed = _rows(out)
    assert [r["answer"] for r in resumed[:2]] == ["SENTINEL 0", "SENTINEL 1"]
    assert resumed[2:] == rows[2:]
    assert not RunDir(out).partial_cell_path("baseline").exists()


def test_generate__refuses_a_folder_made_with_other_settings(tiny_folder, tmp_path, capsys):
    out = tmp_path / "c"
    assert _generate(tiny_folder, out) == 0
    capsys.readouterr()
    assert _generate(tiny_folder, out, "--max-new-tokens", "3") == 2
    err = capsys.readouterr().err
    assert "other settings" in err and err.count("\n") == 1


def test_generate__safetensors_direction_file(tiny_folder, tmp_path):
    vec = torch.randn(64)
    save_file({"truth": vec, "other": vec.clone()}, str(tmp_path / "dirs.safetensors"))
    out = tmp_path / "c"
    assert _generate(tiny_folder, out, "--hook", "blocks.0.hook_resid_post", "--direction",
                     f"{tmp_path / 'dirs.safetensors'}:truth", "--magnitude", "1") == 0


@pytest.mark.parametrize("extra, fragment", [
    (["--hook", "blocks.7.hook_resid_post", "--direction", "random:1"], "blocks.7.hook_resid_post"),
    (["--hook", "blocks.0.hook_resid_post", "--direction", "nonsense"], "unknown SPEC"),
    (["--hook", "blocks.0.hook_resid_post", "--direction", "missing.safetensors"], "no such file"),
    (["--hook", "blocks.0.hook_resid_post", "--direction", "DIRS:other"], "has size 16"),
    (["--hook", "blocks.0.hook_resid_post", "--direction", "random:1", "--magnitude", "nan"],
     "finite"),
    (["--hook", "blocks.0.attn.hook_z", "--direction", "random:1"], "needs a head"),
    (["--questions", "0"], "--questions 0"),
    (["--batch-size", "0"], "batch_size"),
    (["--out", "x.jsonl"], "give a folder name"),
])
def test_generate__bad_input_exits_2_with_one_line_and_writes_nothing(tiny_folder, tmp_path,
                                                                      capsys, extra, fragment):
    save_file({"other": torch.randn(16)}, str(tmp_path / "dirs.safetensors"))
    extra = [e.replace("DIRS", str(tmp_path / "dirs.safetensors")) for e in extra]
    out = tmp_path / "bad"
    assert _generate(tiny_folder, out, *[str(tmp_path / e) if e == "x.jsonl" else e
                                         for e in extra]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "x.jsonl").exists()
