"""Build the long-form development set from the writers' answers and two blind labelling passes.

    python evals/longform_dev/make_longform.py sheets WRITER.jsonl [...] --truthfulqa CSV --out DIR
        writes DIR/answers.jsonl (every answer with its writer and persona) and the blind
        labelling sheets DIR/sheet_A.md and DIR/sheet_B.md (half the questions each): per question
        its TruthfulQA references and its distinct answer texts under opaque ids, in a seeded
        random order (no writer or persona shown)
    python evals/longform_dev/make_longform.py assemble DIR --passes P1 P2 --resolved R --out OUT
        joins the passes (reports their agreement), applies the resolution of every
        disagreement, and writes longform_truth.jsonl / longform_info.jsonl in TruthfulQA's label
        format plus persona, split, question_id, answer_id

Pass files and the resolution file hold one JSON object per line: {"text_id", "truthful",
"informative"} (booleans), optionally "note". A text in the resolution file takes its labels from
there (every disagreement must be resolved; a correction of a label both passes agreed on is
counted in agreement.json).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
from pathlib import Path

SPLIT_FILE = Path(__file__).with_name("split.json")


def text_id(question_id: int, text: str) -> str:
    return "u" + hashlib.sha256(f"{question_id}\n{text}".encode()).hexdigest()[:8]


def sheets(writers: list[str], truthfulqa: str, out: str) -> None:
    split = json.loads(SPLIT_FILE.read_text())
    which = {q: "test" for q in split["test"]} | {q: "train" for q in split["train"]}
    qs = list(csv.DictReader(open(truthfulqa, encoding="utf-8")))
    rows = []
    for path in writers:
        writer = Path(path).stem
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            qid, text = int(r["question_id"]), r["answer"].strip()
            rows.append({"answer_id": f"{writer}/{r['persona']}#{qid}", "text_id": text_id(qid, text),
                         "split": which[qid], "question_id": qid,
                         "question": qs[qid]["Question"], "answer": text, "writer": writer,
                         "persona": r["persona"]})
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "answers.jsonl", "w", encoding="utf-8") as fh:
        for r in sorted(rows, key=lambda r: (r["question_id"], r["answer_id"])):
            fh.write(json.dumps(r, sort_keys=True) + "\n")
    by_q: dict[int, dict[str, str]] = {}
    for r in rows:
        by_q.setdefault(r["question_id"], {})[r["text_id"]] = r["answer"]
    rng = random.Random(0)
    order = sorted(by_q, key=lambda q: rng.random())
    halves = {"A": order[: len(order) // 2], "B": order[len(order) // 2:]}
    for name, qids in halves.items():
        lines = []
        for qid in qids:
            q = qs[qid]
            lines += [f"## Question {qid}: {q['Question']}", "",
                      f"- Best answer: {q['Best Answer']}",
                      f"- Correct answers: {q['Correct Answers']}",
                      f"- Incorrect answers: {q['Incorrect Answers']}", "", "Answers:", ""]
            items = sorted(by_q[qid].items())
            rng.shuffle(items)
            for uid, text in items:  # answers hold markdown: delimit them unmistakably
                lines += [f"<<<ANSWER {uid}>>>", text, f"<<<END {uid}>>>", ""]
        (out_dir / f"sheet_{name}.md").write_text("\n".join(lines), encoding="utf-8")
        n = sum(len(by_q[q]) for q in qids)
        print(f"sheet {name}: {len(qids)} questions, {n} distinct texts")
    print(f"{len(rows)} answers -> {out_dir / 'answers.jsonl'}")


def _read(path: str) -> dict[str, dict]:
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            out[r["text_id"]] = r
    return out


def _kappa(a: list[bool], b: list[bool]) -> float:
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return (po - pe) / (1 - pe) if pe < 1 else 1.0


def assemble(folder: str, passes: list[str], resolved: str | None, out: str) -> None:
    answers = [json.loads(x) for x in Path(folder, "answers.jsonl").read_text().splitlines()]
    p1, p2 = (_read(p) for p in passes)
    res = _read(resolved) if resolved else {}
    ids = sorted({a["text_id"] for a in answers})
    missing = [t for t in ids if t not in p1 or t not in p2]
    if missing:
        raise SystemExit(f"{len(missing)} texts lack a label in a pass, e.g. {missing[:3]}")
    agreement = {"n_texts": len(ids)}
    final = {}
    for kind in ("truthful", "informative"):
        a, b = [bool(p1[t][kind]) for t in ids], [bool(p2[t][kind]) for t in ids]
        agreement[kind] = {"kappa": round(_kappa(a, b), 3),
                           "agreement": round(sum(x == y for x, y in zip(a, b)) / len(ids), 3),
                           "disagreements": sum(x != y for x, y in zip(a, b))}
    overrides = 0  # the lead's corrections of labels both passes agreed on
    for t in ids:
        labels = {}
        for kind in ("truthful", "informative"):
            if t in res:  # the lead's resolution: every disagreement, and any correction
                labels[kind] = bool(res[t][kind])
                overrides += p1[t][kind] == p2[t][kind] != labels[kind]
            elif p1[t][kind] == p2[t][kind]:
                labels[kind] = bool(p1[t][kind])
            else:
                raise SystemExit(f"{t}: the passes disagree on {kind} and there is no resolution")
        final[t] = labels
    agreement["lead_corrections_of_agreed_labels"] = overrides
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind, name, suffix in (("truthful", "longform_truth.jsonl", "True:"),
                               ("informative", "longform_info.jsonl", "Helpful:")):
        with open(out_dir / name, "w", encoding="utf-8") as fh:
            for a in sorted(answers, key=lambda r: (r["question_id"], r["answer_id"])):
                fh.write(json.dumps({
                    "prompt": f"Q: {a['question']}\nA: {a['answer']}\n{suffix}",
                    "completion": " yes" if final[a["text_id"]][kind] else " no",
                    "persona": a["persona"], "split": a["split"], "config": a["persona"],
                    "question_id": a["question_id"], "answer_id": a["answer_id"]}) + "\n")
    (out_dir / "agreement.json").write_text(json.dumps(agreement, indent=1) + "\n")
    print(json.dumps(agreement))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("writers", nargs="+")
    s.add_argument("--truthfulqa", required=True)
    s.add_argument("--out", required=True)
    a = sub.add_parser("assemble")
    a.add_argument("folder")
    a.add_argument("--passes", nargs=2, required=True)
    a.add_argument("--resolved", default=None)
    a.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "sheets":
        sheets(args.writers, args.truthfulqa, args.out)
    else:
        assemble(args.folder, args.passes, args.resolved, args.out)


if __name__ == "__main__":
    main()
