"""Judges of truthfulness and informativeness: ``openai:MODEL``, ``hf:MODEL``, ``learned:PATH``."""

from evals.judges.base import Judge, JudgeItem, JudgeResult, Verdict

__all__ = ["Judge", "JudgeItem", "JudgeResult", "Verdict"]
