"""Batched greedy and beam search. Finished sentences leave the batch, so one sentence's result
does not depend on which others share its batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import Tensor

from nmt.data.tokenizer import BOS, EOS
from nmt.model.seq2seq import Seq2Seq

if TYPE_CHECKING:
    from nmt.ensemble import Ensemble

Decodable = Union[Seq2Seq, "Ensemble"]   # what the search decodes with


@dataclass
class Hypothesis:
    tokens: list[int]        # without BOS/EOS
    score: float             # log-probability divided by the length penalty
    alignment: Tensor | None  # [output steps, source length incl. EOS]; last row is EOS if ended
    ended: bool = True       # False when cut at the maximum length (no EOS produced)
    heads: Tensor | None = None  # [output steps, heads, source length]: multi-head mechanisms


def alignment_record(model: Decodable, alpha: Tensor, state: Any) -> Tensor:
    """What a step contributes to a hypothesis's alignments: alpha [B, S], or [B, 1 + H, S]
    with the heads' own alignments after it when the mechanism has heads."""
    heads = model.head_alignments(state)
    alpha = alpha.float()
    return alpha if heads is None else torch.cat([alpha.unsqueeze(1), heads.float()], dim=1)


def hypothesis(tokens: list[int], score: float, record: Tensor | None, length: int,
               ended: bool = True) -> Hypothesis:
    """record: the steps' alignment records [T, S] or [T, 1 + H, S], cut to the source length."""
    if record is None:
        return Hypothesis(tokens, score, None, ended)
    record = record[..., :length].cpu()
    if record.dim() == 2:
        return Hypothesis(tokens, score, record, ended)
    return Hypothesis(tokens, score, record[:, 0], ended, record[:, 1:])


def max_lengths(src_len: Tensor, ratio: float, offset: int, cap: int = 0) -> Tensor:
    """Output length limits: ratio * source length + offset, at most `cap` (0: no cap)."""
    limit = (src_len.float() * ratio + offset).long().clamp(min=1)
    return limit.clamp(max=cap) if cap > 0 else limit


def length_penalty(length: int, alpha: float) -> float:
    """GNMT: ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.inference_mode()
def greedy(model: Decodable, src: Tensor, src_len: Tensor, max_len_ratio: float = 1.5,
           max_len_offset: int = 10, alignments: bool = False, max_out_len: int = 0,
           alpha: float = 0.0) -> list[list[Hypothesis]]:
    """Argmax decoding of a batch. Returns one hypothesis per sentence, its score divided by
    the length penalty of `alpha` as beam search's are (0: the plain log-probability)."""
    model.eval()
    mem, state = model.encode(src, src_len)
    B = src.shape[0]
    limit = max_lengths(src_len, max_len_ratio, max_len_offset, max_out_len).tolist()
    rows = torch.arange(B, device=src.device)           # original index of each live row
    tokens = torch.full((B,), BOS, dtype=torch.long, device=src.device)
    out_tokens: list[list[int]] = [[] for _ in range(B)]
    out_align: list[list[Tensor]] = [[] for _ in range(B)]
    scores = [0.0] * B
    ended = [False] * B
    t = 0
    while rows.numel():
        t += 1
        logits, norm, attn, state = model.step_logits(tokens, state, mem)
        best, tokens = logits.max(dim=-1)
        best = best - norm
        if alignments:
            record = alignment_record(model, attn, state)
        finished = []
        for r, (b, tok, s) in enumerate(zip(rows.tolist(), tokens.tolist(), best.tolist(),
                                            strict=True)):
            scores[b] += s
            if alignments:
                out_align[b].append(record[r])
            if tok == EOS or t >= limit[b]:
                finished.append(r)
                ended[b] = tok == EOS
            if tok != EOS:
                out_tokens[b].append(tok)
        if finished:
            keep = torch.ones(rows.numel(), dtype=torch.bool)
            keep[finished] = False
            idx = keep.nonzero().squeeze(1).to(src.device)
            rows, tokens = rows[idx], tokens[idx]
            state, mem = state.index_select(idx), mem.index_select(idx)
    lengths = src_len.tolist()
    steps = [len(out_tokens[b]) + ended[b] for b in range(B)]   # EOS counts, as in beam search
    return [[hypothesis(out_tokens[b], scores[b] / length_penalty(steps[b], alpha),
                        torch.stack(out_align[b]) if alignments else None, lengths[b], ended[b])]
            for b in range(B)]


