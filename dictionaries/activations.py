"""Activations at a hook of a model over a text corpus: read, tokenize, run, shuffle, cache.

Text comes from an HF dataset (a hub id such as ``NeelNanda/pile-10k``, or a folder written by
``Dataset.save_to_disk``), a ``.jsonl`` file (one JSON object per line, text in
``text_column``) or a ``.txt`` file (one document per non-empty line). Documents are tokenized,
joined with EOS and cut into contexts of ``context_size`` tokens: BOS followed by
``context_size - 1`` text tokens. BOS positions are dropped from the activations (their norms
are huge outliers that would dominate training), so each context gives ``context_size - 1``
rows.

The model is duck-typed: a transformer_lens ``TransformerBridge`` / ``HookedTransformer``
(``run_with_cache(tokens, names_filter=..., stop_at_layer=...)``) or any callable mapping
tokens [batch, pos] to activations [batch, pos, d] (or [batch, pos, heads, d_head]).
Activation files are safetensors holding one tensor ``activations`` [n, d_in]; a folder of
``shard_*.safetensors`` files is read in order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from dictionaries.config import ActivationConfig, DictionaryConfigError
from evals.io import atomic_path, atomic_write_json
from evals.io import progress as progress_bar

ACTIVATIONS_KEY = "activations"


# ----------------------------------------------------------------------------- text
def read_texts(source: str | Path, text_column: str = "text", split: str = "train"
               ) -> Iterator[str]:
    """Documents from a .txt / .jsonl file, a saved HF dataset folder, or an HF hub dataset id."""
    path = Path(source).expanduser()
    name = str(source)
    if name.endswith(".txt"):
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", name)
        with open(path, encoding="utf-8") as fh:
            yield from (line.rstrip("\n") for line in fh if line.strip())
        return
    if name.endswith(".jsonl"):
        if not path.is_file():
            raise FileNotFoundError(2, "no such file", name)
        with open(path, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DictionaryConfigError(f"{name}:{i}: not JSON ({err.msg})") from None
                if not isinstance(row, dict) or text_column not in row:
                    raise DictionaryConfigError(f"{name}:{i}: no {text_column!r} field "
                                                "(set --text-column)")
                yield str(row[text_column])
        return
    yield from _dataset_texts(path, name, text_column, split)


def _dataset_texts(path: Path, name: str, text_column: str, split: str) -> Iterator[str]:
    import datasets

    saved = any((path / f).exists() for f in ("state.json", "dataset_dict.json"))
    if path.is_dir() and saved:  # written by Dataset(Dict).save_to_disk
        data = datasets.load_from_disk(str(path))
    elif path.is_dir():  # a folder of data files: the same loader as a hub id
        data = _load_dataset(datasets, str(path), name, split)
    elif name.startswith((".", "/", "~")) or path.suffix:
        raise FileNotFoundError(2, "no such file or dataset folder (give a .txt, .jsonl, a "
                                "saved dataset folder or a hub id)", name)
    else:
        data = _load_dataset(datasets, name, name, split)
    if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in data:
            raise DictionaryConfigError(f"--corpus {name}: no split {split!r} "
                                        f"(has {', '.join(data)})")
        data = data[split]
    columns = data.column_names
    if columns is not None and text_column not in columns:
        raise DictionaryConfigError(f"--corpus {name}: no column {text_column!r} "
                                    f"(columns: {', '.join(columns)}; set --text-column)")
    for row in data:
        yield str(row[text_column])


def _load_dataset(datasets: Any, source: str, name: str, split: str) -> Any:
    """``datasets.load_dataset`` streaming one split (hub ids and folders of data files)."""
    try:
        return datasets.load_dataset(source, split=split, streaming=True)
    except Exception as err:  # noqa: BLE001 - hub unreachable, unknown id: a bad --corpus
        raise DictionaryConfigError(f"--corpus {name}: could not load dataset "
                                    f"({str(err).splitlines()[0][:160]})") from None


def iter_contexts(texts: Iterable[str], tokenizer: Any, context_size: int
                  ) -> Iterator[torch.Tensor]:
    """Token contexts [context_size]: BOS + ``context_size - 1`` tokens of EOS-joined text."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    if bos is None:
        raise DictionaryConfigError("the tokenizer has neither a BOS nor an EOS token")
    width = context_size - 1
    pending: list[int] = []
    for text in texts:
        pending.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            pending.append(eos)
        while len(pending) >= width:
            yield torch.tensor([bos, *pending[:width]], dtype=torch.long)
            del pending[:width]


