"""The whole pipeline on the embedded model in one call: ``truthsteer quickstart``.

One function per stage over a small :class:`State`; each prints one status line, is skipped on a
rerun when its output exists, and the sweep and the judge resume where they stopped:

1. data + model     TruthfulQA, a seeded subset of questions, the model (GGUF converted once)
2. dictionary       a small TopK dictionary (1x) on ``blocks.L.hook_resid_post`` activations of
                    TruthfulQA text from questions outside the subset (dictionaries.pipeline:
                    cache_corpus_activations + train_from_activations), unless one is given
3. feature          the dictionary feature that best separates true from false answers on
                    other questions held apart from the subset (harness/quickstart/feature.py)
4. sweep            a SweepConfig (saved as OUT/sweep.toml for people): mean-difference
                    directions at a few layers and the feature, x magnitudes (0 = the shared
                    baseline); MC1/MC2, CE/KL, generated answers
5. judge            evals.judging.judge_run over the run (the offline default judge is built
                    once)
6. spot check       a stratified sample and its labelling page (no labels are invented)
7. report           OUT/report/index.html + report.md

Everything is written under OUT; ``OUT/quickstart.json`` records the settings, and a rerun with
other settings is refused (use another OUT).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.quickstart.config import STAGES, QuickstartConfig, check_out, partition_questions
from harness.quickstart.notes import _d

DICTIONARY_NAME = "topk-1x"


@dataclass
class State:
    """What the stages hand each other."""

    cfg: QuickstartConfig
    progress: bool = True
    tq: Any = None
    pool: list[int] = field(default_factory=list)
    feature_ids: list[int] = field(default_factory=list)
    corpus_ids: list[int] = field(default_factory=list)
    model: Any = None
    dictionary: Path | str | None = None  # a folder, or a hub REF (str)
    feature: dict[str, Any] = field(default_factory=dict)
    judge_id: str | None = None
    judge_name: str | None = None
    spotcheck_page: str | None = None
    html: Path | None = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def run_dir(self) -> Path:
        return self.out / "run"


def data(s: State) -> str:
    from evals.truthfulqa import load_truthfulqa
    from harness.loaders import load

    cfg = s.cfg
    s.tq = tq = load_truthfulqa(cfg.truthfulqa)
    s.pool, s.feature_ids, s.corpus_ids = partition_questions(len(tq), cfg)
    s.model = model = load(cfg.model, cfg.device)
    bad = [x for x in (*cfg.layers, cfg.dictionary_layer) if x >= model.n_layers]
    if bad:
        raise ConfigError(f"--layers: {bad} out of range ({model.name} has "
                          f"{model.n_layers} layers)")
    s.out.mkdir(parents=True, exist_ok=True)
    save_meta(s.out, cfg, {"pool": s.pool, "data_sha256": tq.sha256})
    return (f"{len(tq)} questions from {tq.origin}; {len(s.pool)} to answer; model "
            f"{model.name} ({model.n_layers} layers, {model.device})")


def dictionary(s: State) -> str:
    cfg = s.cfg
    if cfg.dictionary:
        from dictionaries.hub import is_dictionary_ref

        if is_dictionary_ref(cfg.dictionary):  # hf://..., saelens://...: loaded when used
            s.dictionary = cfg.dictionary
            return f"using {cfg.dictionary}"
        s.dictionary = Path(cfg.dictionary)
        if not (s.dictionary / "cfg.json").is_file():
            raise ConfigError(f"--dictionary {cfg.dictionary}: not a dictionary folder "
                              "(no cfg.json; make one with `truthsteer dict train`, or give a "
                              "hub REF such as saelens://RELEASE/SAE_ID)")
        return f"using {cfg.dictionary}"
    s.dictionary = train_dictionary(s)
    return f"{s.dictionary}"


def train_dictionary(s: State) -> Path:
    """A 1x TopK dictionary at ``cfg.hook`` on TruthfulQA text: activations cached once, then
    trained on them reshuffled; built in a temp folder beside OUT/dictionary (evals.io.atomic_dir)
    that becomes OUT/dictionary only when finished."""
    import shutil
    from dataclasses import replace

    from dictionaries.config import ActivationConfig, TrainConfig
    from dictionaries.pipeline import cache_corpus_activations, train_from_activations
    from evals.io import atomic_dir
    from harness.config import resolve_device
    from harness.loaders import load
    from harness.quickstart.config import corpus_text

    cfg, folder = s.cfg, s.out / "dictionary"
    found = sorted(p.parent for p in folder.glob("*/cfg.json"))
    if found:
        return found[0]
    with atomic_dir(folder) as tmp:
        corpus = tmp / "corpus.txt"
        corpus.write_text(corpus_text(s.tq, s.corpus_ids), encoding="utf-8")
        acts = tmp / "activations"
        model = s.model if str(s.model.dtype) == "torch.float32" else load(cfg.model, cfg.device,
                                                                           "float32")
        cache_corpus_activations(model.bridge, corpus,
                                 ActivationConfig(hook_name=cfg.hook, context_size=64),
                                 acts, cfg.dictionary_tokens, model_name=cfg.model)
        train_cfg = replace(TrainConfig(seed=cfg.seed), n_tokens=cfg.train_tokens, batch_size=1024,
                            eval_tokens=2048, device=str(resolve_device(cfg.device)))
        train_from_activations(acts, tmp / DICTIONARY_NAME, train_cfg, expansions=(1.0,),
                               options={"architecture": "topk", "k": 16, "seed": cfg.seed},
                               hook=cfg.hook, model_name=cfg.model, seed=cfg.seed,
                               progress=s.progress)
        shutil.rmtree(acts)  # ~50 MB; the corpus beside the dictionary says what it saw
    return folder / DICTIONARY_NAME


def feature(s: State) -> str:
    from evals.io import atomic_write_json
    from harness.quickstart.feature import choose_feature

    path = s.out / "feature.json"
    if path.is_file():
        s.feature = json.loads(path.read_text(encoding="utf-8"))
    else:
        s.feature = choose_feature(s.model, s.dictionary, s.tq.by_id(s.feature_ids), s.cfg,
                                   s.progress)
        atomic_write_json(path, s.feature)
    f = s.feature
    return (f"feature {f['feature']} (d = {_d(f['effect_size'])}, held out "
            f"{_d(f['heldout_effect_size'])})")


def sweep_config(cfg: QuickstartConfig, pool: list[int], feature: dict[str, Any]):
    """The quickstart's SweepConfig: mean-difference directions at ``cfg.layers`` and the chosen
    feature, its magnitudes signed so that + favours the feature's true-answer side."""
    from harness.config import GenerationConfig, ModelConfig
    from harness.directions.spec import FeatureSpec
    from harness.sweep.config import (
        DataConfig,
        DirectionConfig,
        MetricsConfig,
        SweepConfig,
        SweepSettings,
    )

    signed = tuple(0.0 if m == 0 else m * feature["sign"] for m in cfg.magnitudes)
    spec = FeatureSpec(feature["dictionary"], int(feature["feature"]))
    return SweepConfig(
        model=ModelConfig(name=cfg.model, device=cfg.device),
        data=DataConfig(questions=tuple(pool), folds=2),
        generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens, batch_size=16,
                                    prompt_style=cfg.prompt_style),
        metrics=MetricsConfig(answers=True, mc=True, side_effects=True),
        sweep=SweepSettings(magnitudes=cfg.magnitudes, positions="all"),
        directions=(
            DirectionConfig(name="meandiff", kind="meandiff", hooks=tuple(
                f"blocks.{layer}.hook_resid_post" for layer in cfg.layers)),
            DirectionConfig(name=f"feature-{feature['feature']}", kind="spec", spec=str(spec),
                            magnitudes=signed)))


