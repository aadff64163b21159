"""``openai:MODEL``: a judge behind any OpenAI-compatible endpoint, asynchronous and resilient.

- Requests run concurrently under a semaphore (``concurrency`` in flight at most).
- 429, 408/409, 5xx, timeouts and connection errors are retried with exponential backoff and
  jitter; a ``Retry-After`` header (seconds or an HTTP date) is honoured and pauses every
  worker, not just the one that got it.
- A malformed body (not JSON, no choices) is retried ``max_malformed_retries`` times, then that
  judgement is ``unscored`` with the error named; the rest of the batch goes on.
- An endpoint that rejects the key or the model (401/403/404) stops the run with
  :class:`JudgeEndpointError` (an InputError): results already delivered are kept.
- P(yes) comes from the top log-probabilities at the token where the reply says yes/no,
  normalised over case/space variants; endpoints that give no logprobs yield the parsed reply
  with ``p_yes=None``. Unparseable replies are ``unscored`` and keep the raw reply.
- The API key is read from the environment and scrubbed from every error and stored text.

``ref-aware`` prompts go to ``/chat/completions``; ``gpt-judge`` prompts (for fine-tuned judges)
go to the legacy ``/completions`` endpoint with ``max_tokens=1``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from evals.cache import JudgeCache, cache_key
from evals.errors import InputError
from evals.judges.base import (
    KINDS,
    Judge,
    JudgeItem,
    JudgeResult,
    Kind,
    ResultCallback,
    Verdict,
)
from evals.judges.prompts import (
    VERSIONS,
    build_prompt,
    chat_logprob_positions,
    check_style,
    completion_logprob_positions,
    p_yes_from_top_logprobs,
    parse_yes_no,
    yes_no_token,
)
from evals.judges.transport import env_name_for_message, parse_retry_after, scrub

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
RETRY_STATUS = {408, 409, 429}
FATAL_STATUS = {401, 403, 404}
UNREACHABLE_LIMIT = 4  # give up on the run after this many unreachable requests and no replies


class JudgeEndpointError(InputError):
    """The endpoint refuses every request (bad key, unknown model): no point going on."""


class MalformedReply(Exception):
    """The endpoint answered 2xx with a body we cannot use."""


@dataclass(frozen=True)
class OpenAIJudgeConfig:
    """Settings of an OpenAI-compatible judge. The key itself is never part of the config."""

    model: str
    base_url: str | None = None
    api_key_env: str = DEFAULT_KEY_ENV
    prompt: str = "ref-aware"
    info_model: str | None = None
    concurrency: int = 8
    timeout_s: float = 60.0
    max_retries: int = 6
    max_malformed_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    max_tokens: int = 5
    top_logprobs: int = 20
    logprobs: bool = True

    def __post_init__(self) -> None:
        if not self.model:
            raise InputError("--judge openai:MODEL: empty model name")
        check_style(self.prompt)
        if self.concurrency < 1:
            raise InputError(f"--concurrency {self.concurrency}: must be at least 1")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.max_malformed_retries < 0:
            raise InputError("judge timeout must be > 0 and retry counts >= 0")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.api_key_env):
            raise InputError("--judge-api-key-env: not an environment variable name (give the "
                             "NAME of the variable holding the key, not the key)")


class OpenAIJudge(Judge):
    """Judge through an OpenAI-compatible endpoint. ``judge_id`` is ``openai:MODEL``."""

    streams_results = True
    selects_kinds = True

    def __init__(self, cfg: OpenAIJudgeConfig, cache: JudgeCache | None = None):
        self.cfg = cfg
        self.cache = cache
        self.prompt_version = VERSIONS[cfg.prompt]
        info = f"+info={cfg.info_model}" if cfg.info_model else ""
        self.judge_id = f"openai:{cfg.model}{info}"
        # The cache key includes the endpoint: one model name can mean different models.
        self.backend = "openai" if not cfg.base_url else f"openai@{cfg.base_url.rstrip('/')}"
        key = os.environ.get(cfg.api_key_env)
        if not key:
            if cfg.api_key_env != DEFAULT_KEY_ENV or not cfg.base_url:
                raise InputError(f"judge {self.judge_id}: set the API key in "
                                 f"{env_name_for_message(cfg.api_key_env)} (or name another "
                                 "variable with --judge-api-key-env NAME)")
            key = "no-key"  # a local endpoint that needs none
        self._secrets = (key,)
        self._key = key
        self._use_logprobs = cfg.logprobs
        self._not_before = 0.0  # monotonic time before which no request is sent (Retry-After)
        self._replies = 0  # replies obtained in this judge's life
        self._unreachable = 0  # requests that ran out of retries on connection errors

    def __repr__(self) -> str:
        return f"OpenAIJudge({self.judge_id!r}, base_url={self.cfg.base_url!r})"

    def model_for(self, kind: Kind) -> str:
        info = kind == "informative" and self.cfg.info_model
        return self.cfg.info_model if info else self.cfg.model

    # -- public API -------------------------------------------------------------------------

    def judge(self, items: Sequence[JudgeItem], progress: bool = True,
              on_result: ResultCallback | None = None,
              kinds: Sequence[Kind] = KINDS) -> list[JudgeResult]:
        """Score ``items`` in order; ``on_result(index, result)`` is called as each finishes.
        ``kinds`` may name one kind only (the other is ``unscored``, error "not requested")."""
        coro = self.ajudge(items, progress=progress, on_result=on_result, kinds=kinds)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro)
        box: dict[str, object] = {}  # called from inside an event loop: run in a helper thread

        def target() -> None:
            try:
                box["value"] = asyncio.run(coro)
            except BaseException as err:  # re-raised in the caller's thread
                box["error"] = err

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

    async def ajudge(self, items: Sequence[JudgeItem], progress: bool = True,
                     on_result: ResultCallback | None = None,
                     kinds: Sequence[Kind] = KINDS) -> list[JudgeResult]:
        import openai

        from evals.io import progress as progress_bar

        results: list[JudgeResult | None] = [None] * len(items)
        bar = progress_bar(total=len(items), desc=self.judge_id, unit="ans", disable=not progress)
        totals = {"prompt_tokens": 0, "completion_tokens": 0}

        def finish(i: int, res: JudgeResult) -> None:
            results[i] = res
            for k in totals:
                totals[k] += res.usage.get(k, 0)
            bar.update(1)
            bar.set_postfix(tok_in=totals["prompt_tokens"], tok_out=totals["completion_tokens"],
                            refresh=False)
            if on_result is not None:
                on_result(i, res)

        skipped = Verdict("unscored", None, "", "", "not requested")
        pending: list[int] = []
        for i, item in enumerate(items):  # answer from the cache first: no network needed
            cached = [self._from_cache(item, kind) if kind in kinds else skipped for kind in KINDS]
            if all(c is not None for c in cached):
                finish(i, self._result(cached[0], cached[1], {"cache_hits": len(kinds)}))
            else:
                pending.append(i)

        client = openai.AsyncOpenAI(api_key=self._key, base_url=self.cfg.base_url,
                                    max_retries=0, timeout=self.cfg.timeout_s)
        sem = asyncio.Semaphore(self.cfg.concurrency)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in pending:
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                outs = await asyncio.gather(*(self._judge_one(client, sem, items[i], k)
                                              if k in kinds else _constant(skipped)
                                              for k in KINDS))
                usage: dict[str, int] = {}
                for _, u in outs:
                    for k, v in u.items():
                        usage[k] = usage.get(k, 0) + v
                finish(i, self._result(outs[0][0], outs[1][0], usage))

        workers = [asyncio.create_task(worker())
                   for _ in range(min(len(pending), 2 * self.cfg.concurrency))]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await client.close()
            bar.close()
        return results  # type: ignore[return-value]

    # -- internals -----------------------------------------------------------------------------

    def _result(self, truthful: Verdict, informative: Verdict,
                usage: dict[str, int]) -> JudgeResult:
        return JudgeResult(truthful, informative, self.judge_id, self.prompt_version, usage)

    def _key_for(self, item: JudgeItem, kind: Kind) -> str:
        return cache_key(self.backend, self.model_for(kind), self.prompt_version, kind, item)

    def _from_cache(self, item: JudgeItem, kind: Kind) -> Verdict | None:
        if self.cache is None:
            return None
        hit = self.cache.get(self._key_for(item, kind))
        return hit.verdict if hit is not None else None

    async def _judge_one(self, client, sem: asyncio.Semaphore, item: JudgeItem,
                         kind: Kind) -> tuple[Verdict, dict[str, int]]:
        cached = self._from_cache(item, kind)
        if cached is not None:
            return cached, {"cache_hits": 1}
        prompt = build_prompt(item, kind, self.cfg.prompt)
        verdict, usage, obtained = await self._request(client, sem, prompt, kind)
        if obtained and self.cache is not None:
            self.cache.put(self._key_for(item, kind), backend=self.backend,
                           model=self.model_for(kind), prompt_version=self.prompt_version,
                           kind=kind, verdict=verdict, prompt_tokens=usage.get("prompt_tokens", 0),
                           completion_tokens=usage.get("completion_tokens", 0))
        return verdict, usage

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def _wait_turn(self) -> None:
        delay = self._not_before - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _send(self, client, prompt: str, kind: Kind) -> str:
        model = self.model_for(kind)
        if self.cfg.prompt == "gpt-judge":
            extra = {"logprobs": min(self.cfg.top_logprobs, 5)} if self._use_logprobs else {}
            raw = await client.completions.with_raw_response.create(
                model=model, prompt=prompt, max_tokens=1, temperature=0, **extra)
        else:
            extra = ({"logprobs": True, "top_logprobs": self.cfg.top_logprobs}
                     if self._use_logprobs else {})
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": prompt}],
                max_tokens=self.cfg.max_tokens, temperature=0, **extra)
        return raw.text

    async def _request(self, client, sem: asyncio.Semaphore, prompt: str,
                       kind: Kind) -> tuple[Verdict, dict[str, int], bool]:
        """(verdict, usage, whether a reply was obtained) for one prompt, with retries."""
        import openai

        usage = {"requests": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
        attempt = malformed = 0
        while True:
            wait: float | None = None
            async with sem:
                await self._wait_turn()
                usage["requests"] += 1
                try:
                    body = await self._send(client, prompt, kind)
                    verdict, n_in, n_out = self._parse_body(body, prompt)
                    usage["prompt_tokens"] += n_in
                    usage["completion_tokens"] += n_out
                    self._replies += 1
                    return verdict, usage, True
                except (MalformedReply, openai.APIResponseValidationError, UnicodeError) as err:
                    malformed += 1
                    if malformed > self.cfg.max_malformed_retries:
                        return self._unscored(prompt, f"malformed response after {malformed} "
                                              f"attempts: {err}"), usage, False
                    wait = self._backoff(malformed - 1)
                except openai.APIStatusError as err:
                    status = err.status_code
                    message = scrub(str(err), self._secrets)[:300]
                    if status in FATAL_STATUS:
                        where = self.cfg.base_url or "the OpenAI API"
                        hint = (f"check the model name {self.model_for(kind)!r}" if status == 404
                                else "check the key in "
                                f"{env_name_for_message(self.cfg.api_key_env)}")
                        raise JudgeEndpointError(f"judge {self.judge_id}: {where} answered HTTP "
                                                 f"{status} ({hint}): {message}") from None
                    if status == 400 and self._use_logprobs and "logprob" in message.lower():
                        self._use_logprobs = False  # this endpoint does not give logprobs
                        continue
                    if not (status in RETRY_STATUS or status >= 500):
                        return self._unscored(prompt, f"HTTP {status}: {message}"), usage, False
                    if attempt >= self.cfg.max_retries:
                        return self._unscored(prompt, f"HTTP {status} after {attempt + 1} "
                                              f"attempts: {message}"), usage, False
                    after = parse_retry_after(err.response.headers.get("retry-after"))
                    if after is not None:
                        wait = min(after, self.cfg.max_retry_after_s)
                        wait += random.uniform(0, 0.1 * wait + 0.05)
                        self._not_before = max(self._not_before, time.monotonic() + wait)
                    else:
                        wait = self._backoff(attempt)
                    attempt += 1
                except openai.APIConnectionError as err:  # includes APITimeoutError
                    timeout = isinstance(err, openai.APITimeoutError)
                    what = "timeout" if timeout else "connection error"
                    if attempt >= self.cfg.max_retries:
                        detail = scrub(str(err), self._secrets)[:200]
                        self._unreachable += 1
                        if self._replies == 0 and self._unreachable >= UNREACHABLE_LIMIT:
                            where = self.cfg.base_url or "the OpenAI API"
                            raise JudgeEndpointError(f"judge {self.judge_id}: cannot reach "
                                                     f"{where} ({what}: {detail}); is the "
                                                     "server running?") from None
                        return self._unscored(prompt, f"{what} after {attempt + 1} attempts: "
                                              f"{detail}"), usage, False
                    wait = self._backoff(attempt)
                    attempt += 1
            usage["retries"] += 1
            await asyncio.sleep(wait)

    def _unscored(self, prompt: str, error: str) -> Verdict:
        return Verdict("unscored", None, prompt, "", scrub(error, self._secrets))

    def _parse_body(self, body: str, prompt: str) -> tuple[Verdict, int, int]:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            raise MalformedReply(f"body is not JSON: {scrub(str(body), self._secrets)[:80]!r}"
                                 ) from None
        if not isinstance(data, dict):
            raise MalformedReply("body is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise MalformedReply("no choices in the response")
        choice = choices[0]
        if self.cfg.prompt == "gpt-judge":
            text = choice.get("text")
            positions = completion_logprob_positions(choice.get("logprobs"))
        else:
            text = (choice.get("message") or {}).get("content")
            positions = chat_logprob_positions(choice.get("logprobs"))
        if not isinstance(text, str):
            raise MalformedReply("the first choice has no text")
        raw = scrub(text, self._secrets)
        usage = data.get("usage") or {}
        n_in = int(usage.get("prompt_tokens") or 0)
        n_out = int(usage.get("completion_tokens") or 0)
        word = parse_yes_no(text)
        if word is None:
            return Verdict("unscored", None, prompt, raw, "unparseable reply"), n_in, n_out
        p_yes = None
        for token, top in positions:  # the position where the reply says yes/no
            if yes_no_token(token) == word:
                p_yes = p_yes_from_top_logprobs(top)
                break
        return Verdict(word, p_yes, prompt, raw), n_in, n_out


async def _constant(verdict: Verdict) -> tuple[Verdict, dict[str, int]]:
    return verdict, {}
