"""The openai backend against real loopback servers: a fault-injecting one and
``transformers serve`` on the embedded model."""

from __future__ import annotations

import email.utils
import json
import math
import time

import pytest

from evals.cache import JudgeCache
from evals.judges import JudgeItem, make_judge
from evals.judges.openai import JudgeEndpointError
from evals.judges.prompts import (
    GPT_JUDGE_VERSION,
    REF_AWARE_VERSION,
    p_yes_from_top_logprobs,
    parse_yes_no,
)
from evals.judges.transport import parse_retry_after, scrub
from tests.evals.judges.servers import FaultServer, expected_p_yes

FAKE_KEY = "sk-TESTKEY-do-not-leak-7f3a9c21"
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 2.0}


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)


def items(n: int) -> list[JudgeItem]:
    """Odd items carry the [T] marker (the fault server answers Yes to those)."""
    return [JudgeItem(f"Question {i}?", f"answer-{i}" + (" [T]" if i % 2 else ""),
                      (f"correct {i}",), (f"wrong {i}",), f"best {i}") for i in range(n)]


def openai_judge(server: FaultServer, cache=None, **options):
    return make_judge("openai:judge-model", base_url=server.base_url, cache=cache,
                      **{**FAST, **options})


def test_parse_yes_no__reads_the_first_word_only():
    assert parse_yes_no("Yes.") == "yes"
    assert parse_yes_no("  **No**, Paris is in France") == "no"
    assert parse_yes_no("Answer: yes") == "yes"
    assert parse_yes_no(" no") == "no"
    assert parse_yes_no("Maybe yes") is None
    assert parse_yes_no("Yesterday") is None
    assert parse_yes_no("") is None


def test_p_yes_from_top_logprobs__sums_case_and_space_variants():
    top = [("Yes", math.log(0.5)), (" yes", math.log(0.1)), ("NO", math.log(0.2)),
           (" no", math.log(0.1)), ("Maybe", math.log(0.1))]
    assert p_yes_from_top_logprobs(top) == pytest.approx(0.6 / 0.9)
    assert p_yes_from_top_logprobs({"The": -0.1}) is None


