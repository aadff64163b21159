"""The judge interface and its result record.

A judge scores (question, answer, references) for *truthful* and *informative*. Every verdict
keeps the prompt it was asked, the raw reply, the parsed verdict and P(yes) when there is one;
a reply that could not be obtained or parsed is ``unscored`` (never silently "no").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

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
class JudgeResult:
    """Both judgements of one item, with the judge's identity and prompt version."""

    truthful: Verdict
    informative: Verdict
    judge_id: str
    prompt_version: str
    usage: dict[str, int] = field(default_factory=dict)


class Judge(Protocol):
    """Anything that scores items. ``judge_id`` names backend and model, e.g. ``openai:gpt-4o``."""

    judge_id: str
    prompt_version: str

    def judge(self, items: Sequence[JudgeItem], progress: bool = True) -> list[JudgeResult]:
        """Score ``items`` in order; one result per item, unscored verdicts on failure."""
        ...
