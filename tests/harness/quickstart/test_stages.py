"""`truthsteer quickstart` end to end on a tiny model: every stage's output, then a resume."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.quickstart.config import QuickstartConfig, partition_questions
from harness.quickstart.stages import run_quickstart, sweep_config
from harness.sweep.config import config_to_toml, parse_config


def _cfg(tiny_folder, out, **kw) -> QuickstartConfig:
    from tests.helpers import mini_truthfulqa_csv

    return QuickstartConfig(
        out=str(out), truthfulqa=str(mini_truthfulqa_csv()), model=str(tiny_folder), device="cpu",
        judge=f"hf:{tiny_folder}", questions=4, feature_questions=8, layers=(1,),
        dictionary_layer=1, magnitudes=(0, 4), dictionary_tokens=1024, train_tokens=4096,
        max_new_tokens=6, spotcheck=6, **kw)


def test_partition_questions__disjoint_seeded_subsets():
    cfg = QuickstartConfig(questions=40, feature_questions=30)
    pool, feature, corpus = partition_questions(817, cfg)
    assert len(pool) == 40 and len(feature) == 30 and len(corpus) == 817 - 70
    assert not (set(pool) & set(feature)) and not (set(pool) & set(corpus))
    assert partition_questions(817, cfg) == (pool, feature, corpus)
    assert partition_questions(817, QuickstartConfig(questions=40, feature_questions=30,
                                                 seed=1))[0] != pool


def test_sweep_toml__parses_and_signs_the_feature_magnitudes():
    cfg = QuickstartConfig(layers=(3, 5), magnitudes=(0, 2, 6))
    sweep = sweep_config(cfg, [1, 4, 9], {"dictionary": "/d/topk-1x", "feature": 7, "sign": -1})
    import tomllib

    assert parse_config(tomllib.loads(config_to_toml(sweep, "a\nheader"))) == sweep  # the copy
    assert sweep.data.questions == (1, 4, 9)
    assert sweep.direction("meandiff").hooks == ("blocks.3.hook_resid_post",
                                                 "blocks.5.hook_resid_post")
    feature = sweep.direction("feature-7")
    assert feature.spec == "feature:/d/topk-1x:7" and feature.magnitudes == (0.0, -2.0, -6.0)


@pytest.mark.slow
def test_quickstart__runs_every_stage_then_resumes_without_redoing_work(tiny_folder, tmp_path,
                                                                         capsys):
    out = tmp_path / "qs"
    html = run_quickstart(_cfg(tiny_folder, out), progress=False)
    printed = capsys.readouterr().out
    assert [f"[{k}/7]" in printed for k in range(1, 8)] == [True] * 7
    assert html == out / "report" / "index.html" and html.is_file()
    assert (out / "report" / "report.md").is_file()
    dictionary = sorted((out / "dictionary").glob("*/cfg.json"))
    assert len(dictionary) == 1 and not (out / "dictionary.partial").exists()
    feature = json.loads((out / "feature.json").read_text())
    assert 0 <= feature["feature"] < 64 and feature["sign"] in (1, -1)
    assert not set(feature["question_ids"]) & set(json.loads(
        (out / "quickstart.json").read_text())["pool"])
    run = out / "run"
    cells = sorted(p.stem for p in (run / "cells").glob("*.jsonl"))
    assert len(cells) == 3 and "baseline" in cells  # baseline + meandiff + feature
    from evals.rundir import RunDir
    from evals.scores import ScoreFile

    # the judge's score files (judge_run also keeps a usage log beside them, as `judge` does)
    scores = [f.path for f in ScoreFile.all(RunDir(run))]
    assert len(scores) == 1 and len(scores[0].read_text().splitlines()) == 3 * 4
    assert (run / "spotcheck" / "label.html").is_file()
    text = html.read_text()
    assert "No human labels exist for this run yet" in text and "feature-" in text
    stamps = {p.name: p.stat().st_mtime_ns for p in (run / "cells").iterdir()}

    assert main(["quickstart", "--out", str(out), "--truthfulqa", _cfg(tiny_folder, out).truthfulqa,
                 "--model", str(tiny_folder), "--device", "cpu", "--judge", f"hf:{tiny_folder}",
                 "--questions", "4", "--layers", "1", "--dictionary-layer", "1",
                 "--magnitudes", "0,4", "--spotcheck", "6", "--no-progress"]) == 2
    assert "other settings" in capsys.readouterr().err  # the CLI's defaults differ: refused
    html = run_quickstart(_cfg(tiny_folder, out), progress=False)
    printed = capsys.readouterr().out
    assert "0 cell(s) computed, 3 already done" in printed and "judged 0 of 12" in printed
    assert {p.name: p.stat().st_mtime_ns for p in (run / "cells").iterdir()} == stamps