def corpus_contexts(source: str | Path, tokenizer: Any, cfg: ActivationConfig,
                    max_contexts: int | None = None) -> list[torch.Tensor]:
    """Up to ``max_contexts`` token contexts from a corpus (a list, for inspection views)."""
    out = []
    for ctx in iter_contexts(read_texts(source, cfg.text_column), tokenizer, cfg.context_size):
        out.append(ctx)
        if max_contexts is not None and len(out) >= max_contexts:
            break
    return out


# ----------------------------------------------------------------------------- model
def layer_of_hook(hook_name: str) -> int | None:
    """``blocks.2.hook_resid_post`` -> 2 (None for hooks outside the blocks)."""
    match = re.match(r"blocks\.(\d+)\.", hook_name)
    return int(match.group(1)) if match else None


@torch.inference_mode()
def run_hook(model: Any, tokens: torch.Tensor, hook_name: str) -> torch.Tensor:
    """Activations [batch, pos, d] at ``hook_name`` (heads flattened), stopping early."""
    if hasattr(model, "run_with_cache"):
        layer = layer_of_hook(hook_name)
        kwargs = {"stop_at_layer": layer + 1} if layer is not None else {}
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == hook_name, **kwargs)
        if hook_name not in cache:
            raise DictionaryConfigError(f"hook {hook_name!r} not found in the model "
                                        "(e.g. blocks.2.hook_resid_post)")
        acts = cache[hook_name]
    elif callable(model):
        acts = model(tokens)
    else:
        raise DictionaryConfigError("model must have run_with_cache or be callable")
    if acts.dim() == 4:  # [batch, pos, heads, d_head]
        acts = acts.flatten(2)
    return acts


def model_device(model: Any) -> torch.device:
    cfg = getattr(model, "cfg", None)
    if cfg is not None and getattr(cfg, "device", None) is not None:
        return torch.device(cfg.device)
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def stream_activations(model: Any, contexts: Iterable[torch.Tensor], cfg: ActivationConfig
                       ) -> Iterator[torch.Tensor]:
    """Per batch of contexts, activations [n_contexts * (context_size - 1), d] without BOS."""
    device = model_device(model)
    batch: list[torch.Tensor] = []

    def flush() -> torch.Tensor:
        tokens = torch.stack(batch).to(device)
        acts = run_hook(model, tokens, cfg.hook_name)[:, 1:]  # drop BOS
        batch.clear()
        return acts.reshape(-1, acts.shape[-1]).float().cpu()

    for ctx in contexts:
        batch.append(ctx)
        if len(batch) == cfg.contexts_per_batch:
            yield flush()
    if batch:
        yield flush()