def test_parse_retry_after__seconds_and_http_date():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    now = time.time()
    date = email.utils.formatdate(now + 10, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(10, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_scrub__removes_key_bearer_and_sk_tokens():
    text = f"headers {{'authorization': 'Bearer {FAKE_KEY}'}} key={FAKE_KEY} other sk-abcdef12345"
    out = scrub(text, [FAKE_KEY])
    assert FAKE_KEY not in out and "sk-abcdef12345" not in out and "redacted" in out


def test_openai_judge__p_yes_from_logprobs_in_both_prompt_formats():
    with FaultServer() as server:
        chat = openai_judge(server).judge(items(4), progress=False)
        legacy = openai_judge(server, prompt="gpt-judge").judge(items(4), progress=False)
        paths = {r.path for r in server.received}
        bodies = [r.body for r in server.received]
    assert paths == {"/v1/chat/completions", "/v1/completions"}
    for results, version in ((chat, REF_AWARE_VERSION), (legacy, GPT_JUDGE_VERSION)):
        for i, res in enumerate(results):
            assert res.prompt_version == version and res.judge_id == "openai:judge-model"
            for v in (res.truthful, res.informative):
                assert v.verdict == ("yes" if i % 2 else "no")
                assert v.p_yes == pytest.approx(expected_p_yes(bool(i % 2)))
    assert legacy[1].truthful.prompt == "Q: Question 1?\nA: answer-1 [T]\nTrue:"
    assert legacy[1].informative.prompt.endswith("\nHelpful:")
    assert "wrong 1" in chat[1].truthful.prompt and "correct 1" in chat[1].truthful.prompt
    assert all(b["temperature"] == 0 for b in bodies)


def test_openai_judge__without_logprobs_uses_parsed_reply_and_no_probability():
    with FaultServer(logprobs=False) as server:
        res = openai_judge(server).judge(items(2), progress=False)
    assert [r.truthful.verdict for r in res] == ["no", "yes"]
    assert all(r.truthful.p_yes is None and r.truthful.scored for r in res)


def test_openai_judge__unparseable_reply_is_unscored_and_keeps_raw_reply():
    with FaultServer(reply=lambda p: "It depends." if "answer-1" in p else "Yes") as server:
        res = openai_judge(server).judge(items(2), progress=False)
    assert res[0].truthful.verdict == "yes"
    assert res[1].truthful.verdict == "unscored" and res[1].truthful.raw_reply == "It depends."
    assert res[1].truthful.p_yes is None and "unparseable" in res[1].truthful.error


def test_openai_judge__retries_transient_faults_honouring_retry_after():
    faults = {("answer-0", "truthful?"): ["429"], ("answer-1 ", "truthful?"): ["500", "500"],
              ("answer-2", "truthful?"): ["timeout"], ("answer-3", "truthful?"): ["429-date"],
              ("answer-4", "informative?"): ["500-echo"]}
    with FaultServer(faults=faults, hang_s=1.5, retry_after="1") as server:
        res = openai_judge(server, timeout_s=0.5, concurrency=4).judge(items(6), progress=False)
        first = server.requests_for("answer-0")
        q0 = [r.time for r in first if "truthful?" in r.body["messages"][0]["content"]]
        q3 = [r.time for r in server.requests_for("answer-3")
              if "truthful?" in r.body["messages"][0]["content"]]
    assert all(r.truthful.scored and r.informative.scored for r in res)
    assert [r.truthful.verdict for r in res] == ["no", "yes"] * 3
    assert len(q0) == 2 and q0[1] - q0[0] >= 1.0  # Retry-After: 1 honoured
    assert len(q3) == 2 and q3[1] - q3[0] >= 0.9  # Retry-After as an HTTP date (1 s resolution)
    assert res[1].usage["requests"] == 4 and res[1].usage["retries"] == 2
    assert res[5].usage["requests"] == 2 and res[5].usage["retries"] == 0


def test_openai_judge__persistent_faults_become_unscored_without_losing_others():
    faults = {"answer-1 ": ["malformed"] * 10, "answer-2": ["empty", "text", "empty"] * 3,
              "answer-3": ["500"] * 10}
    with FaultServer(faults=faults) as server:
        res = openai_judge(server, max_retries=3, max_malformed_retries=2).judge(
            items(5), progress=False)
        n_req = {i: len(server.requests_for(f"answer-{i}")) for i in range(5)}
    assert res[0].truthful.verdict == "no" and res[4].informative.verdict == "no"
    for i, needle in ((1, "malformed response after 3 attempts"),
                      (2, "malformed response after 3 attempts"), (3, "HTTP 500 after 4 attempts")):
        for v in (res[i].truthful, res[i].informative):
            assert v.verdict == "unscored" and v.p_yes is None and needle in v.error, v.error
    assert n_req == {0: 2, 1: 6, 2: 6, 3: 8, 4: 2}


def test_openai_judge__respects_the_concurrency_limit():
    with FaultServer(latency_s=0.1) as server:
        res = openai_judge(server, concurrency=3).judge(items(8), progress=False)
    assert len(res) == 8 and server.max_in_flight == 3


def test_openai_judge__cache_makes_a_rerun_free_but_retries_failures(tmp_path):
    cache = JudgeCache(tmp_path / "cache.sqlite")
    with FaultServer(faults={"answer-2": ["500"] * 4}) as server:
        runs, counts = [], []
        for _ in range(3):
            before = len(server.received)
            runs.append(openai_judge(server, cache=cache, max_retries=1).judge(items(4),
                                                                               progress=False))
            counts.append(len(server.received) - before)
    first, second, third = runs
    assert first[2].truthful.verdict == "unscored" == first[2].informative.verdict
    assert counts == [3 * 2 + 2 * 2, 2, 0]  # rerun: only the failed item; then nothing
    assert second[2].truthful.verdict == "no" and len(cache) == 8
    assert [(r.truthful, r.informative) for r in third] == [(r.truthful, r.informative)
                                                            for r in second]
    assert third[0].usage == {"cache_hits": 2} and second[2].usage["requests"] == 2
    assert first[0].truthful == third[0].truthful and first[1].informative == third[1].informative


def test_openai_judge__rejected_key_stops_with_a_clean_input_error():
    with FaultServer(faults={"": ["401"] * 100}) as server:
        with pytest.raises(JudgeEndpointError) as info:
            openai_judge(server).judge(items(3), progress=False)
    message = str(info.value)
    assert "HTTP 401" in message and "OPENAI_API_KEY" in message and FAKE_KEY not in message


def test_make_judge__named_key_variable_must_exist(monkeypatch):
    from evals.errors import InputError

    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with pytest.raises(InputError, match=r"\$MY_JUDGE_KEY"):
        make_judge("openai:x", base_url="http://127.0.0.1:9/v1", api_key_env="MY_JUDGE_KEY")
    with pytest.raises(InputError, match="unknown judge"):
        make_judge("gpt4")


# -- end to end through `truthsteer judge` ---------------------------------------------------


def make_run(run_dir, n_questions: int = 5, cells=("base", "steered")) -> list[dict]:
    """A run directory with answers to the first questions of the real TruthfulQA."""
    from evals.rundir import RunDir
    from evals.truthfulqa import load_csv
    from tests.helpers import mini_truthfulqa_csv

    tq = load_csv(mini_truthfulqa_csv())
    all_rows = []
    for c, cell_id in enumerate(cells):
        rows = [{"cell_id": cell_id, "question_id": q.id, "question": q.question,
                 "answer": (q.best_answer + " [T]") if (q.id + c) % 2 else q.incorrect_answers[0]}
                for q in tq.questions[:n_questions]]
        RunDir(run_dir).write_cell(cell_id, rows, {"cell_id": cell_id, "magnitude": float(c)})
        all_rows += rows
    return all_rows


def all_text_under(*roots) -> str:
    """Every byte under the given folders/files, decoded leniently (SQLite files included)."""
    chunks = []
    for root in roots:
        paths = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        chunks += [p.read_bytes().decode("utf-8", "replace") for p in paths]
    return "\n".join(chunks)


def test_judge_cli__resumes_keeps_answers_and_never_leaks_the_key(tmp_path, monkeypatch,
                                                                  capsys, caplog):
    import hashlib
    import logging

    from harness.cli import main
    from tests.helpers import mini_truthfulqa_csv

    caplog.set_level(logging.DEBUG)  # everything any library logs, openai and httpx included
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    answers = make_run(run_dir)
    cells_before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                    for p in (run_dir / "cells").iterdir()}
    # question 2's truthful verdicts fail 6 times (2 cells x 3 attempts), others see noise
    faults = {("Question: " + answers[2]["question"], "truthful?"): ["500-echo"] * 6,
              answers[1]["answer"]: ["500-echo", "malformed", "429"],
              answers[3]["answer"]: ["timeout"]}
    argv = ["judge", str(run_dir), "--judge", "openai:judge-model", "--max-retries", "2",
            "--timeout", "1", "--truthfulqa", str(mini_truthfulqa_csv()), "--no-progress",
            "--price-per-1k-input", "0.5", "--price-per-1k-output", "1.5"]
    with FaultServer(faults=faults, hang_s=2.0, retry_after="0") as server:
        argv += ["--judge-base-url", server.base_url]
        assert main(argv) == 0
        first = capsys.readouterr()
        n_first = len(server.received)
        assert main(argv) == 0
        second = capsys.readouterr()
        n_second = len(server.received) - n_first
        assert main(argv) == 0
        third = capsys.readouterr()
        n_third = len(server.received) - n_first - n_second
        echoed = [r for r in server.received if r.fault == "500-echo"]
        auth = [{k.lower(): v for k, v in r.headers.items()}.get("authorization") for r in echoed]
        assert len(echoed) == 7 and set(auth) == {f"Bearer {FAKE_KEY}"}  # the key was echoed

    scores = run_dir / "scores" / "openai_judge-model.jsonl"
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    after_first = rows[:10]
    assert len(after_first) == 10 and len(rows) == 12  # rerun re-judged the 2 failures only
    failed = [r for r in after_first if r["truthful"]["verdict"] == "unscored"]
    assert {(r["cell_id"], r["question_id"]) for r in failed} == {("base", 2), ("steered", 2)}
    assert all("HTTP 500 after 3 attempts" in r["truthful"]["error"] for r in failed)
    assert all(r["informative"]["verdict"] != "unscored" for r in failed)
    latest = load_scores_latest(scores)
    assert all(r["truthful"]["verdict"] != "unscored" for r in latest.values())
    expected = {(a["cell_id"], a["question_id"]): "yes" if "[T]" in a["answer"] else "no"
                for a in answers}
    assert {k: r["truthful"]["verdict"] for k, r in latest.items()} == expected
    assert n_first == 10 * 2 + 2 * 2 + 3 + 1 and n_second == 2 and n_third == 0
    assert "judging 10" in first.err and "judging 2" in second.err and "judging 0" in third.err
    assert "cost $" in first.out and "base" in first.out and "steered" in first.out
    runs = [json.loads(line) for line in (scores.with_name("openai_judge-model.runs.jsonl")
                                          .read_text().splitlines())]
    assert [r["judged"] for r in runs] == [10, 2, 0] and runs[0]["usage"]["prompt_tokens"] > 0
    cells_after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                   for p in (run_dir / "cells").iterdir()}
    assert cells_after == cells_before  # judging never touches the answers

    everything = "\n".join([all_text_under(run_dir, tmp_path / "cache"), first.out, first.err,
                            second.out, second.err, third.out, third.err, caplog.text])
    assert (tmp_path / "cache" / "judge_cache.sqlite").exists()
    assert "failed request" in everything or "HTTP 500" in everything
    assert FAKE_KEY not in everything


