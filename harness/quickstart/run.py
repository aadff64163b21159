"""The whole pipeline on the embedded model in one call: ``truthsteer quickstart``.

Stages (each prints one status line; each is skipped on a rerun when its output exists, and the
sweep and the judge resume where they stopped):

1. data + model     TruthfulQA, a seeded subset of questions, the model (GGUF converted once)
2. dictionary       a small TopK dictionary (1x) on ``blocks.L.hook_resid_post`` activations of
                    TruthfulQA text from questions outside the subset (``truthsteer dict
                    activations`` + ``dict train``), unless ``dictionary`` names one
3. feature          the dictionary feature that best separates true from false answers on
                    other questions held apart from the subset (the feature search, by effect
                    size; steered with the sign that favours true answers)
4. sweep            OUT/sweep.toml: mean-difference directions at a few layers and the feature,
                    × magnitudes (0 = the shared baseline); MC1/MC2, CE/KL, generated answers
5. judge            the judge scores every answer (the offline default judge is built once)
6. spot check       a stratified sample and its labelling page (no labels are invented)
7. report           OUT/report/index.html + report.md

Everything is written under OUT; ``OUT/quickstart.json`` records the settings, and a rerun with
other settings is refused (use another OUT).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import EMBEDDED_MODEL, ConfigError

STAGES = 7


@dataclass(frozen=True)
class QuickstartConfig:
    """Settings of a quickstart run (the defaults are the README's one command)."""

    out: str = "truthsteer-quickstart"
    truthfulqa: str | None = None
    human_labels: str | None = None   # TruthfulQA's human label folder, for the default judge
    dictionary: str | None = None     # an existing dictionary folder (else one is trained)
    judge: str = "auto"               # auto: the default judge if built, else the quick one
    model: str = EMBEDDED_MODEL
    device: str = "auto"
    questions: int = 40               # answered / MC-scored questions (a seeded random subset)
    feature_questions: int = 40       # other questions, used only to choose the feature
    layers: tuple[int, ...] = (8, 15, 22)
    magnitudes: tuple[float, ...] = (0.0, 1.0, 3.0)  # std units (4+ breaks SmolLM2's fluency)
    dictionary_layer: int = 15
    dictionary_tokens: int = 16_384   # activations cached for training
    train_tokens: int = 400_000       # training budget (the cached activations are reshuffled)
    max_new_tokens: int = 32
    prompt_style: str = "auto"        # chat for chat models (short prompts), else the QA primer
    spotcheck: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        object.__setattr__(self, "magnitudes", tuple(float(x) for x in self.magnitudes))
        if self.questions < 4:
            raise ConfigError(f"--questions {self.questions}: need at least 4 (two folds)")
        if self.feature_questions < 8:
            raise ConfigError(f"feature_questions={self.feature_questions}: need at least 8")
        if not self.layers or min(self.layers) < 0 or self.dictionary_layer < 0:
            raise ConfigError(f"--layers {self.layers}: give one or more layer numbers >= 0")
        if 0.0 not in self.magnitudes or len(self.magnitudes) < 2:
            raise ConfigError(f"--magnitudes {self.magnitudes}: include 0 (the baseline) and "
                              "at least one non-zero magnitude")
        if self.spotcheck < 0:
            raise ConfigError(f"--spotcheck {self.spotcheck}: must be >= 0")

    @property
    def hook(self) -> str:
        return f"blocks.{self.dictionary_layer}.hook_resid_post"

    def identity(self) -> dict[str, Any]:
        """What a rerun must match to resume (paths excluded: they may move)."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in ("out", "truthfulqa", "human_labels")}


def split_questions(n_total: int, cfg: QuickstartConfig) -> tuple[list[int], list[int], list[int]]:
    """Seeded, disjoint (pool, feature-choice, dictionary-corpus) question ids."""
    if cfg.questions + cfg.feature_questions >= n_total:
        raise ConfigError(f"--questions {cfg.questions}: too many for {n_total} questions")
    ids = list(range(n_total))
    random.Random(cfg.seed).shuffle(ids)
    pool = sorted(ids[:cfg.questions])
    feature = sorted(ids[cfg.questions:cfg.questions + cfg.feature_questions])
    corpus = sorted(ids[cfg.questions + cfg.feature_questions:])
    return pool, feature, corpus


class Status:
    """One line per stage: ``[k/7] stage: what happened (seconds)``; timings kept for the end."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.timings: dict[str, float] = {}
        self.start = time.time()

    def run(self, k: int, name: str, fn: Callable[[], str]) -> Any:
        print(f"[{k}/{STAGES}] {name} ...", file=self.stream, flush=True)
        t = time.time()
        message = fn()
        self.timings[name] = round(time.time() - t, 1)
        print(f"[{k}/{STAGES}] {name}: {message} ({self.timings[name]:.0f} s)", file=self.stream,
              flush=True)


def check_out(out: Path, cfg: QuickstartConfig) -> None:
    path = out / "quickstart.json"
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8")).get("identity")
        if old != json.loads(json.dumps(cfg.identity())):
            raise ConfigError(f"--out {out}: holds a quickstart with other settings; use another "
                              "--out (or the same options) to resume")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: exists and is not a quickstart folder; choose another")


def corpus_text(tq, ids: list[int], max_chars: int = 400_000) -> str:
    """TruthfulQA text ("Q: ...\\nA: ..." for every reference answer) of the given questions."""
    lines, size = [], 0
    for q in tq.by_id(ids):
        for a in (*q.correct_answers, *q.incorrect_answers):
            line = f"Q: {q.question} A: {a}"
            lines.append(line)
            size += len(line)
        if size > max_chars:
            break
    return "\n".join(lines) + "\n"


QUICK_JUDGE_NOTE = (
    "Judge: the quick judge (the offline default judge's recipe without its language-model "
    "probe: logistic regressions on all-MiniLM-L6-v2 similarities of each answer to the "
    "reference answers, trained on TruthfulQA's human labels). It was used because the default "
    "judge is not built on this machine yet and building it takes far longer than this "
    "quickstart. Its measured agreement with people is in the run's fingerprint below. For the "
    "default judge: `truthsteer judge OUT/run --judge default`, then `truthsteer report OUT/run "
    "--judge <its id> --out OUT/report` (or rerun the quickstart with --judge default).")


def _d(x: Any) -> str:
    return f"{x:+.2f}" if isinstance(x, (int, float)) and x == x else "n/a"


def report_notes(cfg: QuickstartConfig, meta: dict[str, Any]) -> list[str]:
    """The paragraphs the quickstart's report opens with: what was run and what it is not."""
    f = meta.get("feature", {})
    held = ("confirmed" if f.get("confirmed") else "not confirmed") + " on held-out questions"
    return [
        f"Made by `truthsteer quickstart` on {cfg.model}: {cfg.questions} TruthfulQA questions "
        "(a seeded random subset) answered under every configuration, so intervals are wide; "
        "this demonstrates the pipeline, it is not a result. Run `truthsteer sweep` on all 817 "
        "questions for one.",
        f"The dictionary feature {f.get('feature')} at {f.get('hook')} was chosen on "
        f"{len(f.get('question_ids', []))} other questions (effect size d = "
        f"{_d(f.get('effect_size'))}, held-out d = {_d(f.get('heldout_effect_size'))}, {held}; "
        f"method: {f.get('method')}). "
        + ("The dictionary is the one given with --dictionary." if cfg.dictionary else
           f"The dictionary is a 1x TopK trained on only {cfg.dictionary_tokens:,} tokens of "
           "TruthfulQA text (from questions outside the answered subset), so expect a weak, "
           "noisy feature."),
        *([QUICK_JUDGE_NOTE] if meta.get("judge_name") == "quickstart" else []),
        "No human labels exist for this run yet: nothing here is corrected by people. Open "
        f"{meta.get('spotcheck_page', 'the spot-check page')} to label the drawn sample, import "
        "it with `truthsteer spotcheck import`, and rerun the report.",
    ]


def run_quickstart(cfg: QuickstartConfig, progress: bool = True, stream=None) -> Path:
    """Run (or resume) every stage; returns the report's index.html."""
    from evals.truthfulqa import load_truthfulqa
    from harness.config import ModelConfig
    from harness.models import load_model
    from harness.quickstart.steps import choose_feature, judge_answers, sweep_toml, train_dictionary

    out = Path(cfg.out)
    check_out(out, cfg)
    status = Status(stream)
    run_dir = out / "run"
    s: dict[str, Any] = {}

    def data() -> str:
        s["tq"] = tq = load_truthfulqa(cfg.truthfulqa)
        s["pool"], s["feature_ids"], s["corpus_ids"] = split_questions(len(tq), cfg)
        s["model"] = model = load_model(ModelConfig(name=cfg.model, device=cfg.device))
        bad = [x for x in (*cfg.layers, cfg.dictionary_layer) if x >= model.n_layers]
        if bad:
            raise ConfigError(f"--layers: {bad} out of range ({model.name} has "
                              f"{model.n_layers} layers)")
        out.mkdir(parents=True, exist_ok=True)
        _save_meta(out, cfg, {"pool": s["pool"], "data_sha256": tq.sha256})
        return (f"{len(tq)} questions from {tq.origin}; {len(s['pool'])} to answer; model "
                f"{model.name} ({model.n_layers} layers, {model.device})")

    def dictionary() -> str:
        if cfg.dictionary:
            s["dictionary"] = Path(cfg.dictionary)
            if not (s["dictionary"] / "cfg.json").is_file():
                raise ConfigError(f"--dictionary {cfg.dictionary}: not a dictionary folder "
                                  "(no cfg.json; make one with `truthsteer dict train`)")
            return f"using {cfg.dictionary}"
        s["dictionary"] = train_dictionary(cfg, s["tq"], s["corpus_ids"], out)
        return f"{s['dictionary']}"

    def feature() -> str:
        path = out / "feature.json"
        if path.is_file():
            s["feature"] = json.loads(path.read_text(encoding="utf-8"))
        else:
            s["feature"] = choose_feature(s["model"], s["dictionary"],
                                          s["tq"].by_id(s["feature_ids"]), cfg, progress)
            path.write_text(json.dumps(s["feature"], indent=2) + "\n", encoding="utf-8")
        f = s["feature"]
        return (f"feature {f['feature']} (d = {_d(f['effect_size'])}, held out "
                f"{_d(f['heldout_effect_size'])})")

    def sweep() -> str:
        from harness.sweep.run import run_sweep
        from harness.sweep.config import load_config

        s.pop("model", None)  # the sweep loads its own copy
        toml = out / "sweep.toml"
        toml.write_text(sweep_toml(cfg, s["pool"], s["feature"]), encoding="utf-8")
        summary = run_sweep(load_config(toml), run_dir, cfg.truthfulqa, progress=progress)
        return (f"{summary['computed']} cell(s) computed, {summary['already_done']} already "
                f"done, of {summary['cells']} ({toml})")

    def judge() -> str:
        j, judged, total = judge_answers(run_dir, cfg.judge, s["tq"], cfg, progress)
        s["judge_id"] = j.judge_id
        s["judge_name"] = j.info.get("name") if hasattr(j, "info") else None
        return f"{j.judge_id}: judged {judged} of {total} answers"

    def spotcheck() -> str:
        from evals.spotcheck import sample_run

        page = run_dir / "spotcheck" / "label.html"
        s["spotcheck_page"] = str(page)
        if cfg.spotcheck == 0:
            return "skipped (--spotcheck 0)"
        if not page.is_file():
            sample_run(run_dir, n=cfg.spotcheck, judge=s["judge_id"], seed=cfg.seed,
                       truthfulqa=s["tq"])
        return f"label {cfg.spotcheck} answers in {page}"

    def report() -> str:
        from reports.build import write_report

        s["html"], _ = write_report([run_dir], out / "report", judge=s["judge_id"],
                                    notes=report_notes(cfg, s))
        return str(s["html"])

    for k, (name, fn) in enumerate((("data + model", data), ("dictionary", dictionary),
                                    ("feature", feature), ("sweep", sweep), ("judge", judge),
                                    ("spot check", spotcheck), ("report", report)), 1):
        status.run(k, name, fn)
    history = json.loads((out / "quickstart.json").read_text(encoding="utf-8")).get("runs", [])
    history.append({"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "seconds": round(time.time() - status.start, 1), "stages": status.timings})
    _save_meta(out, cfg, {"pool": s["pool"], "data_sha256": s["tq"].sha256, "runs": history})
    return s["html"]


def _save_meta(out: Path, cfg: QuickstartConfig, extra: dict[str, Any]) -> None:
    """OUT/quickstart.json: settings, question pool and each (resumed) run's stage timings."""
    from evals.runs import write_json_atomic

    path = out / "quickstart.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    write_json_atomic(path, {"identity": cfg.identity(), "config": dataclasses.asdict(cfg),
                             "runs": old.get("runs", []), **extra})
