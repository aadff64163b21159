"""`truthsteer generate`: rows written, resume after interruption, one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from harness.cli import main
from tests.helpers import save_tiny_llama, truthfulqa_csv

ROW_KEYS = {"question_id", "question", "model", "hook", "direction", "magnitude", "positions",
            "prompt_token_ids", "answer_token_ids", "answer"}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("tiny"))


def _generate(tiny_folder, out, *extra):
    return main(["generate", "--model", str(tiny_folder), "--truthfulqa", str(truthfulqa_csv()),
                 "--questions", "5", "--max-new-tokens", "6", "--batch-size", "2",
                 "--out", str(out), *extra])


def test_generate__writes_one_row_per_question_with_every_field(tiny_folder, tmp_path):
    out = tmp_path / "a.jsonl"
    assert _generate(tiny_folder, out, "--hook", "blocks.1.hook_resid_post",
                     "--direction", "random:3", "--magnitude", "2") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [0, 1, 2, 3, 4]
    assert ROW_KEYS <= set(rows[0])
    assert rows[0]["direction"] == "random:3" and rows[0]["magnitude"] == 2.0
    assert json.loads((tmp_path / "a.cfg.json").read_text())["interventions"][0]["hook"] == \
        "blocks.1.hook_resid_post"
    assert not (tmp_path / "a.jsonl.partial").exists()


def test_generate__resumes_an_interrupted_run_without_redoing_finished_questions(tiny_folder,
                                                                                  tmp_path):
    full = tmp_path / "full.jsonl"
    assert _generate(tiny_folder, full) == 0
    rows = [json.loads(line) for line in full.read_text().splitlines()]
    # Simulate a run killed after two questions, the third row cut off mid-write.
    out = tmp_path / "b.jsonl"
    (tmp_path / "b.cfg.json").write_text((tmp_path / "full.cfg.json").read_text())
    done = [dict(r, answer=f"SENTINEL {r['question_id']}") for r in rows[:2]]
    partial = "".join(json.dumps(r) + "\n" for r in done) + json.dumps(rows[2])[:25]
    (tmp_path / "b.jsonl.partial").write_text(partial)
    assert _generate(tiny_folder, out) == 0
    resumed = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["answer"] for r in resumed[:2]] == ["SENTINEL 0", "SENTINEL 1"]
    assert resumed[2:] == rows[2:]


def test_generate__safetensors_direction_file(tiny_folder, tmp_path):
    vec = torch.randn(64)
    save_file({"truth": vec, "other": vec.clone()}, str(tmp_path / "dirs.safetensors"))
    out = tmp_path / "c.jsonl"
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
])
def test_generate__bad_input_exits_2_with_one_line_and_writes_nothing(tiny_folder, tmp_path,
                                                                      capsys, extra, fragment):
    save_file({"other": torch.randn(16)}, str(tmp_path / "dirs.safetensors"))
    extra = [e.replace("DIRS", str(tmp_path / "dirs.safetensors")) for e in extra]
    out = tmp_path / "bad.jsonl"
    assert _generate(tiny_folder, out, *extra) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "bad.jsonl.partial").exists()
