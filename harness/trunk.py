"""The unsteered trunk of packed teacher-forced passes, computed once and replayed.

Steering configurations that score the same token sequences (every cell of a sweep scores the
same MC answers) compute identical activations in every block below their first steered one.
When several configurations score one batch of sequences, the one steered highest in the stack
runs every block and its raw block outputs are recorded; each of the others then *replays* the
blocks below its first steered one (those blocks' ``forward`` returns the recorded output, so
no compute) and runs the rest. Hooks on a replayed block still run, so a ``hook_resid_post``
intervention at the last replayed block is added to the replayed output exactly as it is added
to a computed one. With batches of the same shape as alone, every configuration's numbers are
bitwise those it gets alone: the replayed tensors are what it would have computed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from harness.steering import Intervention, block_modules, resolve_hook


def unsteered_blocks(model, interventions: Sequence[Intervention]) -> int:
    """How many leading blocks ``interventions`` leave untouched (all of them when none):
    block L's residual output (``hook_resid_post``) is steered after block L runs, every other
    hook of block L inside or before it."""
    first = model.n_layers
    for iv in interventions:
        if iv.magnitude == 0:
            continue  # adding zero is the identity (hooks skips it too)
        site = resolve_hook(model, iv.hook)
        first = min(first, site.layer + (1 if site.kind == "hook_resid_post" else 0))
    return first


@contextmanager
def recording(model, points: Sequence[int]) -> Iterator[dict[int, list[Any]]]:
    """Record the raw output (before any hook on it) of each block in ``points``, one entry per
    forward pass: ``store[block][k]`` is the k-th pass's output."""
    blocks = block_modules(model)
    store: dict[int, list[Any]] = {b: [] for b in points}
    handles = []
    try:
        for b in store:
            handles.append(blocks[b].register_forward_hook(
                lambda _m, _a, out, b=b: store[b].append(out), prepend=True))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patched_forward(modules: Sequence[Any], make: Callable[[Callable], Callable]
                    ) -> Iterator[None]:
    """Each module's ``forward`` becomes ``make(its current forward)`` for the duration; what
    was there before (an instance attribute some wrappers set, or none) is restored exactly.
    Hooks registered on the modules still run around the new forward."""
    saved = []
    try:
        for m in modules:
            saved.append(m.__dict__.get("forward"))
            m.forward = make(m.forward)
        yield
    finally:
        for m, old in zip(modules, saved):
            if old is None:
                del m.forward
            else:
                m.forward = old


@contextmanager
def replaying(model, n_blocks: int, output: Any) -> Iterator[None]:
    """Blocks ``0 .. n_blocks-1`` compute nothing: each returns ``output`` (the recorded raw
    output of block ``n_blocks - 1``); their hooks still run."""
    with patched_forward(block_modules(model)[:n_blocks],
                         lambda _forward: lambda *_a, **_k: output):
        yield


def adopt_layers(cache, source_layers: Sequence[Any], n_blocks: int) -> None:
    """Give ``cache`` (a KV cache filled by a replayed pass, whose first ``n_blocks`` layers
    were not updated) shallow copies of ``source_layers[:n_blocks]``: the layers of the
    recorded pass, equal to what the replayed blocks would have cached."""
    for i in range(n_blocks):
        cache.layers[i] = copy.copy(source_layers[i])
