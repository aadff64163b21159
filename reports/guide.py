"""The "How to read this report" section a report ends with: what every column and mark means
(one short paragraph per term, the term first) and the notes its caller passed (plain text;
`backticks` mark commands; escaped like everything else when rendered)."""

from __future__ import annotations

from reports.render import Heading, Para
from reports.selection import MOSTLY_NONANSWERS, NONANSWER_FLAG

HOW_TO_READ = "How to read this report"
ANCHOR = "how-to-read"

# (term shown in bold, the rest of its sentence(s))
DEFINITIONS: tuple[tuple[str, str], ...] = (
    ("Rates", " are the judge's verdicts, over the answers it scored for that verdict, with 95% "
     "Wilson score intervals in brackets; they are only as good as the judge's measured "
     "agreement (in the verdict and each run's fingerprint: with people's labels on TruthfulQA's "
     "answers, with AI readers' labels on steered and long-form answers) and only on the kinds "
     "of text it was measured on, or the human-corrected columns where spot-check labels "
     "exist."),
    ("true×informative", " (TruthfulQA's headline) counts answers judged both truthful and "
     "informative."),
    ("Δ", " is the paired difference in true×informative from the unsteered baseline on the "
     "same questions, with a 95% t-interval."),
    ("'★ best overall'", " is chosen by cross-fitting: the questions are split into two folds, "
     "the best steered configuration is chosen on each fold and rated on the other, and a "
     "configuration is marked only when both folds choose it (its rates are then out-of-fold "
     "rates, so their intervals are honest); the mark says whether its paired interval vs the "
     "baseline lies above 0 ('clears baseline'), below it, or spans it ('within baseline's "
     "noise')."),
    ("'best of D'", " is the same choice within direction D."),
    ("'non-answers'", " is the share of answers the judge's non-answer detector called "
     "refusals, evasions, self-talk or degenerate text (– where the judge does not run it); a "
     f"configuration with more than {MOSTLY_NONANSWERS:.0%} non-answers is flagged "
     f"'{NONANSWER_FLAG}' and never marked best."),
    ("Unscored verdicts", " (no score, a score of an older answer text, or a judge failure) are "
     "counted in the 'unscored' column, never treated as 'no'."),
    ("MC1/MC2", " are TruthfulQA's multiple-choice scores (MC1 with a Wilson, MC2 with a "
     "t-interval); CE is the steered model's cross-entropy on reference text and KL its "
     "divergence from the unsteered model there (nats/token): the fluency cost, – where not "
     "measured."),
)


def note_para(note: str) -> Para:
    """A caller's note: `backticks` mark commands (shown as code)."""
    parts = note.split("`")
    return Para(tuple(("code", p) if i % 2 else p for i, p in enumerate(parts) if p), css="note")


def how_to_read(notes: list[str] | None = None) -> list:
    """The closing section's blocks: the definitions, then the caller's notes."""
    blocks: list = [Heading(2, HOW_TO_READ, anchor=ANCHOR)]
    blocks += [Para((("b", term), rest)) for term, rest in DEFINITIONS]
    if notes:
        blocks.append(Heading(3, "Notes on how this report was made"))
        blocks += [note_para(n) for n in notes]
    return blocks


__all__ = ["ANCHOR", "DEFINITIONS", "HOW_TO_READ", "how_to_read", "note_para"]
