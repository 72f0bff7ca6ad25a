"""Encoded parallel data (flat id arrays + offsets, cached on disk) and token-budget batches."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from nmt.data.tokenizer import BOS, EOS, PAD, Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Sentences as one flat int32 array per side plus offsets; line numbers kept for reporting."""

    src_ids: np.ndarray
    src_off: np.ndarray  # [N+1]
    tgt_ids: np.ndarray
    tgt_off: np.ndarray  # [N+1]

    def __len__(self) -> int:
        return len(self.src_off) - 1

    @property
    def src_lens(self) -> np.ndarray:
        return np.diff(self.src_off)

    @property
    def tgt_lens(self) -> np.ndarray:
        return np.diff(self.tgt_off)

    def src(self, i: int) -> np.ndarray:
        return self.src_ids[self.src_off[i]:self.src_off[i + 1]]

    def tgt(self, i: int) -> np.ndarray:
        return self.tgt_ids[self.tgt_off[i]:self.tgt_off[i + 1]]


def _flatten(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    off = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum(lens, out=off[1:])
    flat = np.fromiter((t for s in seqs for t in s), dtype=np.int32, count=int(off[-1]))
    return flat, off


def encode_pairs(tok: Tokenizer, src: list[str], tgt: list[str], max_len: int | None = None
                 ) -> tuple[Encoded, dict[str, int]]:
    """Encode pairs; drop empty pairs and, if `max_len` is set, pairs longer than it."""
    src_ids, tgt_ids = tok.encode(src), tok.encode(tgt)
    keep, skipped = [], {"empty": 0, "too_long": 0}
    for i, (s, t) in enumerate(zip(src_ids, tgt_ids, strict=True)):
        if not s or not t:
            skipped["empty"] += 1
        elif max_len is not None and (len(s) > max_len or len(t) > max_len):
            skipped["too_long"] += 1
        else:
            keep.append(i)
    s_flat, s_off = _flatten([src_ids[i] for i in keep])
    t_flat, t_off = _flatten([tgt_ids[i] for i in keep])
    return Encoded(s_flat, s_off, t_flat, t_off), skipped


def token_batches(data: Encoded, batch_tokens: int, seed: int, epoch: int,
                  shuffle: bool = True, pool: int = 100) -> list[np.ndarray]:
    """Group sentences of similar length into batches of about `batch_tokens` target tokens.

    The padded size (sentences x longest target, and the same for sources) stays within the
    budget; a single sentence longer than the budget gets a batch of its own. With `shuffle`,
    the order is drawn from (seed, epoch) alone, so a resumed run rebuilds the same batches.
    """
    n = len(data)
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=gen).numpy() if shuffle else np.arange(n)
    src_lens, tgt_lens = data.src_lens + 1, data.tgt_lens + 1  # + EOS
    longest = np.maximum(src_lens, tgt_lens)
    mean = max(1, int(tgt_lens.mean()))
    chunk = max(1, pool * batch_tokens // mean)
    batches: list[np.ndarray] = []
    for start in range(0, n, chunk):
        idx = order[start:start + chunk]
        idx = idx[np.lexsort((src_lens[idx], tgt_lens[idx]))]
        batches.extend(np.split(idx, batch_starts(longest[idx], batch_tokens)))
    if shuffle:
        perm = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[i] for i in perm]
    return batches


def batch_starts(longest: np.ndarray, batch_tokens: int) -> list[int]:
    """Where greedy packing of sentences (in this order) starts each batch after the first.

    A batch takes the next sentence while (its sentences + 1) x (longest of them) stays within
    `batch_tokens`; its first sentence is always taken. One numpy pass per batch instead of a
    Python step per sentence: a batch starting at s holds at most batch_tokens // longest[s]
    sentences, so looking that far (+1) ahead always finds its end.
    """
    starts, s, n = [], 0, len(longest)
    while True:
        window = longest[s:s + batch_tokens // int(longest[s]) + 1]
        sizes = np.maximum.accumulate(window) * np.arange(1, len(window) + 1)
        over = np.flatnonzero(sizes[1:] > batch_tokens)
        s += int(over[0]) + 1 if len(over) else len(window)
        if s >= n:
            return starts
        starts.append(s)


@dataclass
class Batch:
    src: torch.Tensor      # [B, S] ids, EOS-terminated, right-padded
    src_len: torch.Tensor  # [B] int64 (on CPU, for packing)
    tgt_in: torch.Tensor   # [B, T] BOS y_1 .. y_n
    tgt_out: torch.Tensor  # [B, T] y_1 .. y_n EOS
    n_tokens: int          # real target tokens (incl. EOS)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.src.to(device), self.src_len, self.tgt_in.to(device),
                     self.tgt_out.to(device), self.n_tokens)


def pad_sources(seqs: list[np.ndarray | list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, S] EOS-terminated, PAD-padded ids and their lengths."""
    lens = torch.tensor([len(s) + 1 for s in seqs], dtype=torch.int64)
    out = torch.full((len(seqs), int(lens.max())), PAD, dtype=torch.int64)
    for b, s in enumerate(seqs):
        out[b, :len(s)] = torch.as_tensor(np.asarray(s, dtype=np.int64))
        out[b, len(s)] = EOS
    return out, lens


def make_batch(data: Encoded, idx: np.ndarray) -> Batch:
    src, src_len = pad_sources([data.src(i) for i in idx])
    tgts = [data.tgt(i) for i in idx]
    t_max = max(len(t) for t in tgts) + 1
    tgt_in = torch.full((len(idx), t_max), PAD, dtype=torch.int64)
    tgt_out = torch.full((len(idx), t_max), PAD, dtype=torch.int64)
    for b, t in enumerate(tgts):
        t = torch.as_tensor(t.astype(np.int64))
        tgt_in[b, 0] = BOS
        tgt_in[b, 1:len(t) + 1] = t
        tgt_out[b, :len(t)] = t
        tgt_out[b, len(t)] = EOS
    return Batch(src, src_len, tgt_in, tgt_out, int(sum(len(t) + 1 for t in tgts)))