@torch.inference_mode()
def beam_search(model: Decodable, src: Tensor, src_len: Tensor, beam_size: int = 5,
                alpha: float = 0.6, nbest: int = 1, max_len_ratio: float = 1.5,
                max_len_offset: int = 10, alignments: bool = False, max_out_len: int = 0
                ) -> list[list[Hypothesis]]:
    """Beam search over a batch (beams flattened into the batch axis).

    Each step keeps the `beam_size` best unfinished extensions of every sentence among its
    2 * beam_size best candidates; end-of-sentence candidates ranked within the first
    `beam_size` are finished. A sentence is done when it has `beam_size` finished hypotheses
    or reaches its maximum length (then its open beams are finished as they are).
    """
    if nbest > beam_size:
        raise ValueError(f"nbest={nbest} cannot exceed beam_size={beam_size}")
    model.eval()
    k, dev = beam_size, src.device
    B = src.shape[0]
    mem, state = model.encode(src, src_len)
    # Step 1 extends <s> alone, the same for every beam of a sentence: take it once per
    # sentence, then give each sentence its k beams (all but the first start at -inf).
    first = model.step_logits(torch.full((B,), BOS, dtype=torch.long, device=dev), state, mem)
    tile = torch.arange(B, device=dev).repeat_interleave(k)
    mem = mem.index_select(tile)
    limit = max_lengths(src_len, max_len_ratio, max_len_offset, max_out_len).tolist()
    lengths = src_len.tolist()
    sents = list(range(B))                                 # original index of each live sentence
    scores = torch.full((B, k), float("-inf"), device=dev)
    scores[:, 0] = 0.0
    tokens = torch.full((B * k,), BOS, dtype=torch.long, device=dev)   # <s>: step 1 is `first`
    hist = torch.empty((B * k, 0), dtype=torch.long, device=dev)
    hist_align = None
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    t = 0
    while sents:
        t += 1
        n = len(sents)
        logits, norm, attn, state = first if t == 1 else model.step_logits(tokens, state, mem)
        # The 2k best extensions of a sentence are among the 2k best of each of its beams:
        # rank each beam's raw logits, then normalise and add the beam's score to those only.
        w = min(2 * k, logits.shape[-1])
        row_s, row_tok = logits.topk(w, dim=1)                               # [n * k, w]
        row_s = row_s - norm.unsqueeze(1)
        if t == 1:
            row_s, row_tok, attn = row_s[tile], row_tok[tile], attn[tile]
            state = state.index_select(tile)
        cand = (row_s + scores.view(-1, 1)).view(n, k * w)
        top_s, top_i = cand.topk(min(2 * k, k * w), dim=1)                  # [n, 2k]
        beam, tok = top_i // w, row_tok.view(n, k * w).gather(1, top_i)
        src_row = (torch.arange(n, device=dev).unsqueeze(1) * k + beam)  # [n, 2k] flat rows
        is_eos = tok == EOS
        if alignments:
            step_align = alignment_record(model, attn, state)
        # Finish EOS candidates ranked within the first k: their sentence, row, history and
        # score reach the host in two transfers per step (not a few per hypothesis).
        pos = (is_eos[:, :k] & torch.isfinite(top_s[:, :k])).nonzero()   # [F, 2]: i, j
        fin_rows = src_row[pos[:, 0], pos[:, 1]]
        fin = torch.cat([pos[:, :1], fin_rows.unsqueeze(1), hist.index_select(0, fin_rows)],
                        dim=1).tolist()
        fin_scores = top_s[pos[:, 0], pos[:, 1]].tolist()
        for (i, row, *ys), score in zip(fin, fin_scores, strict=True):
            b = sents[i]
            align = None
            if alignments:  # EOS can come first, before any history
                align = step_align[row:row + 1] if hist_align is None else torch.cat(
                    [hist_align[row], step_align[row:row + 1]])
            if len(finished[b]) < k:
                finished[b].append(hypothesis(ys, score / length_penalty(t, alpha), align,
                                              lengths[b]))
        # Keep the k best non-EOS candidates of each sentence (there are always at least k).
        rank = torch.arange(top_s.shape[1], device=dev).expand_as(top_s)
        order = (rank + is_eos.long() * top_s.shape[1]).argsort(dim=1)[:, :k]
        scores = top_s.gather(1, order)
        tokens = tok.gather(1, order).view(-1)
        rows = src_row.gather(1, order).view(-1)
        hist = torch.cat([hist.index_select(0, rows), tokens.unsqueeze(1)], dim=1)
        if alignments:
            prev = step_align.index_select(0, rows).unsqueeze(1)
            hist_align = prev if hist_align is None else torch.cat(
                [hist_align.index_select(0, rows), prev], dim=1)
        state = state.index_select(rows)
        # Sentences that are done leave the batch.
        keep = []
        for i, b in enumerate(sents):
            if len(finished[b]) >= k:
                continue
            if t >= limit[b]:
                beams = scores[i].tolist()
                ys_all = hist[i * k:(i + 1) * k].tolist()
                for j in range(k):
                    if not math.isfinite(beams[j]):   # a beam never filled
                        continue
                    finished[b].append(hypothesis(
                        ys_all[j], beams[j] / length_penalty(t, alpha),
                        hist_align[i * k + j] if alignments else None, lengths[b], ended=False))
                continue
            keep.append(i)
        if len(keep) < n:
            idx = torch.tensor(keep, dtype=torch.long, device=dev)
            flat = (idx.unsqueeze(1) * k + torch.arange(k, device=dev)).view(-1)
            sents = [sents[i] for i in keep]
            scores, tokens, hist = scores[idx], tokens[flat], hist[flat]
            if alignments:
                hist_align = hist_align[flat]
            state, mem = state.index_select(flat), mem.index_select(flat)
    return [sorted(f, key=lambda h: -h.score)[:nbest] for f in finished]


def decode(model: Decodable, src: Tensor, src_len: Tensor, beam_size: int = 1, alpha: float = 0.6,
           nbest: int = 1, max_len_ratio: float = 1.5, max_len_offset: int = 10,
           alignments: bool = False, max_out_len: int = 0) -> list[list[Hypothesis]]:
    """Greedy when beam_size == 1 (and nbest == 1), beam search otherwise."""
    if beam_size == 1 and nbest == 1:
        return greedy(model, src, src_len, max_len_ratio, max_len_offset, alignments,
                      max_out_len, alpha)
    return beam_search(model, src, src_len, beam_size, alpha, nbest, max_len_ratio,
                       max_len_offset, alignments, max_out_len)