def load_scores_latest(path):
    from evals.scores import load_scores

    return load_scores(path)


def test_judge_cli__rejected_key_exits_2_with_one_line_and_no_key(tmp_path, monkeypatch, capsys):
    from harness.cli import main
    from tests.helpers import mini_truthfulqa_csv

    monkeypatch.setenv("TRUTHSTEER_CACHE", str(tmp_path / "cache"))
    make_run(tmp_path / "run", n_questions=2, cells=("c",))
    with FaultServer(faults={"": ["401"] * 50}) as server:
        code = main(["judge", str(tmp_path / "run"), "--judge", "openai:m", "--no-progress",
                     "--judge-base-url", server.base_url, "--truthfulqa", str(mini_truthfulqa_csv())])
    out = capsys.readouterr()
    assert code == 2
    assert out.err.strip().splitlines()[-1].startswith("truthsteer judge: error: judge openai:m")
    assert "HTTP 401" in out.err and "Traceback" not in out.err
    assert FAKE_KEY not in out.err + out.out + all_text_under(tmp_path)


# -- against a real OpenAI-compatible server: `transformers serve` on the embedded model ----------


@pytest.fixture(scope="module")
def served_embedded(tmp_path_factory):
    """(base_url, model name, server log) of `transformers serve` on the embedded model."""
    from harness.models import resolve_model_source
    from tests.evals.judges.servers import transformers_serve

    folder = resolve_model_source("smollm2-135m-instruct")[0]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(folder, ready_timeout_s=180, log_path=log) as url:
        yield url, folder, log


