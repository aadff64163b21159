"""The offline judges known by name (:data:`~evals.judges.recipe.NAMED_RECIPES`): ``default``
and ``quick`` (the default recipe without its language-model probe). Each is a
:class:`~evals.judges.learned.LearnedJudge` trained with its recipe on TruthfulQA's human dev
labels (folder in ``$TRUTHSTEER_HUMAN_LABELS``, else downloaded from GitHub) plus the TRAIN split
of the steered development set shipped in the package (evals/steered_dev/steered_{truth,info}
.jsonl) on first use, and cached under ``$TRUTHSTEER_CACHE/judges/<name>-<key>``, keyed by the
label files, the steered files, the TruthfulQA data and the recipe. :func:`load_or_build` does
the same for any recipe."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from evals.errors import InputError
from evals.io import cache_root
from evals.judges.learned import LearnedJudge
from evals.judges.recipe import CFG_FILE, NAMED_RECIPES, WEIGHTS_FILE, LearnedJudgeConfig
from evals.judges.steered import packaged_longform_files, packaged_steered_files


def cached_judge_folder(name: str, recipe: LearnedJudgeConfig, truthfulqa: Any,
                        labels_dir: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None
                        ) -> tuple[Path, tuple[Path, Path]]:
    """Where a judge trained with ``recipe`` on the human labels (from ``labels_dir``, else
    $TRUTHSTEER_HUMAN_LABELS, else downloaded), the packaged steered labels and ``truthfulqa``'s
    references is cached: ``(CACHE/judges/<name>-<key>, (truth labels, info labels))``, the key
    hashing all of them."""
    from evals.labels import default_label_files, files_digest

    root = Path(cache_dir) if cache_dir else cache_root()
    truth_path, info_path = default_label_files(labels_dir, root)
    dev = dev_files(recipe)
    key = hashlib.sha256(json.dumps([files_digest([truth_path, info_path]), truthfulqa.sha256,
                                     recipe.to_dict()]
                                    + [files_digest(list(f)) if f else None for f in dev]
                                    ).encode()).hexdigest()[:12]
    return root / "judges" / f"{name}-{key}", (truth_path, info_path)


def dev_files(recipe: LearnedJudgeConfig) -> list[tuple[Path, Path] | None]:
    """The packaged development label files a judge of ``recipe`` trains on (their TRAIN rows):
    the steered set's, and the long-form set's when the recipe has the long-form block."""
    out = [packaged_steered_files()]
    if recipe.longform_block:
        out.append(packaged_longform_files())
    return out


def load_or_build(name: str, recipe: LearnedJudgeConfig, model_loader: Callable | None = None,
                  truthfulqa: Any = None, labels_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None,
                  progress: bool = True) -> LearnedJudge:
    """A judge of ``recipe`` trained on the human labels plus the packaged steered TRAIN rows:
    loaded from the cache, or trained there on first use."""
    from evals.judges.learned_train import train_learned_judge
    from evals.judges.steered import read_steered_train
    from evals.labels import read_labels
    from evals.truthfulqa import TruthfulQA, load_truthfulqa

    tq = truthfulqa if isinstance(truthfulqa, TruthfulQA) else load_truthfulqa(truthfulqa)
    folder, (truth_path, info_path) = cached_judge_folder(name, recipe, tq, labels_dir,
                                                          cache_dir)
    root = Path(cache_dir) if cache_dir else cache_root()
    features = root / "learned_features.sqlite"
    if (folder / CFG_FILE).is_file():
        return LearnedJudge.load(folder, model_loader, features)
    if progress:
        print(f"Building the {name} judge (once per machine) into {folder} ...")
    steered_files, *longform_files = dev_files(recipe)
    steered = read_steered_train(*steered_files)[:2] if steered_files else None
    longform = (read_steered_train(*longform_files[0])[:2]
                if longform_files and longform_files[0] else None)
    sources = [str(truth_path), str(info_path), *map(str, steered_files or ()),
               *map(str, (longform_files[0] or ()) if longform_files else ())]
    judge = train_learned_judge(read_labels(truth_path), read_labels(info_path), tq, recipe,
                                model_loader, progress=progress, name=name, sources=sources,
                                feature_cache=features, steered=steered, longform=longform)
    judge.save(folder)
    return LearnedJudge.load(folder, model_loader, features)


def named_recipe(name: str) -> LearnedJudgeConfig:
    """The recipe of the offline judge called ``name`` (``default`` or ``quick``)."""
    if name not in NAMED_RECIPES:
        raise InputError(f"--judge {name!r}: no offline judge of that name (give "
                         f"{' or '.join(NAMED_RECIPES)})")
    return NAMED_RECIPES[name]


def is_built(name: str, truthfulqa: Any, labels_dir: str | os.PathLike | None = None,
             cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the offline judge ``name`` needs no build: shipped in the package, or already
    trained in the cache (False when its labels are absent and cannot be downloaded)."""
    from evals.judges.shipped import shipped_folder

    if shipped_folder(name) is not None:
        return True
    try:
        folder, _ = cached_judge_folder(name, named_recipe(name), truthfulqa, labels_dir,
                                        cache_dir)
    except (InputError, OSError):
        return False
    return (folder / CFG_FILE).is_file()


