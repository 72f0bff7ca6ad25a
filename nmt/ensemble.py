"""Ensembles: several models decode as one, each step's log-probabilities averaged.

`Ensemble` offers what the search uses of a model (encode, step_logprobs, head_alignments), with
the models' memories and states side by side in an `EnsembleState`, so greedy and beam search
run unchanged: beam search reorders every model's state with the same back-pointers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from nmt.model.seq2seq import Seq2Seq


class EnsembleState(NamedTuple):
    """One memory or decoder state per model; reordered together."""

    parts: tuple[Any, ...]

    def index_select(self, index: Tensor) -> EnsembleState:
        return EnsembleState(tuple(p.index_select(index) for p in self.parts))


class Ensemble(nn.Module):
    def __init__(self, models: Sequence[Seq2Seq]):
        super().__init__()
        if not models:
            raise ValueError("an ensemble needs at least one model")
        sizes = {m.spec.vocab_size for m in models}
        if len(sizes) > 1:
            raise ValueError(f"ensemble models have different vocabulary sizes: {sorted(sizes)}")
        self.models = nn.ModuleList(models)
        self.spec = models[0].spec
        self.pad_id = models[0].pad_id

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[EnsembleState, EnsembleState]:
        pairs = [m.encode(src, src_len) for m in self.models]
        return (EnsembleState(tuple(mem for mem, _ in pairs)),
                EnsembleState(tuple(state for _, state in pairs)))

    def step_logprobs(self, tokens: Tensor, state: EnsembleState, mem: EnsembleState,
                      hard: bool = True) -> tuple[Tensor, Tensor, EnsembleState]:
        """The mean of the models' log-probabilities [B, V] and alignments [B, S]."""
        logp = alpha = None
        states = []
        for m, s, me in zip(self.models, state.parts, mem.parts, strict=True):
            logits, norm, a, new = m.step_logits(tokens, s, me, hard)
            lp = logits - norm.unsqueeze(1)
            # Summed in place into the first model's log-probs: no [N, B, V] stack.
            logp = lp if logp is None else logp.add_(lp)
            alpha = a.float() if alpha is None else alpha + a.float()
            states.append(new)
        n = len(self.models)
        if n > 1:
            logp, alpha = logp.div_(n), alpha / n
        return logp, alpha, EnsembleState(tuple(states))

    def step_logits(self, tokens: Tensor, state: EnsembleState, mem: EnsembleState,
                    hard: bool = True) -> tuple[Tensor, Tensor, Tensor, EnsembleState]:
        """As Seq2Seq.step_logits: the mean log-probabilities, with a zero normaliser."""
        logp, alpha, state = self.step_logprobs(tokens, state, mem, hard)
        return logp, logp.new_zeros(logp.shape[0]), alpha, state

    def head_alignments(self, state: EnsembleState) -> Tensor | None:
        """The models' per-head alignments side by side [B, sum of H, S], where all have heads."""
        heads = [m.head_alignments(s) for m, s in zip(self.models, state.parts, strict=True)]
        if any(h is None for h in heads):
            return None
        return torch.cat([h.float() for h in heads], dim=1)
