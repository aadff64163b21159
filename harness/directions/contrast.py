"""True-vs-false answer texts from TruthfulQA and the activations recorded on them.

Every fitted direction (ITI heads, residual mean differences, feature effect sizes) starts from
the same contrast set: "Q: <question>\\nA: <answer>" for each correct reference answer (label 1)
and each incorrect one (label 0). Each text remembers its question id, so folds split by
question and a direction never sees the answers of the questions it will be used on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from evals.io import progress as progress_bar
from evals.truthfulqa import Question
from harness.generation import plan_batches
from harness.kvcache import pad_left
from harness.steering import Intervention, hooks


@dataclass(frozen=True)
class ContrastSet:
    """Token ids of labelled answer texts. ``answer_starts[i]`` is the first answer token."""

    token_ids: tuple[tuple[int, ...], ...]
    labels: np.ndarray          # [n] 1 = correct answer, 0 = incorrect
    question_ids: np.ndarray    # [n]
    answer_starts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.token_ids)

    def subset(self, question_ids: Sequence[int]) -> np.ndarray:
        """Indices of the texts whose question is in ``question_ids``."""
        return np.flatnonzero(np.isin(self.question_ids, np.asarray(list(question_ids))))


def qa_pair_ids(question: str, answer: str, tokenizer) -> tuple[list[int], int]:
    """(token ids of "Q: question\\nA: answer", index of the first answer token).

    The question part and the answer are tokenized separately and joined, so the boundary is
    exact whatever the tokenizer does with the space before the answer.
    """
    head = tokenizer(f"Q: {question}\nA:", add_special_tokens=True)["input_ids"]
    tail = tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"]
    return list(head) + list(tail), len(head)


def contrast_set(questions: Sequence[Question], tokenizer) -> ContrastSet:
    """All correct (label 1) and incorrect (label 0) reference answers of ``questions``."""
    ids, labels, qids, starts = [], [], [], []
    for q in questions:
        for label, answers in ((1, q.correct_answers), (0, q.incorrect_answers)):
            for a in answers:
                toks, start = qa_pair_ids(q.question, a, tokenizer)
                ids.append(tuple(toks))
                labels.append(label)
                qids.append(q.id)
                starts.append(start)
    return ContrastSet(tuple(ids), np.asarray(labels, dtype=np.int64),
                       np.asarray(qids, dtype=np.int64), tuple(starts))


@torch.inference_mode()
def collect_last_token(model, token_ids: Sequence[Sequence[int]], hook_names: Sequence[str],
                       batch_size: int = 32, interventions: Sequence[Intervention] = (),
                       progress: bool = True) -> dict[str, torch.Tensor]:
    """Activations at the last token of each text, for every hook at once (one forward pass per
    batch): ``{hook: [n, d_model]}`` or ``[n, n_heads, d_head]`` for attn.hook_z, float32, CPU.

    ``interventions`` are active during the pass (tests use them to plant signals).
    """
    out = {h: [None] * len(token_ids) for h in hook_names}
    batches = plan_batches([len(t) for t in token_ids], batch_size)
    bar = progress_bar(total=len(token_ids), desc="recording activations", unit="text",
                       disable=not progress, leave=False)
    with hooks(model, interventions, record=list(hook_names)) as state:
        for batch in batches:
            ids, mask = pad_left([token_ids[i] for i in batch], model.tokenizer.pad_token_id,
                                 model.device)
            for h in hook_names:
                state.records[h].clear()
            state.reset()
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            model.hf_model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           use_cache=False, logits_to_keep=1)  # only activations are needed
            for h in hook_names:
                last = state.records[h][0][:, -1].float().cpu()  # left padding: last = -1
                for row, i in enumerate(batch):
                    out[h][i] = last[row]
            bar.update(len(batch))
    bar.close()
    return {h: torch.stack(v) for h, v in out.items()}


def head_hooks(n_layers: int) -> list[str]:
    return [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]


def stack_heads(acts: dict[str, torch.Tensor], n_layers: int) -> torch.Tensor:
    """[n, n_layers, n_heads, d_head] from per-layer attn.hook_z records."""
    return torch.stack([acts[h] for h in head_hooks(n_layers)], dim=1)