TOML_HEADER = ("Written by `truthsteer quickstart` (edit a copy and run `truthsteer sweep` for "
               "more).\nMagnitudes are in std units of each direction's projection; 0 is the "
               "baseline.\nMean-diff directions for fold f are fitted on the other fold.")


def sweep(s: State) -> str:
    from evals.io import atomic_write_text
    from harness.sweep.config import config_to_toml
    from harness.sweep.run import run_sweep

    s.model = None  # the sweep loads its own copy
    config = sweep_config(s.cfg, s.pool, s.feature)
    toml = s.out / "sweep.toml"
    atomic_write_text(toml, config_to_toml(config, TOML_HEADER))  # for people; not read back
    summary = run_sweep(config, s.run_dir, s.cfg.truthfulqa, progress=s.progress)
    return (f"{summary['computed']} cell(s) computed, {summary['already_done']} already "
            f"done, of {summary['cells']} ({toml})")


def judge(s: State) -> str:
    from evals.judging import judge_run
    from evals.rundir import RunDir
    from harness.loaders import judge_model_loader
    from harness.quickstart.judge import make_quickstart_judge

    j = make_quickstart_judge(s.cfg.judge, judge_model_loader(s.cfg.device), s.tq,
                              s.cfg.human_labels, s.progress)
    result = judge_run(RunDir(s.run_dir), j, truthfulqa=s.tq, progress=s.progress)
    s.judge_id = j.judge_id
    s.judge_name = (j.record() or {}).get("name")
    return f"{j.judge_id}: judged {result['n_judged']} of {result['n_answers']} answers"