def shuffle_batches(chunks: Iterable[torch.Tensor], batch_size: int, buffer_tokens: int,
                    seed: int = 0) -> Iterator[torch.Tensor]:
    """Re-batch a stream of [n, d] chunks into shuffled [batch_size, d] batches.

    Fills a buffer of ``buffer_tokens`` rows, shuffles it, emits half of it and refills (as
    SAELens does), so consecutive batches mix tokens from many contexts. The final partial
    batch is dropped.
    """
    gen = torch.Generator().manual_seed(seed)
    capacity = max(buffer_tokens, 2 * batch_size)
    buffer: torch.Tensor | None = None
    pending: list[torch.Tensor] = []
    n_pending = 0
    source = iter(chunks)
    exhausted = False
    while True:
        while not exhausted and n_pending + (0 if buffer is None else len(buffer)) < capacity:
            try:
                chunk = next(source)
            except StopIteration:
                exhausted = True
                break
            pending.append(chunk)
            n_pending += len(chunk)
        if pending:
            buffer = torch.cat(([buffer] if buffer is not None else []) + pending)
            pending, n_pending = [], 0
        if buffer is None or len(buffer) < batch_size:
            return
        buffer = buffer[torch.randperm(len(buffer), generator=gen)]
        n_emit = len(buffer) if exhausted else max(batch_size, len(buffer) // 2)
        n_emit -= n_emit % batch_size
        for i in range(0, n_emit, batch_size):
            yield buffer[i:i + batch_size]
        buffer = buffer[n_emit:]


def tensor_batches(acts: torch.Tensor, batch_size: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """Endless shuffled [batch_size, d] batches from a finite tensor, reshuffled every epoch."""
    if len(acts) == 0:
        raise DictionaryConfigError("no activations to train on")
    gen = torch.Generator().manual_seed(seed)
    size = min(batch_size, len(acts))
    while True:
        perm = torch.randperm(len(acts), generator=gen)
        for i in range(0, len(acts) - size + 1, size):
            yield acts[perm[i:i + size]]


# ----------------------------------------------------------------------------- files
def save_activations(path: str | Path, acts: torch.Tensor, metadata: dict[str, str] | None = None
                     ) -> Path:
    """Write ``acts`` [n, d_in] as a safetensors file holding the tensor ``activations``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({ACTIVATIONS_KEY: acts.contiguous()}, str(tmp), metadata=metadata)
    return path


def load_activations(path: str | Path) -> torch.Tensor:
    """[n, d_in] float32 from a safetensors file (tensor ``activations``) or a shard folder."""
    path = Path(path)
    files = sorted(path.glob("shard_*.safetensors")) if path.is_dir() else [path]
    if path.is_dir() and not files:
        raise DictionaryConfigError(f"{path}: folder holds no shard_*.safetensors files")
    parts = []
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(2, "no such file", str(file))
        try:
            with safe_open(str(file), framework="pt") as fh:
                if ACTIVATIONS_KEY not in fh.keys():  # noqa: SIM118 - safe_open has no __contains__
                    raise DictionaryConfigError(
                        f"{file}: no tensor named {ACTIVATIONS_KEY!r} (has {', '.join(fh.keys())})")
                parts.append(fh.get_tensor(ACTIVATIONS_KEY))
        except DictionaryConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - any read failure means a bad input file
            raise DictionaryConfigError(f"{file}: not a readable safetensors file ({err})"
                                        ) from None
    acts = torch.cat(parts) if len(parts) > 1 else parts[0]
    if acts.dim() != 2 or acts.shape[0] == 0:
        raise DictionaryConfigError(f"{path}: activations must have shape [n, d_in] with n > 0, "
                                    f"got {list(acts.shape)}")
    return acts.float()


def cache_info(path: str | Path) -> dict[str, Any]:
    """The cfg.json that :func:`cache_activations` writes beside its shards ({} if none)."""
    file = Path(path) / "cfg.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError:
        return {}


def cache_activations(chunks: Iterable[torch.Tensor], out_dir: str | Path, n_tokens: int,
                      shard_tokens: int = 262_144, metadata: dict[str, Any] | None = None,
                      dtype: torch.dtype = torch.float32, progress: bool = True) -> list[Path]:
    """Write ``n_tokens`` rows of a stream as ``shard_00000.safetensors``, ... plus cfg.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[Path] = []
    pending: list[torch.Tensor] = []
    n_pending = written = 0
    bar = progress_bar(total=n_tokens, desc="caching activations", unit="tok",
                       disable=not progress)

    def write(block: torch.Tensor) -> None:
        shards.append(save_activations(out / f"shard_{len(shards):05d}.safetensors",
                                       block.to(dtype)))

    for chunk in chunks:
        chunk = chunk[: n_tokens - written - n_pending]
        pending.append(chunk)
        n_pending += len(chunk)
        bar.update(len(chunk))
        while n_pending >= shard_tokens:
            block = torch.cat(pending)
            write(block[:shard_tokens])
            written += shard_tokens
            rest = block[shard_tokens:]
            pending, n_pending = ([rest] if len(rest) else []), len(rest)
        if written + n_pending >= n_tokens:
            break
    if n_pending:
        write(torch.cat(pending))
        written += n_pending
    bar.close()
    info = {**(metadata or {}), "n_tokens": written, "shards": [p.name for p in shards]}
    atomic_write_json(out / "cfg.json", info)
    return shards
