"""The sweep runner on a tiny model folder: cells once each, folds without leakage, resume after
SIGKILL, shards, merges, config mismatches, one-line CLI errors, CSV export."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evals.rundir import RunDir
from harness.cli import main
from harness.config import ConfigError
from harness.sweep.config import load_config, parse_config
from harness.sweep.export import cell_answers, export_csv
from harness.sweep.grid import expand_grid, plan_questions
from harness.sweep.merge import merge_runs
from harness.sweep.run import run_sweep
from tests.helpers import REPO, mini_truthfulqa_csv, tiny_llama_folder

MAGNITUDES = [0, 1, 3]   # 7 cells


def config_text(model_dir: Path, ref: Path, magnitudes=MAGNITUDES, extra: str = "",
                questions: int = 8, max_new_tokens: int = 4, answer_questions: int = 6,
                data: Path | None = None) -> str:
    """The tiny sweep config these tests (and the packed and Ray ones) run: ITI, mean-diff and a
    matched random direction over ``magnitudes``."""
    return f"""
[model]
name = "{model_dir}"
device = "cpu"

[data]
truthfulqa = "{data or mini_truthfulqa_csv()}"
questions = {questions}
folds = 2

[generation]
max_new_tokens = {max_new_tokens}
batch_size = 4
prompt_style = "chat"

[metrics]
answer_questions = {answer_questions}
reference_text = "{ref}"

[sweep]
magnitudes = {magnitudes}

[[directions]]
name = "iti"
kind = "iti"
top_k = 2

[[directions]]
name = "md"
kind = "meandiff"
hooks = ["blocks.1.hook_resid_post"]

[[directions]]
name = "rnd"
kind = "random"
match = "md"
{extra}"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    model_dir = tiny_llama_folder(root / "tiny")
    ref = root / "ref.txt"
    ref.write_text("The cat sat on the mat.\nRain falls in the autumn.\nA week has seven days.\n")
    cfg_path = root / "sweep.toml"
    cfg_path.write_text(config_text(model_dir, ref))
    reference = root / "reference_run"
    run_sweep(load_config(cfg_path), reference, progress=False)
    return {"root": root, "model": model_dir, "ref": ref, "config": cfg_path,
            "reference": reference}


def test_run_sweep__every_cell_once_without_fold_leakage(setup):
    cfg = load_config(setup["config"])
    run = setup["reference"]
    cells = {c.cell_id for c in expand_grid(cfg)}
    assert RunDir(run).finished_cells() == cells
    plan = plan_questions(cfg, 817)
    fold_of = plan.fold_of
    for cell_id, rows in cell_answers(run).items():
        assert [r["question_id"] for r in rows] == sorted(plan.answer_ids)
        assert all(r["fold"] == fold_of[r["question_id"]] for r in rows)
        assert all(r["cell_id"] == cell_id for r in rows)
    for name in ("iti", "md"):
        for fold, (train, test) in enumerate(plan.folds):
            desc = json.loads((run / "directions" / f"{name}.fold{fold}.json").read_text())
            assert tuple(desc["train_question_ids"]) == train
            assert not set(train) & set(test)
            answered = {r["question_id"] for cell, rows in cell_answers(run).items()
                        if cell.startswith(name + "__") for r in rows if r["fold"] == fold}
            assert answered and not answered & set(train)
    info = json.loads((run / "run.json").read_text())
    assert info["data"]["sha256"] and info["code"]["package"] and info["model"]["model"]
    # rerunning finds nothing to do
    assert run_sweep(cfg, run, progress=False)["computed"] == 0


def test_run_sweep__metrics_baseline_has_zero_kl_and_kl_grows(setup):
    descs = {p.stem: json.loads(p.read_text())
             for p in (setup["reference"] / "cells").glob("*.json")}
    base = descs["baseline"]["metrics"]
    assert base["kl"] == 0.0 and base["ce"] == pytest.approx(base["ce_baseline"])
    assert base["n_mc"] == 8 and 0 <= base["mc1"] <= 1 and 0 < base["mc2"] < 1
    assert len(descs["baseline"]["mc_per_question"]["mc1"]) == 8
    kl = [descs[f"md__blocks.1.hook_resid_post__m{m}"]["metrics"]["kl"] for m in (1, 3)]
    assert 0 < kl[0] < kl[1] and base["ce_increase"] == 0.0
    # the random control has md's added norms: identical coefficients, different direction
    md, rnd = descs["md__blocks.1.hook_resid_post__m3"], descs["rnd__blocks.1.hook_resid_post__m3"]
    assert md["coefficients"] == rnd["coefficients"]
    assert md["metrics"]["kl"] != rnd["metrics"]["kl"]
    # the summary's paired difference from the baseline, recomputed from the stored per-question
    from harness.sweep.export import cell_summary, summary_markdown

    summary = {c["cell_id"]: c for c in cell_summary(setup["reference"])}
    mine, ref = md["mc_per_question"], descs["baseline"]["mc_per_question"]
    assert mine["question_id"] == ref["question_id"]
    expected = sum(a - b for a, b in zip(mine["mc2"], ref["mc2"])) / len(ref["mc2"])
    got = summary["md__blocks.1.hook_resid_post__m3"]
    assert got["d_mc2"] == pytest.approx(expected)
    assert got["d_mc2_ci"][0] <= got["d_mc2"] <= got["d_mc2_ci"][1]
    assert "d_mc2" not in summary["baseline"]
    assert "Δmc2 [95% CI]" in summary_markdown(setup["reference"])


