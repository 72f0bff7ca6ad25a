"""Translating lists of sentences with a trained model: N lines in, N results out, in order."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from tqdm import tqdm

from nmt.config import SearchOptions
from nmt.data.dataset import pad_sources
from nmt.data.tokenizer import Tokenizer
from nmt.ensemble import Ensemble
from nmt.model.seq2seq import Seq2Seq
from nmt.precision import autocast
from nmt.search import Hypothesis, decode

log = logging.getLogger(__name__)


@dataclass
class Translation:
    text: str                       # detokenized best hypothesis ("" for an empty input line)
    nbest: list[tuple[str, float]]  # (text, score) best first
    src_pieces: list[str]           # incl. "</s>"; empty for an empty input line
    tgt_pieces: list[str]           # incl. "</s>" unless cut at the maximum length; empty likewise
    alignment: torch.Tensor | None  # [len(tgt_pieces), len(src_pieces)]
    heads: torch.Tensor | None = None  # [len(tgt_pieces), heads, len(src_pieces)]: multi-head

    @property
    def score(self) -> float:
        """The best hypothesis's score (log-probability / length penalty)."""
        return self.nbest[0][1]


def length_batches(lengths: list[int], batch_tokens: int) -> Iterator[list[int]]:
    """Indices sorted by length, cut into batches of about `batch_tokens` padded source tokens."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1) * (lengths[i] + 1) > batch_tokens:
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def translate(model: Seq2Seq | Ensemble, tok: Tokenizer, lines: list[str], opts: SearchOptions,
              device: torch.device, alignments: bool = False,
              progress: bool = False, first_line: int = 1, source: str = "",
              precision: str = "fp32") -> list[Translation]:
    """Translate every line; empty or whitespace-only lines give an empty translation. Sources
    longer than opts.max_src_len pieces (if set) are cut, with a warning naming the line
    (numbered from `first_line`) and the `source` file if given. `precision`: fp32 or bf16
    (nmt.precision)."""
    model.eval()
    ids = tok.encode([line.strip() for line in lines])
    if opts.max_src_len > 0:
        for i, s in enumerate(ids):
            if len(s) > opts.max_src_len:
                where = f"{source}:{first_line + i}" if source else f"line {first_line + i}"
                log.warning("%s: %d source pieces, cut to the first %d (search.max_src_len)",
                            where, len(s), opts.max_src_len)
                ids[i] = s[:opts.max_src_len]
    todo = [i for i, s in enumerate(ids) if s]
    results: list[Translation | None] = [None] * len(lines)
    for i in range(len(lines)):
        if not ids[i]:
            results[i] = Translation("", [("", 0.0)], [], [], None)
    bar = tqdm(total=len(todo), unit="sent", disable=not progress, leave=False)
    for batch in length_batches([len(ids[i]) for i in todo], opts.batch_tokens):
        rows = [todo[j] for j in batch]
        src, src_len = pad_sources([ids[i] for i in rows])
        with autocast(precision, device):
            hyps = decode(model, src.to(device), src_len, opts.beam_size, opts.alpha,
                          opts.nbest, opts.max_len_ratio, opts.max_len_offset, alignments,
                          opts.max_out_len)
        for i, h in zip(rows, hyps, strict=True):
            results[i] = _result(tok, ids[i], h)
        bar.update(len(rows))
    bar.close()
    return results  # type: ignore[return-value]


def _result(tok: Tokenizer, src_ids: list[int], hyps: list[Hypothesis]) -> Translation:
    best = hyps[0]
    return Translation(
        text=tok.decode(best.tokens),
        nbest=[(tok.decode(h.tokens), h.score) for h in hyps],
        src_pieces=tok.pieces(src_ids) + ["</s>"],
        tgt_pieces=tok.pieces(best.tokens) + (["</s>"] if best.ended else []),
        alignment=best.alignment,
        heads=best.heads,
    )
