"""Train dictionaries from cached activations or a model + corpus, evaluate, save each as a folder.

``train_from_activations`` and ``train_from_corpus`` are what ``truthsteer dict train`` and the
quickstart call; ``cache_corpus_activations`` is ``truthsteer dict activations``.

One dictionary is written AT ``out_dir`` (so ``feature:OUT_DIR:ID`` names it)::

    out_dir/  cfg.json  sae_weights.safetensors  truthsteer.json  metrics.json  log.jsonl

Several (one stream, e.g. several expansions) go in one folder each, with a summary::

    out_dir/
      relu-2x/                 one folder per dictionary (SAELens layout, see io.py)
        cfg.json  sae_weights.safetensors  truthsteer.json  metrics.json  log.jsonl
      summary.json             every dictionary's metrics
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from dictionaries import activations as A
from dictionaries.config import (
    ActivationConfig,
    DictionaryConfig,
    DictionaryConfigError,
    TrainConfig,
    to_dict,
)
from dictionaries.evaluate import reconstruction_report, spliced_losses, spliced_losses_many
from dictionaries.io import dictionary_name, save_dictionary
from dictionaries.trainer import train
from evals.io import atomic_write_json  # the one leaf module dictionaries may import

DOWNSTREAM_CONTEXTS = 64


def train_and_save(cfgs: list[DictionaryConfig], batches: Iterable[torch.Tensor],
                   train_cfg: TrainConfig, out_dir: Path, *, eval_acts: torch.Tensor | None = None,
                   metadata: dict[str, Any] | None = None, model: Any = None,
                   eval_contexts: Sequence[torch.Tensor] | None = None, progress: bool = True
                   ) -> dict[Path, dict[str, Any]]:
    """Train ``cfgs`` on ``batches``, evaluate on held-out data, save; returns folder -> summary.

    One dictionary is saved at ``out_dir`` itself, several in ``out_dir/<name>/`` (see the module
    docstring). Refuses to overwrite an existing dictionary. ``model`` + ``eval_contexts`` (token
    contexts) add the downstream loss-recovered numbers.
    """
    names = [dictionary_name(c) for c in cfgs]
    if len(set(names)) != len(names):
        raise DictionaryConfigError(f"two dictionaries would share a folder: {names}")
    single = len(cfgs) == 1
    paths = [out_dir] if single else [out_dir / name for name in names]
    for path in paths:
        taken = (path / "cfg.json").exists() if single else path.exists()
        if taken:
            what = "holds a dictionary" if single else "exists"
            raise DictionaryConfigError(f"{path} already {what} "
                                        "(choose another --out or remove it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_paths = [out_dir / "log.jsonl"] if single else \
        [out_dir / f".{name}.log.jsonl" for name in names]
    for p in log_paths:
        p.unlink(missing_ok=True)
    trained = train(cfgs, batches, train_cfg, log_paths=log_paths, progress=progress)
    results: dict[Path, dict[str, Any]] = {}
    for path, cfg, td, log in zip(paths, cfgs, trained, log_paths):
        summary: dict[str, Any] = {"train": td.summary}
        ev: dict[str, Any] = {}
        if eval_acts is not None and len(eval_acts):
            ev.update(reconstruction_report(td.sae, eval_acts))
        if model is not None and eval_contexts:
            ev.update(spliced_losses(model, td.sae, list(eval_contexts)[:DOWNSTREAM_CONTEXTS],
                                     cfg.hook_name))
        summary["eval"] = ev
        extra = {"dictionary_config": to_dict(cfg), "train_config": to_dict(train_cfg),
                 "bos_excluded": True, **(metadata or {}), "summary": summary}
        meta = {k: v for k, v in (metadata or {}).items()
                if k in ("dataset_path", "context_size")}
        if cfg.architecture == "relu":
            meta["l1_coefficient"] = cfg.l1_coefficient
        save_dictionary(td.sae, path, metadata=meta, extra=extra)
        atomic_write_json(path / "metrics.json", summary)
        if log.exists() and log != path / "log.jsonl":
            log.replace(path / "log.jsonl")
        results[path] = summary
    if not single:
        summary_file = out_dir / "summary.json"
        previous = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        atomic_write_json(summary_file, {**previous, **{p.name: r for p, r in results.items()}})
    return results


def dictionary_configs(d_in: int, expansions: Sequence[float], *, model_name: str, hook: str,
                       **options: Any) -> list[DictionaryConfig]:
    """One config per expansion (d_sae = expansion x d_in); ``options``: architecture, seed, k,
    l1_coefficient, ..."""
    return [DictionaryConfig.from_expansion(d_in, e, model_name=model_name, hook_name=hook,
                                            **options) for e in expansions]


def train_from_activations(activations: str | Path, out_dir: str | Path, train_cfg: TrainConfig,
                           *, expansions: Sequence[float] = (2.0,),
                           options: dict[str, Any] | None = None, hook: str | None = None,
                           model_name: str | None = None, seed: int = 0, progress: bool = True
                           ) -> dict[Path, dict[str, Any]]:
    """Train on a cached activation file/folder (``cache_corpus_activations``); the last tenth
    (at most ``train_cfg.eval_tokens``) is held out for the metrics. ``hook``/``model_name``
    default to what the cache recorded."""
    acts = A.load_activations(activations)
    n_eval = min(train_cfg.eval_tokens, len(acts) // 10)
    eval_acts, train_acts = acts[len(acts) - n_eval:], acts[: len(acts) - n_eval]
    batches = A.tensor_batches(train_acts, train_cfg.batch_size, seed=seed)
    cached = A.cache_info(activations)  # what `dict activations` recorded, if anything
    meta = {"dataset_path": str(activations),
            **({"context_size": cached["context_size"]} if "context_size" in cached else {})}
    cfgs = dictionary_configs(acts.shape[1], expansions,
                              model_name=model_name or cached.get("model_name", ""),
                              hook=hook or cached.get("hook_name", ""), **(options or {}))
    return train_and_save(cfgs, batches, train_cfg, Path(out_dir), eval_acts=eval_acts,
                          metadata=meta, progress=progress)


def train_from_corpus(model: Any, corpus: str | Path, out_dir: str | Path,
                      act_cfg: ActivationConfig, train_cfg: TrainConfig, *, model_name: str,
                      expansions: Sequence[float] = (2.0,), options: dict[str, Any] | None = None,
                      seed: int = 0, progress: bool = True) -> dict[Path, dict[str, Any]]:
    """Train on activations streamed from ``model`` (a TransformerLens-style bridge) over
    ``corpus``; the first contexts (``train_cfg.eval_tokens`` tokens) are held out for the
    metrics, including loss recovered; a corpus shorter than the budget is read again."""
    n_eval_ctx = math.ceil(train_cfg.eval_tokens / (act_cfg.context_size - 1))
    contexts_eval = list(itertools.islice(corpus_passes(corpus, act_cfg, model, 0), n_eval_ctx))
    eval_acts = (torch.cat(list(A.stream_activations(model, contexts_eval, act_cfg)))
                 if contexts_eval else None)
    chunks = A.stream_activations(model, corpus_passes(corpus, act_cfg, model, n_eval_ctx),
                                  act_cfg)
    batches = A.shuffle_batches(chunks, train_cfg.batch_size, act_cfg.buffer_tokens, seed)
    d_in = int(eval_acts.shape[1]) if eval_acts is not None else int(model.cfg.d_model)
    cfgs = dictionary_configs(d_in, expansions, model_name=model_name, hook=act_cfg.hook_name,
                              **(options or {}))
    return train_and_save(cfgs, batches, train_cfg, Path(out_dir), eval_acts=eval_acts,
                          metadata={"dataset_path": str(corpus),
                                    "context_size": act_cfg.context_size},
                          model=model, eval_contexts=contexts_eval, progress=progress)


def corpus_passes(corpus: str | Path, cfg: ActivationConfig, model: Any, skip: int
                  ) -> Iterator[torch.Tensor]:
    """Token contexts of the corpus after the first ``skip`` (held out), repeated while the
    training budget lasts (a corpus shorter than the budget is read again)."""
    while True:
        contexts = A.iter_contexts(A.read_texts(corpus, cfg.text_column), model.tokenizer,
                                   cfg.context_size)
        n = 0
        for ctx in itertools.islice(contexts, skip, None):
            n += 1
            yield ctx
        if n == 0:
            if skip == 0:
                raise DictionaryConfigError(f"--corpus {corpus}: no text long enough for "
                                            f"one context of {cfg.context_size} tokens")
            raise DictionaryConfigError(f"--corpus {corpus}: every context is held out "
                                        "for evaluation (use fewer --eval-tokens)")


def cache_corpus_activations(model: Any, corpus: str | Path, act_cfg: ActivationConfig,
                             out_dir: str | Path, n_tokens: int, model_name: str) -> list[Path]:
    """``n_tokens`` activations at ``act_cfg.hook_name`` over ``corpus``, as safetensors shards
    in ``out_dir`` (with what was recorded, for ``train_from_activations``)."""
    contexts = A.iter_contexts(A.read_texts(corpus, act_cfg.text_column), model.tokenizer,
                               act_cfg.context_size)
    return A.cache_activations(A.stream_activations(model, contexts, act_cfg), out_dir, n_tokens,
                               metadata={"model_name": model_name, "hook_name": act_cfg.hook_name,
                                         "corpus": str(corpus),
                                         "context_size": act_cfg.context_size,
                                         "bos_excluded": True})


def evaluate_dictionaries(model: Any, saes: Sequence[Any], folders: Sequence[str | Path],
                          corpus: str | Path, act_cfg: ActivationConfig, n_contexts: int,
                          skip_contexts: int = 0) -> list[dict[str, Any]]:
    """FVU, L0, dead share and loss recovered of each dictionary (one hook) on ``n_contexts``
    corpus contexts after the first ``skip_contexts``; each report is also written to
    FOLDER/eval.json."""
    contexts = list(itertools.islice(A.iter_contexts(
        A.read_texts(corpus, act_cfg.text_column), model.tokenizer, act_cfg.context_size),
        skip_contexts, skip_contexts + n_contexts))
    if not contexts:
        raise DictionaryConfigError(f"--corpus {corpus}: no contexts left after skipping "
                                    f"{skip_contexts}")
    acts = torch.cat(list(A.stream_activations(model, contexts, act_cfg)))
    downstream = spliced_losses_many(model, saes, contexts, act_cfg.hook_name)
    reports = []
    for folder, sae, losses in zip(folders, saes, downstream):
        report = {**reconstruction_report(sae, acts), **losses, "n_contexts": len(contexts),
                  "skip_contexts": skip_contexts, "corpus": str(corpus)}
        atomic_write_json(Path(folder) / "eval.json", report)
        reports.append(report)
    return reports