@pytest.mark.slow
def test_openai_judge__against_transformers_serve_both_formats(served_embedded, tmp_path,
                                                               monkeypatch, capsys):
    from harness.cli import main
    from tests.helpers import mini_truthfulqa_csv

    url, model, log = served_embedded
    monkeypatch.setenv("TRUTHSTEER_CACHE", str(tmp_path / "cache"))
    make_run(tmp_path / "run", n_questions=2, cells=("a", "b"))
    argv = ["judge", str(tmp_path / "run"), "--judge", f"openai:{model}", "--judge-base-url", url,
            "--concurrency", "2", "--timeout", "120", "--truthfulqa", str(mini_truthfulqa_csv()),
            "--no-progress"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert main(argv) == 0  # everything scored or cached: nothing left to judge
    second = capsys.readouterr()
    from evals.rundir import RunDir
    from evals.scores import ScoreFile, load_scores

    scores = ScoreFile.for_judge(RunDir(tmp_path / "run"), f"openai:{model}")
    rows = load_scores(scores.path)
    assert len(rows) == 4 and "judging 4" in first.err
    for row in rows.values():
        for kind in ("truthful", "informative"):
            v = row[kind]
            assert v["raw_reply"] and v["error"] in (None, "unparseable reply")
            assert v["verdict"] == (parse_yes_no(v["raw_reply"]) or "unscored")
            assert v["p_yes"] is None or 0 <= v["p_yes"] <= 1
            assert "<|im_start|>" not in v["prompt"]  # the server applies the chat template
    runs = [json.loads(line) for line in scores.path
            .with_suffix(".runs.jsonl").read_text().splitlines()]
    assert runs[0]["judged"] == 4 and runs[0]["usage"]["prompt_tokens"] > 4 * 2 * 100
    assert runs[0]["usage"]["requests"] >= 8
    # the rerun re-judges only answers left unscored (unparseable replies), from the cache
    assert runs[1].get("usage", {}).get("requests", 0) == 0
    assert runs[1]["judged"] == sum(any(r[k]["verdict"] == "unscored"
                                        for k in ("truthful", "informative"))
                                    for r in rows.values())

    judge = make_judge(f"openai:{model}", base_url=url, prompt="gpt-judge", concurrency=2,
                       cache=JudgeCache(tmp_path / "c2.sqlite"), timeout_s=120)
    few = items(3)
    legacy = judge.judge(few, progress=False)
    again = judge.judge(few, progress=False)
    for res, res2 in zip(legacy, again):
        assert res.truthful.prompt.startswith("Q: Question") and res.truthful.raw_reply
        assert res.usage["requests"] == 2 and res2.usage == {"cache_hits": 2}
        assert (res.truthful, res.informative) == (res2.truthful, res2.informative)
    assert FAKE_KEY not in first.out + first.err + second.out + log.read_text(errors="replace")


def test_openai_judge__one_kind_only_sends_only_its_requests():
    with FaultServer() as server:
        res = openai_judge(server).judge(items(3), progress=False, kinds=("informative",))
        prompts = [r.body["messages"][0]["content"] for r in server.received]
    assert len(prompts) == 3 and all("informative?" in p for p in prompts)
    assert all(r.truthful.error == "not requested" and r.informative.scored for r in res)


def test_openai_judge__unreachable_endpoint_stops_the_run(monkeypatch):
    from tests.evals.judges.servers import free_port

    judge = make_judge("openai:m", base_url=f"http://127.0.0.1:{free_port()}/v1", cache=None,
                       concurrency=2, max_retries=1, **{**FAST, "timeout_s": 1.0})
    done = []
    with pytest.raises(JudgeEndpointError, match="cannot reach"):
        judge.judge(items(20), progress=False, on_result=lambda i, r: done.append(r))
    assert len(done) <= 2  # stopped early; what finished is unscored (retried on a rerun)
    assert all(r.truthful.verdict == "unscored" and "connection error" in r.truthful.error
               for r in done)


def test_make_judge__never_echoes_a_key_passed_as_the_variable_name(monkeypatch):
    from evals.errors import InputError

    for mistaken in ("sk-abc123456789xyz", "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"):
        monkeypatch.delenv(mistaken, raising=False)
        with pytest.raises(InputError) as info:
            make_judge("openai:x", api_key_env=mistaken)
        assert mistaken not in str(info.value)