def test_run_sweep__other_config_on_the_same_dir_is_an_error(setup, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(config_text(setup["model"], setup["ref"], magnitudes=[0, 1]))
    with pytest.raises(ConfigError, match=r"different config \[sweep\]"):
        run_sweep(load_config(other), setup["reference"], progress=False)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
            *args]


def _env() -> dict[str, str]:
    import torch

    # the same thread count as this process, so float reductions (and greedy picks) match
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS=str(torch.get_num_threads()))
    env.pop("TRUTHSTEER_TRUTHFULQA", None)
    return env


@pytest.mark.slow
def test_sweep__killed_mid_run_and_rerun_equals_uninterrupted(setup, tmp_path):
    out = tmp_path / "killed"
    # packs of 2 cells: a pack's cells are written together, so the kill lands between packs
    proc = subprocess.Popen(_cli("sweep", str(setup["config"]), "--out", str(out),
                                 "--no-progress", "--pack", "2"), env=_env(), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if list((out / "cells").glob("*.json")) if (out / "cells").exists() else []:
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = RunDir(out).finished_cells()
    total = {c.cell_id for c in expand_grid(load_config(setup["config"]))}
    assert 1 <= len(done_at_kill) < len(total)
    run_sweep(load_config(setup["config"]), out, progress=False)
    assert cell_answers(out) == cell_answers(setup["reference"])
    leftovers = [p.name for p in (out / "cells").iterdir() if p.name.startswith(".")]
    assert leftovers == []


@pytest.mark.slow
def test_sweep__shards_merge_to_the_unsharded_run(setup, tmp_path):
    """Shards in separate dirs combined with --merge, and shards sharing one dir, both give
    exactly the unsharded run's rows."""
    parts = [tmp_path / f"part{i}" for i in range(2)]
    for i, part in enumerate(parts):
        assert main(["sweep", str(setup["config"]), "--out", str(part), "--shard", f"{i}/2",
                     "--no-progress"]) == 0
    assert RunDir(parts[0]).finished_cells().isdisjoint(RunDir(parts[1]).finished_cells())
    merged = tmp_path / "merged"
    assert main(["sweep", "--merge", *map(str, parts), "--out", str(merged)]) == 0
    assert cell_answers(merged) == cell_answers(setup["reference"])
    assert merge_runs(parts, merged) == 0  # merging again copies nothing
    # shard 1 into shard 0's dir: a shared RUN_DIR (fitted directions reused, not refitted)
    stamp = (parts[0] / "directions" / "iti.fold0.safetensors").stat().st_mtime_ns
    run_sweep(load_config(setup["config"]), parts[0], shard=(1, 2), progress=False)
    assert cell_answers(parts[0]) == cell_answers(setup["reference"])
    assert (parts[0] / "directions" / "iti.fold0.safetensors").stat().st_mtime_ns == stamp
    other = tmp_path / "other"
    (other / "cells").mkdir(parents=True)
    (other / "run.json").write_text(json.dumps({"identity": {"config": "x"}}))
    with pytest.raises(Exception, match="different config"):
        merge_runs([other], merged)


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def test_sweep_cli__bad_configs_fail_with_one_line(setup, tmp_path, capsys):
    def write(text: str) -> str:
        path = tmp_path / f"c{len(list(tmp_path.iterdir()))}.toml"
        path.write_text(text)
        return str(path)
    base = config_text(setup["model"], setup["ref"], magnitudes=[0, 1])
    out = str(tmp_path / "run")
    err = _one_line_error(capsys, ["sweep", write(base + "\nbogus = 1\n"), "--out", out])
    assert "unknown key(s) bogus" in err and "valid:" in err
    err = _one_line_error(capsys, ["sweep", write(base.replace(
        "blocks.1.hook_resid_post", "blocks.9.hook_resid_post")), "--out", out])
    assert "blocks.9.hook_resid_post" in err and "is unknown" in err
    err = _one_line_error(capsys, ["sweep", write(base + """
[[directions]]
name = "file"
kind = "spec"
spec = "/no/such/dir.safetensors"
hooks = ["blocks.0.hook_resid_post"]
"""), "--out", out])
    assert "no such file" in err
    assert not (tmp_path / "run" / "cells").exists()  # nothing half-written
    err = _one_line_error(capsys, ["sweep", str(tmp_path / "missing.toml"), "--out", out])
    assert "no such config file" in err


def test_sweep_cli__subprocess_error_is_one_line_exit_2(setup, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(setup["model"], setup["ref"]).replace("top_k = 2", "top_k = 2\nk = 3"))
    res = subprocess.run(_cli("sweep", str(bad), "--out", str(tmp_path / "r")), env=_env(),
                         cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown key(s) k" in res.stderr


def test_export__csv_with_answers_and_judge_columns(setup, tmp_path, capsys):
    run = setup["reference"]
    rows = [r for rows in cell_answers(run).values() for r in rows]
    scores = run / "scores"
    scores.mkdir(exist_ok=True)
    from evals.scores import answer_sha256

    first, second = rows[0], rows[1]
    (scores / "offline.jsonl").write_text("".join(json.dumps({
        "cell_id": r["cell_id"], "question_id": r["question_id"], "answer_sha256": sha,
        "truthful": {"verdict": "yes", "p_yes": 0.9},
        "informative": {"verdict": "no", "p_yes": 0.2}}) + "\n" for r, sha in (
            (first, answer_sha256(first["answer"])), (second, "stale"))) + '{"torn')
    # a judge's usage log and its agreement record sit beside its scores: neither is a judge
    (scores / "offline.runs.jsonl").write_text(json.dumps({"judge_id": "x", "judged": 2}) + "\n")
    (scores / "offline.judge.json").write_text(json.dumps({"judge_id": "x", "agreement": {}}))
    try:
        out = tmp_path / "answers.csv"
        assert main(["export", str(run), "--out", str(out)]) == 0
        table = list(csv.DictReader(out.open()))
    finally:
        for f in scores.iterdir():
            f.unlink()
        scores.rmdir()
    assert not any(c.startswith(("offline.runs", "offline.judge")) for c in table[0])
    assert len(table) == len(rows)
    for col in ("question_id", "question", "direction", "hook", "magnitude", "answer",
                "offline_truthful", "offline_truthful_p_yes", "offline_informative_p_yes"):
        assert col in table[0]
    hit = [r for r in table if r["cell_id"] == first["cell_id"] and
           int(r["question_id"]) == first["question_id"]]
    assert hit[0]["offline_truthful"] == "yes" and float(hit[0]["offline_informative_p_yes"]) == 0.2
    assert sum(1 for r in table if r["offline_truthful"]) == 1  # the stale score is left out
    assert export_csv(run, tmp_path / "again.csv") == len(rows)


def test_plan_questions__folds_partition_the_pool():
    cfg = parse_config({"model": {"name": "m"}, "data": {"questions": [3, 9, 4, 7, 1, 12, 5]},
                        "metrics": {"answer_questions": 3}})
    plan = plan_questions(cfg, 817)
    tests = [set(t) for _, t in plan.folds]
    assert set().union(*tests) == set(plan.pool) and not tests[0] & tests[1]
    for train, test in plan.folds:
        assert set(train) == set(plan.pool) - set(test)
    assert plan.answer_ids == (1, 3, 4)
    with pytest.raises(ConfigError, match="out of range"):
        plan_questions(cfg, 10)


def test_run_sweep__a_direction_file_never_answers_its_training_questions(setup, tmp_path):
    import numpy as np
    import torch

    from harness.directions.meandiff import meandiff_direction_set
    from harness.directions.store import save_direction_set

    labels = np.arange(12) % 2
    acts = {"blocks.1.hook_resid_post": torch.randn(12, 64) + torch.tensor(labels)[:, None]}
    path = tmp_path / "fitted_elsewhere.safetensors"
    save_direction_set(path, meandiff_direction_set(acts, labels, [0, 0, 0, 0, 1, 1, 1, 1,
                                                                   2, 2, 2, 2]))
    cfg_path = tmp_path / "spec.toml"
    cfg_path.write_text(config_text(setup["model"], setup["ref"], magnitudes=[0, 1]).split(
        "[[directions]]")[0] + f"""
[[directions]]
name = "file"
kind = "spec"
spec = "{path}"
hooks = ["blocks.1.hook_resid_post"]
""")
    out = tmp_path / "run"
    run_sweep(load_config(cfg_path), out, progress=False)
    cells = cell_answers(out)
    assert [r["question_id"] for r in cells["baseline"]] == [0, 1, 2, 3, 4, 5]
    assert [r["question_id"] for r in cells["file__blocks.1.hook_resid_post__m1"]] == [3, 4, 5]
    desc = json.loads((out / "cells" / "file__blocks.1.hook_resid_post__m1.json").read_text())
    assert desc["n_excluded_questions"] == 3 and desc["metrics"]["n_mc"] == 5
    assert set(desc["mc_per_question"]["question_id"]) == {3, 4, 5, 6, 7}
