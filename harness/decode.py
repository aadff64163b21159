"""The one steered decode loop: a static KV cache, a per-row steering table, continuous batching.

A fixed batch of ``batch_size`` rows shares one preallocated KV cache
(``[rows, kv_heads, capacity, head_dim]`` per layer). Every step all rows write their next token
at the same slot ``w``; a row's tokens fill the contiguous slots that end at ``w``, and its own
position ids and 4-D attention mask (built here) make the layout invisible to the model: a row
attends to exactly its own tokens, at their own positions (slot distance equals position
distance, so sliding windows hold too). When a row ends (EOS, a stop string, the token limit) the
next waiting prompt, of any steering configuration, takes its place at once: the prompt is
prefilled (continuing its group's shared-prefix cache) and its keys and values are copied into
the row's slots. When ``w`` reaches the capacity, all rows shift left together (one slice copy).

With a shared prompt prefix (``prefix_len``) in float32 on CPU and one steering group, rows
hold only their own tokens and each decode step reads the prefix's keys and values once
(:mod:`harness.prefix_attention`).

Steering rides the one hooks context (:func:`harness.steering.hooks`): with ``groups``, the loop
selects each row's group whenever the batch changes; prefill passes count as prompt positions,
decode steps as generated ones.

Greedy decoding is the argmax of float32 logits, as HF ``generate``; ``min_new_tokens`` masks EOS
as HF does; stop strings are HF's own ``StopStringCriteria``. Sampling (temperature, then top-p
as HF's warpers) draws each row from its own generator seeded per request, so a row's samples
never depend on its neighbours.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers.cache_utils import Cache, StaticLayer

from harness.config import ConfigError, GenerationConfig
from harness.kvcache import (
    cache_kwarg,
    continue_prefix,
    group_prefix_caches,
    output_cache,
    pad_left,
)
from harness.prefix_attention import PrefixTables, prefix_attention


@dataclass(frozen=True)
class Request:
    """One prompt to continue: its token ids, its steering group and its sampling seed."""

    prompt: tuple[int, ...]
    group: int = 0
    seed: int = 0


@dataclass
class _Row:
    """What one row of the batch holds now (``item`` is None when the row is empty)."""

    item: int | None = None
    start: int = 0          # first slot of the row's tokens (they end at the write slot)
    position: int = 0       # position id of the row's next token
    generated: list[int] = field(default_factory=list)
    generator: torch.Generator | None = None


@dataclass
class _Staged:
    """A prefilled prompt waiting for a free row: row ``row`` of a prefill's ``cache``
    (``length`` columns), and the logits of its first token."""

    item: int
    cache: Any
    row: int
    length: int
    logits: torch.Tensor


class _SpanLayer(StaticLayer):
    """A static cache layer whose attention reads only the slots ``span`` = (lo, hi) (the
    oldest live row's first slot up to the write slot), not the whole capacity. A decode
    step's one new column is copied straight into slot ``hi - 1`` (the same copy
    ``StaticLayer.update``'s ``index_copy_`` makes, without its index tensor)."""

    def __init__(self, max_cache_len: int) -> None:
        super().__init__(max_cache_len=max_cache_len)
        self.span = (0, max_cache_len)

    def update(self, key_states, value_states, *args, **kwargs):
        lo, hi = self.span
        if self.is_initialized and key_states.shape[2] == 1:
            self.keys[:, :, hi - 1:hi].copy_(key_states)
            self.values[:, :, hi - 1:hi].copy_(value_states)
            keys, values = self.keys, self.values
        else:
            keys, values = super().update(key_states, value_states, *args, **kwargs)
        return keys[:, :, lo:hi], values[:, :, lo:hi]


def supported_attention(model) -> str:
    """The attention implementation the decode loop builds masks for (sdpa or eager)."""
    impl = getattr(model.hf_model.config, "_attn_implementation", None) or "eager"
    if impl not in ("sdpa", "eager"):
        raise ConfigError(f"--model {model.name}: attention {impl!r} is not supported by the "
                          "decode loop (load it with attn_implementation='sdpa' or 'eager')")
    return impl


class DecodeLoop:
    """Decode ``requests`` under the hooks ``state`` (see the module docstring)."""

    def __init__(self, model, requests: Sequence[Request], cfg: GenerationConfig, state,
                 stop_strings: Sequence[str] = (), prefix_len: int = 0, bar=None,
                 shared_prefix: bool = True) -> None:
        self.model, self.cfg, self.state, self.bar = model, cfg, state, bar
        self.requests = list(requests)
        self.tok = model.tokenizer
        self.device = model.device
        self.attention = supported_attention(model)
        self.window = model.attention_window
        types = getattr(model.hf_model.config, "layer_types", None)
        self.hybrid = self.window is not None and types is not None and len(set(types)) > 1
        self.prefix_len = prefix_len
        # The shared prefix's keys and values live once, not in every row
        # (harness.prefix_attention), where its CPU kernel applies and every row shares one
        # prefix cache (many steering groups: the split cost more than it saved); in float32
        # only, where the split softmax's rounding stays far below a greedy step's margin (in
        # bf16 it would flip steps that HF generate takes alone).
        one_prefix = state.rows is None or len({r.group for r in requests}) == 1
        self.shared_prefix = (shared_prefix and prefix_len > 0 and one_prefix
                              and self.attention == "sdpa" and self.window is None
                              and self.device.type == "cpu" and model.dtype == torch.float32)
        self.prefix_tables: PrefixTables | None = None
        self.cache_kw = cache_kwarg(model)
        eos = self.tok.eos_token_id
        self.eos = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])
                    if e is not None]
        self.stops = None
        if stop_strings:
            from transformers import StopStringCriteria
            self.stops = StopStringCriteria(self.tok, list(stop_strings))
        self.results: list[list[int] | None] = [None] * len(self.requests)
        longest = max((len(r.prompt) for r in self.requests), default=1)
        if self.shared_prefix:
            longest -= prefix_len            # rows hold only what follows the prefix
        self.longest_prompt = longest
        self.capacity = longest + 2 * cfg.max_new_tokens + 1
        self.n_rows = max(1, min(cfg.batch_size, len(self.requests)))
        self.rows = [_Row() for _ in range(self.n_rows)]
        self.w = longest                     # the slot every row writes its next token at
        self.cache = None                    # the static cache, made at the first prefill
        self.live = torch.zeros(self.n_rows, self.capacity, dtype=torch.bool, device=self.device)
        self.last = torch.full((self.n_rows,), int(self.tok.pad_token_id), dtype=torch.long,
                               device=self.device)
        self.selected: list[int] | None = None
        self.prefix_caches = None
        self.stats = {"steps": 0, "prefills": 0, "compactions": 0,
                      "prefill_s": 0.0, "decode_s": 0.0}  # host wall time of each phase

    # -- the loop --------------------------------------------------------------------------
    @torch.inference_mode()
    def run(self) -> list[list[int]]:
        """Every request's generated ids (through its EOS or stop, as HF ``generate`` returns
        them before padding), in request order."""
        if self.prefix_len:
            groups = sorted({r.group for r in self.requests})
            prefix = list(self.requests[0].prompt[:self.prefix_len])
            self.prefix_caches = group_prefix_caches(
                self.model, self.state, prefix, groups if self.state.rows is not None else None,
                batched=True)
            if self.shared_prefix:
                caches = self.prefix_caches
                self.prefix_tables = PrefixTables(next(iter(caches.values()))
                                                  if isinstance(caches, dict) else caches)
        order = sorted(range(len(self.requests)),
                       key=lambda i: (-len(self.requests[i].prompt), i))
        waiting, staged = deque(order), deque()
        while waiting or staged or any(r.item is not None for r in self.rows):
            free = [b for b, r in enumerate(self.rows) if r.item is None]
            if free and (waiting or staged):
                start = time.perf_counter()
                placed = []
                for b in free:
                    if not staged and waiting:
                        take = [waiting.popleft() for _ in range(min(self.n_rows, len(waiting)))]
                        staged.extend(self._prefill(take))
                    if not staged:
                        break
                    placed.append((b, self._place(b, staged.popleft())))
                self._choose([b for b, _ in placed], torch.stack([x for _, x in placed]))
                self.stats["prefill_s"] += time.perf_counter() - start
                continue  # a row may end at its first token: refill before stepping
            start = time.perf_counter()
            self._step()
            self.stats["decode_s"] += time.perf_counter() - start
        return self.results  # type: ignore[return-value]

    # -- admission: prefill waiting prompts a batch at a time, then place them in free rows --
    def _prefill(self, items: list[int]) -> list[_Staged]:
        """Prefill ``items`` (one batch of up to ``batch_size`` prompts, left-padded, each
        continuing its group's shared-prefix cache); they wait, staged, for free rows."""
        reqs = [self.requests[i] for i in items]
        P = self.prefix_len
        ids, mask = pad_left([list(r.prompt[P:]) for r in reqs], self.tok.pad_token_id,
                             self.device)
        width = ids.shape[1]
        kwargs: dict[str, Any] = {}
        if P:
            groups = [r.group for r in reqs] if self.state.rows is not None else None
            kwargs[self.cache_kw] = continue_prefix(self.prefix_caches, groups, len(reqs))
            mask = torch.cat([torch.ones(len(reqs), P, dtype=mask.dtype, device=self.device),
                              mask], dim=1)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, -width:]
        self._select([r.group for r in reqs])
        self.state.reset(P, P + width) if P else self.state.reset()
        out = self.model.hf_model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                  use_cache=True, logits_to_keep=1, **kwargs)
        self.stats["prefills"] += 1
        logits = out.logits[:, -1, :].float()
        cache = output_cache(out)
        if self.cache is None:
            self._make_cache(cache)
        return [_Staged(i, cache, j, P + width, logits[j]) for j, i in enumerate(items)]

    def _place(self, b: int, staged: _Staged) -> torch.Tensor:
        """Copy a staged prompt's keys and values into row ``b`` (its slots end at the write
        slot); returns its first token's logits."""
        req = self.requests[staged.item]
        n, total, P = len(req.prompt), staged.length, self.prefix_len
        keep = torch.arange(total - (n - P), total, device=self.device)
        if not self.shared_prefix:  # else the prefix is read from the prefix tables
            keep = torch.cat([torch.arange(P, device=self.device), keep])
        stored = len(keep)
        for src, dst in zip(staged.cache.layers, self.cache.layers):
            # A sliding-window layer's cache keeps only the sequence's last columns.
            dropped = total - src.keys.shape[2]
            cols = keep[keep >= dropped] - dropped
            dst.keys[b, :, self.w - len(cols):self.w] = src.keys[staged.row][:, cols]
            dst.values[b, :, self.w - len(cols):self.w] = src.values[staged.row][:, cols]
        self.live[b].zero_()
        self.live[b, self.w - stored:self.w] = True
        gen = None
        if self.cfg.do_sample:
            gen = torch.Generator(device=self.device).manual_seed(req.seed)
        self.rows[b] = _Row(staged.item, self.w - stored, n, [], gen)
        return staged.logits

    def _make_cache(self, like) -> None:
        layers = []
        for src in like.layers:
            layer = _SpanLayer(self.capacity)
            k, v = src.keys, src.values
            layer.lazy_initialization(k.new_zeros(self.n_rows, k.shape[1], 1, k.shape[3]),
                                      v.new_zeros(self.n_rows, v.shape[1], 1, v.shape[3]))
            layers.append(layer)
        self.cache = Cache(layers=layers)

    # -- one decode step for every row ----------------------------------------------------
    def _step(self) -> None:
        if self.w >= self.capacity:
            self._compact()
        active = [b for b, r in enumerate(self.rows) if r.item is not None]
        self.live[:, self.w] = True
        positions = torch.tensor([[r.position] for r in self.rows], dtype=torch.long,
                                 device=self.device)
        lo = min(r.start for r in self.rows if r.item is not None)
        if self.window is not None and not self.hybrid:
            lo = max(lo, self.w + 1 - self.window)
        span = (lo, self.w + 1)
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(self.w)
            layer.span = span
        groups = [self.requests[r.item].group if r.item is not None else 0 for r in self.rows]
        self._select(groups)
        self.state.reset(1, 1)  # every position of a decode step is a generated one
        kwargs = {"input_ids": self.last[:, None], "attention_mask": self._mask(*span),
                  "position_ids": positions, "use_cache": True, "logits_to_keep": 1,
                  self.cache_kw: self.cache}
        if self.prefix_tables is not None:
            with prefix_attention(self.prefix_tables):
                out = self.model.hf_model(**kwargs)
        else:
            out = self.model.hf_model(**kwargs)
        self.w += 1
        self.stats["steps"] += 1
        for r in self.rows:
            r.position += 1
        logits = out.logits[:, -1, :] if len(active) == self.n_rows else out.logits[active, -1, :]
        self._choose(active, logits.float())

    def _mask(self, lo: int, hi: int):
        """The decode step's 4-D mask over the slots ``lo:hi`` that attention reads (a dict per
        attention kind on models that mix full and sliding layers)."""
        full = self.live[:, None, None, lo:hi]
        masks = {"full_attention": full}
        if self.window is not None:
            slots = torch.arange(lo, hi, device=self.device)
            masks["sliding_attention"] = full & (slots > self.w - self.window)
        # Additive float masks, made once per step rather than once per layer: SDPA turns a
        # boolean mask into exactly this (0 / -inf in the query's dtype) at every call.
        dtype = self.model.dtype
        fill = torch.finfo(dtype).min if self.attention == "eager" else float("-inf")
        masks = {k: torch.zeros(m.shape, dtype=dtype, device=self.device).masked_fill_(~m, fill)
                 for k, m in masks.items()}
        if self.hybrid:
            return masks
        return masks["sliding_attention"] if self.window is not None else masks["full_attention"]

    def _compact(self) -> None:
        """Shift every row's slots left by the same amount, so the write slot has room again."""
        used = max([self.w - r.start for r in self.rows if r.item is not None], default=0)
        new_w = max(used, self.longest_prompt)
        shift = self.w - new_w
        for layer in self.cache.layers:
            layer.keys[:, :, :new_w] = layer.keys[:, :, shift:self.w].clone()
            layer.values[:, :, :new_w] = layer.values[:, :, shift:self.w].clone()
        live = self.live[:, shift:self.w].clone()
        self.live.zero_()
        self.live[:, :new_w] = live
        for r in self.rows:
            r.start -= shift
        self.w = new_w
        self.stats["compactions"] += 1

    def _select(self, groups: list[int]) -> None:
        if self.state.rows is not None and groups != self.selected:
            self.state.select_rows(groups, self.device)
            self.selected = groups

    # -- choosing tokens, stopping, refilling ---------------------------------------------
    def _choose(self, slots: list[int], logits: torch.Tensor) -> None:
        """Pick each row's next token from its logits; finish rows that end."""
        if not slots:
            return
        cfg = self.cfg
        if cfg.min_new_tokens:
            young = [k for k, b in enumerate(slots)
                     if len(self.rows[b].generated) < cfg.min_new_tokens]
            if young:
                logits[torch.tensor(young, device=logits.device)[:, None],
                       torch.tensor(self.eos, device=logits.device)] = float("-inf")
        if cfg.do_sample:
            chosen = sample_tokens(logits, cfg, [self.rows[b].generator for b in slots])
        else:
            chosen = logits.argmax(dim=-1)
        tokens = chosen.tolist()
        for b, t in zip(slots, tokens):
            self.rows[b].generated.append(int(t))
        self.last[torch.tensor(slots, device=self.device)] = chosen.to(self.last.dtype)
        ended = self._ended(slots, tokens)
        for b, done in zip(slots, ended):
            if done:
                r = self.rows[b]
                self.results[r.item] = r.generated
                self.rows[b] = _Row()
                self.live[b].zero_()
                if self.bar is not None:
                    self.bar.update(1)

    def _ended(self, slots: list[int], tokens: list[int]) -> list[bool]:
        ended = [t in self.eos or len(self.rows[b].generated) >= self.cfg.max_new_tokens
                 for b, t in zip(slots, tokens)]
        if self.stops is not None:
            k = self.stops.maximum_token_len
            tails = []
            for b in slots:
                r = self.rows[b]
                seq = (list(self.requests[r.item].prompt[-k:]) + r.generated)[-k:]
                tails.append([self.tok.pad_token_id] * (k - len(seq)) + seq)
            hit = self.stops(torch.tensor(tails, dtype=torch.long), None).tolist()
            ended = [e or bool(h) for e, h in zip(ended, hit)]
        return ended


def sample_tokens(logits: torch.Tensor, cfg: GenerationConfig,
                  generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """One sampled token per row: temperature, then top-p (HF's ``TopPLogitsWarper``: the
    smallest set of most likely tokens whose probability reaches ``top_p``, at least one),
    then a draw from each row's own generator."""
    scores = logits / cfg.temperature
    if cfg.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - cfg.top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
    probs = scores.softmax(dim=-1)
    return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])


def decode(model, requests: Sequence[Request], cfg: GenerationConfig, state,
           stop_strings: Sequence[str] = (), prefix_len: int = 0, bar=None) -> list[list[int]]:
    """Generated token ids for each request (see the module docstring), in request order."""
    if not requests:
        return []
    return DecodeLoop(model, requests, cfg, state, stop_strings, prefix_len, bar).run()
