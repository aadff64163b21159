"""A whole answers-only sweep, today's code vs the first release's cell-by-cell runner.

The grid of issue 19: mean-difference directions (fitted per fold) and matched random
directions at blocks.{8,15,22}.hook_resid_post, magnitudes 2 and 4 (std units), plus the shared
magnitude-0 baseline = 13 cells; 24 questions in 2 folds, every question answered in every cell
(chat prompts, greedy, up to 64 new tokens), batch 16; no MC, no side effects. Each side is one
``truthsteer sweep`` process (model load and direction fitting included: the time a user waits)
on a fresh run folder:

  first    the first release's code, commit 1e36699, extracted with ``git archive`` (a baseline
           that does not move): HF ``generate`` cell by cell in padded batches
  today    this checkout: every cell's questions in one queue through the decode loop
           (continuous batching, per-row steering)

Sides alternate (first/today, then today/first, ...); the median of the per-pair ratios
first/today is printed, and every pair's answers are compared row by row (direction, hook,
magnitude, question): the speed-up counts only if they are identical.

    OMP_NUM_THREADS=2 python benchmarks/sweep_first_release.py [--pairs 3] [--commit 1e36699]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GRID = """\
[model]
name = "smollm2-135m-instruct"

[data]
questions = 24
folds = 2

[generation]
max_new_tokens = 64
batch_size = 16
prompt_style = "chat"

[metrics]
answers = true
mc = false
side_effects = false

[sweep]
magnitudes = [0, 2, 4]
positions = "all"

[[directions]]
name = "meandiff"
kind = "meandiff"
hooks = ["blocks.8.hook_resid_post", "blocks.15.hook_resid_post", "blocks.22.hook_resid_post"]

[[directions]]
name = "random"
kind = "random"
match = "meandiff"
"""


def extract(commit: str, dest: Path) -> Path:
    """The code of ``commit`` as plain files (git archive), importable via PYTHONPATH."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_sweep(code: Path, config: Path, truthfulqa: str, out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(code)}
    check = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"],
                           env=env, cwd=code, capture_output=True, text=True, check=True)
    assert check.stdout.strip().startswith(str(code)), check.stdout  # the code we meant
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "sweep", str(config), "--truthfulqa",
                    truthfulqa, "--out", str(out), "--no-progress"], env=env, cwd=code,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def answers(run: Path) -> dict[tuple, str]:
    rows = {}
    for path in sorted((run / "cells").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            key = (r["direction"], r["hook"], float(r["magnitude"]), r["question_id"])
            rows[key] = r["answer"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--truthfulqa", default=os.environ.get(
        "TRUTHSTEER_TRUTHFULQA", str(ROOT.parent / "shared/data/truthfulqa/TruthfulQA.csv")))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--commit", default="1e36699")
    args = parser.parse_args()
    truthfulqa = str(Path(args.truthfulqa).resolve())

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tmp / "grid.toml"
        config.write_text(GRID)
        sides = {"first": extract(args.commit, tmp / "first"), "today": ROOT}
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        print(f"load average {os.getloadavg()[0]:.1f}; {args.commit} vs today ({head})")
        ratios, times, same = [], {"first": [], "today": []}, []
        for pair in range(args.pairs):
            order = ("first", "today") if pair % 2 == 0 else ("today", "first")
            got = {}
            for side in order:
                out = tmp / f"{side}-{pair}"
                times[side].append(run_sweep(sides[side], config, truthfulqa, out))
                got[side] = answers(out)
                print(f"pair {pair + 1} {side}: {times[side][-1]:.1f} s, "
                      f"{len(got[side])} answers", flush=True)
            ratios.append(times["first"][-1] / times["today"][-1])
            differ = [k for k in got["first"] if got["first"][k] != got["today"].get(k)]
            same.append(not differ and got["first"].keys() == got["today"].keys())
            if differ:
                print(f"  {len(differ)} answers differ, e.g. {differ[:3]}")
        print(f"first release {statistics.median(times['first']):.1f} s, today "
              f"{statistics.median(times['today']):.1f} s (medians); per-pair ratios "
              f"{[round(r, 2) for r in ratios]}, median {statistics.median(ratios):.2f}x; "
              f"identical answers in every pair: {all(same)}; load average "
              f"{os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
