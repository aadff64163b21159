"""`truthsteer report` on a small real run: numbers in report.md recomputed from the stored rows."""

from __future__ import annotations

import csv
import json
import re

import pytest

from harness.cli import main
from tests.reports.conftest import wilson_by_hand


def _pct(x: float) -> str:
    return f"{100 * x:.0f}"


def _stored(run_dir):
    """Everything recomputed from the files, without reports/: per cell the verdict lists."""
    cells = {}
    for desc_path in sorted((run_dir / "cells").glob("*.json")):
        desc = json.loads(desc_path.read_text())
        rows = [json.loads(line) for line in desc_path.with_suffix(".jsonl").read_text()
                .splitlines() if line.strip()]
        cells[desc["cell_id"]] = (desc, rows)
    scores = {}
    score_file = next(p for p in (run_dir / "scores").glob("*.jsonl")
                      if not p.name.endswith(".runs.jsonl"))
    for line in score_file.read_text().splitlines():
        row = json.loads(line)
        scores[(row["cell_id"], row["question_id"])] = row
    with open(run_dir / "labels" / "human.csv", newline="") as fh:
        labels = list(csv.DictReader(fh))
    return cells, scores, labels


def _md_headline(md: str) -> dict[tuple[str, str, str], dict[str, str]]:
    """The run's headline table from report.md as {(direction, hook, magnitude): {column: text}}."""
    section = md.split("### Headline table", 1)[1].splitlines()
    start = next(k for k, ln in enumerate(section) if ln.startswith("|"))
    table = []
    for ln in section[start:]:
        if not ln.startswith("|"):
            break
        table.append(ln)
    header = [c.strip() for c in table[0].strip("|").split("|")]
    out = {}
    for ln in table[2:]:
        cells = [c.strip().replace("\\", "") for c in re.split(r"(?<!\\)\|", ln.strip("|"))]
        row = dict(zip(header, cells))
        out[(row["direction"], row["hook"], row["magnitude"])] = row
    return out


@pytest.mark.slow
def test_report__numbers_match_the_stored_rows_of_a_real_run(real_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(real_run), "--out", str(out), "--examples", "2"]) == 0
    assert str(out / "index.html") in capsys.readouterr().out
    md = (out / "report.md").read_text()
    table = _md_headline(md)
    cells, scores, labels = _stored(real_run)
    assert len(table) == len(cells) == 6
    corrected_checked = 0
    for cid, (desc, rows) in cells.items():
        key = ("baseline (unsteered)", "–", "0") if cid == "baseline" else \
            (desc["direction"], desc["hook"], f"{desc['magnitude']:g}")
        got = table[key]
        t, i, both, unscored_t = [], [], [], 0
        for r in rows:
            s = scores[(cid, r["question_id"])]
            tv, iv = s["truthful"]["verdict"], s["informative"]["verdict"]
            if tv == "unscored":
                unscored_t += 1
            else:
                t.append(tv == "yes")
            i.append(iv == "yes")
            if tv != "unscored":
                both.append(tv == "yes" and iv == "yes")
        for column, values in (("% true", t), ("% informative", i), ("% true×informative", both)):
            lo, hi = wilson_by_hand(sum(values), len(values))
            assert got[column] == f"{_pct(sum(values) / len(values))}% [{_pct(lo)}–{_pct(hi)}]", \
                (cid, column)
        assert got["unscored (t/i)"] == f"{unscored_t}/0"
        assert got["answers"] == str(len(rows))
        m = desc["metrics"]
        assert got["MC1"] == f"{m['mc1']:.3f} [{m['mc1_ci'][0]:.3f}–{m['mc1_ci'][1]:.3f}]"
        assert got["MC2"] == f"{m['mc2']:.3f} [{m['mc2_ci'][0]:.3f}–{m['mc2_ci'][1]:.3f}]"
        assert got["CE"] == f"{m['ce']:.3f}" and got["KL"] == f"{m['kl']:.4f}"
        # the human-corrected % true (prediction-powered), by hand from human.csv
        mine = [lab for lab in labels if lab["cell_id"] == cid and lab["truthful"]]
        judge = {r["question_id"]: scores[(cid, r["question_id"])]["truthful"]["verdict"]
                 for r in rows}
        scored = [v == "yes" for v in judge.values() if v != "unscored"]
        pairs = [(lab["truthful"] == "yes", judge[int(lab["question_id"])] == "yes",
                  float(lab["weight"])) for lab in mine
                 if judge[int(lab["question_id"])] != "unscored"]
        if not pairs:
            assert got["human-corrected % true"] == "–"
            continue
        rect = sum((h - j) * w for h, j, w in pairs) / sum(w for *_, w in pairs)
        theta = min(1.0, max(0.0, sum(scored) / len(scored) + rect))
        assert got["human-corrected % true"].startswith(f"{_pct(theta)}%"), cid
        assert got["human-corrected % true"].endswith(f"n={len(pairs)}")
        corrected_checked += 1
    assert corrected_checked >= 2
    assert sum(1 for row in table.values() if "★ best overall" in row["marks"]) == 1
    assert (out / "index.html").stat().st_size > 10_000
    assert "Judge vs people" in md and "Example answers" in md


def test_report_cli__bad_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err
    assert not out.exists()
    assert main(["report", str(tmp_path), "--examples", "-1", "--out", str(out)]) == 2
    assert not out.exists()