def spotcheck(s: State) -> str:
    from evals.spotcheck import sample_run

    page = s.run_dir / "spotcheck" / "label.html"
    s.spotcheck_page = str(page)
    if s.cfg.spotcheck == 0:
        return "skipped (--spotcheck 0)"
    if not page.is_file():
        sample_run(s.run_dir, n=s.cfg.spotcheck, judge=s.judge_id, seed=s.cfg.seed,
                   truthfulqa=s.tq)
    return f"label {s.cfg.spotcheck} answers in {page}"


def report(s: State) -> str:
    from harness.quickstart.notes import report_notes
    from reports.build import write_report

    meta = {"feature": s.feature, "judge_name": s.judge_name,
            "spotcheck_page": s.spotcheck_page}
    s.html, _ = write_report([s.run_dir], s.out / "report", judge=s.judge_id,
                             notes=report_notes(s.cfg, meta))
    return str(s.html)


STAGE_FUNCTIONS: tuple[tuple[str, Callable[[State], str]], ...] = (
    ("data + model", data), ("dictionary", dictionary), ("feature", feature), ("sweep", sweep),
    ("judge", judge), ("spot check", spotcheck), ("report", report))


def run_quickstart(cfg: QuickstartConfig, progress: bool = True, stream=None) -> Path:
    """Run (or resume) every stage; returns the report's index.html."""
    check_out(Path(cfg.out), cfg)
    stream = stream or sys.stdout
    s = State(cfg, progress)
    start, timings = time.time(), {}
    for k, (name, stage) in enumerate(STAGE_FUNCTIONS, 1):
        print(f"[{k}/{STAGES}] {name} ...", file=stream, flush=True)
        t = time.time()
        message = stage(s)
        timings[name] = round(time.time() - t, 1)
        print(f"[{k}/{STAGES}] {name}: {message} ({timings[name]:.0f} s)", file=stream,
              flush=True)
    history = json.loads((s.out / "quickstart.json").read_text(encoding="utf-8")).get("runs", [])
    history.append({"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "seconds": round(time.time() - start, 1), "stages": timings})
    save_meta(s.out, cfg, {"pool": s.pool, "data_sha256": s.tq.sha256, "runs": history})
    return s.html


def save_meta(out: Path, cfg: QuickstartConfig, extra: dict[str, Any]) -> None:
    """OUT/quickstart.json: settings, question pool and each (resumed) run's stage timings."""
    from evals.io import atomic_write_json

    path = out / "quickstart.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    atomic_write_json(path, {"identity": cfg.identity(), "config": dataclasses.asdict(cfg),
                             "runs": old.get("runs", []), **extra})