def load_or_build_named(name: str, model_loader: Callable | None = None, truthfulqa: Any = None,
                        labels_dir: str | os.PathLike | None = None,
                        cache_dir: str | os.PathLike | None = None,
                        progress: bool = True) -> LearnedJudge:
    """The offline judge ``name`` (``default`` or ``quick``): the one shipped in the package
    (evals/judges/shipped.py) when it has the current recipe, else loaded from the cache, or
    trained there on first use."""
    from evals.judges.shipped import load_shipped

    recipe = named_recipe(name)
    features = (Path(cache_dir) if cache_dir else cache_root()) / "learned_features.sqlite"
    shipped = load_shipped(name, model_loader, features)
    if shipped is not None:
        return shipped
    return load_or_build(name, recipe, model_loader, truthfulqa, labels_dir, cache_dir, progress)


def ship(name: str, truthfulqa_dir: Path, out_root: Path, model_loader: Callable | None,
         work: Path) -> Path:
    """Build the offline judge ``name`` from the labels in ``truthfulqa_dir`` (in the cache
    ``work``), measure it once on the TEST splits of the steered and long-form development sets
    (questions it never trained on; stored in its record as ``steered_test`` /
    ``longform_test``), and copy it, with its judged sample, to
    ``out_root/<name>-<content id>`` (``truthsteer judge-ship``; see evals/judges/shipped.py)."""
    import shutil
    import tempfile

    from evals.judges.calibration import calibrate, read_label_files
    from evals.judges.shipped import SAMPLE_FILE, content_id, judge_sample, sample_items
    from evals.truthfulqa import load_truthfulqa

    tq = load_truthfulqa(truthfulqa_dir / "TruthfulQA.csv")
    recipe = named_recipe(name)
    judge = load_or_build(name, recipe, model_loader, tq, truthfulqa_dir, work)
    built, _ = cached_judge_folder(name, recipe, tq, truthfulqa_dir, work)
    record = json.loads((built / CFG_FILE).read_text(encoding="utf-8"))
    for dev, files in (("steered", packaged_steered_files()),
                       ("longform", packaged_longform_files())):
        if files:
            rows, meta = read_label_files(list(files), "test")
            record["agreement"][f"{dev}_test"] = calibrate(judge, rows, meta, tq,
                                                           progress=False).report
    staging = Path(tempfile.mkdtemp(prefix="truthsteer-ship-", dir=out_root.parent))
    (staging / CFG_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                    encoding="utf-8")
    shutil.copy(built / WEIGHTS_FILE, staging / WEIGHTS_FILE)
    target = out_root / f"{name}-{content_id(staging)}"
    if target.exists():
        shutil.rmtree(target)
    out_root.mkdir(parents=True, exist_ok=True)
    staging.rename(target)
    judge = LearnedJudge.load(target, model_loader, work / "learned_features.sqlite")
    rows = judge_sample(judge, sample_items(tq))
    (target / SAMPLE_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows),
                                      encoding="utf-8")
    return target
