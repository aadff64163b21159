"""Build the steered development set from sweep runs and two labelling passes (see README.md).

    python evals/steered_dev/make_dataset.py sheets RUN_DIR [RUN_DIR ...] --truthfulqa CSV --out DIR
        writes DIR/answers.jsonl (every answer with its configuration) and DIR/sheet.md, the blind
        labelling sheet: per question its references and its distinct answer texts, each between
        ``<<<ANSWER id>>>`` and ``<<<END id>>>`` under an opaque id, in a seeded random order (no
        configuration, magnitude or prompt shown; batches 1 and 2 used ``[id] text`` lines)
    python evals/steered_dev/make_dataset.py assemble DIR --passes P1 P2 --resolved R --out EVALS_DIR
        joins the passes (reports their agreement), applies the resolution of each disagreement,
        and writes steered_truth.jsonl / steered_info.jsonl in TruthfulQA's label format plus
        the fields config, split, question_id, answer_id, prompt_style
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import sys
from pathlib import Path

SPLIT_FILE = Path(__file__).with_name("split.json")


def _short_config(row: dict) -> str:
    if row["kind"] == "none":
        return f"{row['prompt_style']}/baseline"
    layer = row["hook"].split(".")[1] if row["hook"].startswith("blocks.") else row["hook"]
    return f"{row['prompt_style']}/{row['direction']}@L{layer}x{row['magnitude']:g}"


def sheets(runs: list[str], truthfulqa: str, out: str) -> None:
    split = json.loads(SPLIT_FILE.read_text())
    which = {q: "test" for q in split["test"]} | {q: "train" for q in split["train"]}
    qs = list(csv.DictReader(open(truthfulqa, encoding="utf-8")))
    rows = []
    for run in runs:
        for f in sorted(Path(run, "cells").glob("*.jsonl")):
            for line in f.read_text().splitlines():
                r = json.loads(line)
                if r["question_id"] not in which:
                    continue
                text = r["answer"].strip()
                uid = "u" + hashlib.sha256(f"{r['question_id']}\n{text}".encode()).hexdigest()[:8]
                rows.append({"answer_id": f"{_short_config(r)}#{r['question_id']}",
                             "text_id": uid, "split": which[r["question_id"]],
                             "question_id": r["question_id"], "question": r["question"],
                             "answer": text, "config": _short_config(r),
                             "prompt_style": r["prompt_style"], "kind": r["kind"],
                             "direction": r["direction"], "hook": r["hook"],
                             "magnitude": r["magnitude"]})
    Path(out).mkdir(parents=True, exist_ok=True)
    with open(Path(out, "answers.jsonl"), "w", encoding="utf-8") as fh:
        for r in sorted(rows, key=lambda r: (r["question_id"], r["config"])):
            fh.write(json.dumps(r, sort_keys=True) + "\n")
    by_q: dict[int, dict[str, str]] = {}
    for r in rows:
        by_q.setdefault(r["question_id"], {})[r["text_id"]] = r["answer"]
    rng = random.Random(0)
    lines = []
    for qid in sorted(by_q, key=lambda q: rng.random()):
        q = qs[qid]
        lines += [f"## Question {qid}: {q['Question']}", "",
                  f"- Best answer: {q['Best Answer']}",
                  f"- Correct answers: {q['Correct Answers']}",
                  f"- Incorrect answers: {q['Incorrect Answers']}", "", "Answers:", ""]
        items = sorted(by_q[qid].items())
        rng.shuffle(items)
        for uid, text in items:  # markers: an answer may span lines
            lines += [f"<<<ANSWER {uid}>>>", text if text else "(empty)", f"<<<END {uid}>>>", ""]
    Path(out, "sheet.md").write_text("\n".join(lines), encoding="utf-8")
    n_text = sum(len(v) for v in by_q.values())
    print(f"{len(rows)} answers, {n_text} distinct texts, {len(by_q)} questions -> {out}")


def _read_pass(path: str) -> dict[str, tuple[bool, bool]]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            out[r["text_id"]] = (bool(r["truthful"]), bool(r["informative"]))
    return out


def _kappa(a: list[bool], b: list[bool]) -> float:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def assemble(folder: str, passes: list[str], resolved: str | None, out: str) -> None:
    rows = [json.loads(x) for x in Path(folder, "answers.jsonl").read_text().splitlines()]
    p1, p2 = (_read_pass(p) for p in passes)
    ids = sorted({r["text_id"] for r in rows})
    missing = [i for i in ids if i not in p1 or i not in p2]
    if missing:
        sys.exit(f"passes lack labels for {len(missing)} texts, e.g. {missing[:3]}")
    res = _read_pass(resolved) if resolved else {}
    stats = {}
    for k, name in enumerate(("truthful", "informative")):
        a = [p1[i][k] for i in ids]
        b = [p2[i][k] for i in ids]
        agree = sum(x == y for x, y in zip(a, b))
        stats[name] = {"texts": len(ids), "agree": agree, "kappa": round(_kappa(a, b), 3)}
    print(json.dumps(stats))
    final = {}
    for i in ids:
        if p1[i] == p2[i]:
            final[i] = p1[i]
        elif i in res:
            final[i] = res[i]
        else:
            sys.exit(f"text {i}: the passes disagree and no resolution is given")
    Path(out).mkdir(parents=True, exist_ok=True)
    for k, (kind, tag) in enumerate((("truth", "True"), ("info", "Helpful"))):
        with open(Path(out, f"steered_{kind}.jsonl"), "w", encoding="utf-8") as fh:
            for r in sorted(rows, key=lambda r: r["answer_id"]):
                fh.write(json.dumps({
                    "prompt": f"Q: {r['question']}\nA: {r['answer']}\n{tag}:",
                    "completion": " yes" if final[r["text_id"]][k] else " no",
                    "answer_id": r["answer_id"], "config": r["config"], "split": r["split"],
                    "question_id": r["question_id"], "prompt_style": r["prompt_style"]},
                    sort_keys=True) + "\n")
    Path(out, "agreement.json").write_text(json.dumps(stats, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("runs", nargs="+")
    s.add_argument("--truthfulqa", required=True)
    s.add_argument("--out", required=True)
    a = sub.add_parser("assemble")
    a.add_argument("folder")
    a.add_argument("--passes", nargs=2, required=True)
    a.add_argument("--resolved")
    a.add_argument("--out", required=True)
    args = p.parse_args()
    if args.cmd == "sheets":
        sheets(args.runs, args.truthfulqa, args.out)
    else:
        assemble(args.folder, args.passes, args.resolved, args.out)


if __name__ == "__main__":
    main()
