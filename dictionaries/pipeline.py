"""Train several dictionaries from one stream, evaluate them and save each as a folder.

Layout of ``out_dir``::

    out_dir/
      relu-2x/                 one folder per dictionary (SAELens layout, see io.py)
        cfg.json  sae_weights.safetensors  truthsteer.json  metrics.json  log.jsonl
      summary.json             every dictionary's metrics
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from dictionaries.config import DictionaryConfig, DictionaryConfigError, TrainConfig, to_dict
from dictionaries.evaluate import reconstruction_report, spliced_losses
from dictionaries.io import dictionary_name, save_dictionary
from dictionaries.trainer import train

DOWNSTREAM_CONTEXTS = 64


def train_and_save(cfgs: list[DictionaryConfig], batches: Iterable[torch.Tensor],
                   train_cfg: TrainConfig, out_dir: Path, *, eval_acts: torch.Tensor | None = None,
                   metadata: dict[str, Any] | None = None, model: Any = None,
                   eval_contexts: Sequence[torch.Tensor] | None = None, progress: bool = True
                   ) -> dict[str, dict[str, Any]]:
    """Train ``cfgs`` on ``batches``, evaluate on held-out data, save; returns name -> summary.

    Refuses to overwrite an existing dictionary folder. ``model`` + ``eval_contexts`` (token
    contexts) add the downstream loss-recovered numbers.
    """
    names = [dictionary_name(c) for c in cfgs]
    if len(set(names)) != len(names):
        raise DictionaryConfigError(f"two dictionaries would share a folder: {names}")
    for name in names:
        if (out_dir / name).exists():
            raise DictionaryConfigError(f"{out_dir / name} already exists "
                                        "(choose another --out or remove it)")
    out_dir.mkdir(parents=True, exist_ok=True)
    log_paths = [out_dir / f".{name}.log.jsonl" for name in names]
    for p in log_paths:
        p.unlink(missing_ok=True)
    trained = train(cfgs, batches, train_cfg, log_paths=log_paths, progress=progress)
    results: dict[str, dict[str, Any]] = {}
    for name, cfg, td, log in zip(names, cfgs, trained, log_paths):
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
        path = save_dictionary(td.sae, out_dir / name, metadata=meta, extra=extra)
        (path / "metrics.json").write_text(json.dumps(summary, indent=2))
        if log.exists():
            log.replace(path / "log.jsonl")
        results[name] = summary
    summary_file = out_dir / "summary.json"
    previous = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    summary_file.write_text(json.dumps({**previous, **results}, indent=2))
    return results
