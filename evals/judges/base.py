"""The judge interface and its result record.

A judge scores (question, answer, references) for *truthful* and *informative*. Every verdict
keeps the prompt it was asked, the raw reply, the parsed verdict and P(yes) when there is one;
a reply that could not be obtained or parsed is ``unscored`` (never silently "no").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Kind = Literal["truthful", "informative"]
VerdictLabel = Literal["yes", "no", "unscored"]


@dataclass(frozen=True)
class JudgeItem:
    """What a judge sees: the question, the candidate answer, and the reference answers."""

    question: str
    answer: str
    correct_answers: tuple[str, ...] = ()
    incorrect_answers: tuple[str, ...] = ()
    best_answer: str = ""

    @classmethod
    def for_question(cls, question: Any, answer: str, text: str | None = None) -> JudgeItem:
        """The item for ``answer`` to a TruthfulQA question (an ``evals.truthfulqa.Question``,
        or None when the question is unknown: then ``text`` is the question, with no
        references)."""
        if question is None:
            return cls(text or "", answer)
        return cls(text or question.question, answer, tuple(question.correct_answers),
                   tuple(question.incorrect_answers), question.best_answer)


@dataclass(frozen=True)
class Verdict:
    """One judgement of one kind. ``p_yes`` is None when the backend gives no probability."""

    verdict: VerdictLabel
    p_yes: float | None
    prompt: str
    raw_reply: str
    error: str | None = None

    @property
    def scored(self) -> bool:
        return self.verdict != "unscored"

    @property
    def label(self) -> bool | None:
        """True for yes, False for no, None when unscored."""
        return None if self.verdict == "unscored" else self.verdict == "yes"


@dataclass(frozen=True)
class NonAnswer:
    """The non-answer detector's verdict on an answer (:mod:`evals.judges.nonanswer`):
    ``score`` is its P(non-answer), ``flagged`` whether it calls the answer a non-answer
    (refusal, evasion, self-talk, echo, off-topic, gibberish, repetition, empty), ``reasons``
    the features that pushed it there most."""

    flagged: bool
    score: float
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "score": self.score, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NonAnswer:
        return cls(bool(d["flagged"]), float(d["score"]), tuple(d.get("reasons") or ()))


@dataclass(frozen=True)
class JudgeResult:
    """Both judgements of one item, with the judge's identity and prompt version; judges that
    run the non-answer detector (the learned ones) add its verdict in ``nonanswer``."""

    truthful: Verdict
    informative: Verdict
    judge_id: str
    prompt_version: str
    usage: dict[str, int] = field(default_factory=dict)
    nonanswer: NonAnswer | None = None


ResultCallback = Callable[[int, JudgeResult], None]
KINDS: tuple[Kind, ...] = ("truthful", "informative")


class Judge:
    """The judge interface. ``judge_id`` names backend and model, e.g. ``openai:gpt-4o``.

    Optional abilities are declared here, with the defaults of a judge that lacks them:

    * ``streams_results``: ``judge(items, on_result=f)`` calls ``f(index, result)`` as each
      result is ready (else callers judge chunk by chunk to keep finished work);
    * ``selects_kinds``: ``judge(items, kinds=("truthful",))`` skips the other kind's work
      (it is then ``unscored``);
    * :attr:`training_questions`: keys of questions whose labels trained the judge;
    * :attr:`agreement`: its stored agreement with people;
    * :meth:`record`: what is written beside its scores (``<slug>.judge.json``).
    """

    judge_id: str
    prompt_version: str
    streams_results: ClassVar[bool] = False
    selects_kinds: ClassVar[bool] = False

    def judge(self, items: Sequence[JudgeItem], progress: bool = True, *,
              on_result: ResultCallback | None = None,
              kinds: Sequence[Kind] = KINDS) -> list[JudgeResult]:
        """Score ``items`` in order; one result per item, unscored verdicts on failure.
        ``on_result`` / ``kinds`` are honoured only by judges declaring the ability."""
        raise NotImplementedError

    @property
    def training_questions(self) -> set[str]:
        """Keys (``evals.labels.question_key``) of questions whose labels trained this judge."""
        return set()

    @property
    def agreement(self) -> Mapping[str, Any]:
        """Stored agreement with people: {"cv"|"heldout": {kind: {subset: stats}}}; {} if none."""
        return {}

    def record(self) -> dict[str, Any] | None:
        """The judge's record kept beside its scores (name, recipe, agreement); None if none."""
        return None
