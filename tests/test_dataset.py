"""Tokenizer cache and token-budget batching."""

import numpy as np
import pytest
import torch

from nmt.data.dataset import Encoded, encode_pairs, make_batch, token_batches
from nmt.data.tokenizer import BOS, EOS, PAD, train_or_load

SRC = [f"the {c} dog number {i} runs to the {c} house" for i in range(300)
       for c in ("red", "big")]
TGT = [f"der {c} hund nummer {i} läuft zum {c} haus" for i in range(300)
       for c in ("rote", "große")]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_or_load(SRC + TGT, "k1", tmp_path_factory.mktemp("spm"), vocab_size=120)


def test_tokenizer_is_cached_by_key(tmp_path, tok):
    first = train_or_load(SRC + TGT, "key", tmp_path, vocab_size=120)
    assert (tmp_path / "spm-key.model").is_file()
    again = train_or_load(["completely different text"], "key", tmp_path, vocab_size=120)
    assert again.proto == first.proto
    assert tok.decode(tok.encode(["the red dog"])[0]) == "the red dog"


def test_empty_and_overlong_pairs_are_skipped_and_counted(tok):
    src = ["a dog", "", "a cat", "the red dog " * 40]
    tgt = ["ein hund", "etwas", "", "der rote hund " * 40]
    enc, skipped = encode_pairs(tok, src, tgt, max_len=30)
    assert len(enc) == 1 and skipped == {"empty": 2, "too_long": 1}


def test_batches_cover_every_pair_once_within_budget(tok):
    enc, _ = encode_pairs(tok, SRC, TGT)
    budget = 300
    batches = token_batches(enc, budget, seed=3, epoch=0)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(enc)))
    for idx in batches:
        b = make_batch(enc, idx)
        if len(idx) > 1:
            assert b.tgt_out.numel() <= budget and b.src.numel() <= budget


def test_batches_reshuffle_per_epoch_deterministically(tok):
    enc, _ = encode_pairs(tok, SRC, TGT)
    a0 = token_batches(enc, 300, seed=3, epoch=0)
    assert [x.tolist() for x in a0] == [x.tolist() for x in token_batches(enc, 300, 3, 0)]
    a1 = token_batches(enc, 300, seed=3, epoch=1)
    assert [x.tolist() for x in a0] != [x.tolist() for x in a1]


def test_batch_layout(tok):
    enc, _ = encode_pairs(tok, SRC[:3], TGT[:3])
    b = make_batch(enc, np.array([0, 1, 2]))
    for row in range(3):
        n = len(enc.tgt(row))
        assert b.tgt_in[row, 0] == BOS
        assert torch.equal(b.tgt_in[row, 1:n + 1], b.tgt_out[row, :n])
        assert b.tgt_out[row, n] == EOS
        assert b.src[row, b.src_len[row] - 1] == EOS
        assert (b.src[row, b.src_len[row]:] == PAD).all()
    assert b.n_tokens == sum(len(enc.tgt(r)) + 1 for r in range(3))


def loop_token_batches(data, batch_tokens, seed, epoch, shuffle=True, pool=100):
    """token_batches as first written, one Python step per sentence: the reference that the
    vectorised version must reproduce exactly (existing runs keep their batches)."""
    n = len(data)
    gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=gen).numpy() if shuffle else np.arange(n)
    src_lens, tgt_lens = data.src_lens + 1, data.tgt_lens + 1
    mean = max(1, int(tgt_lens.mean()))
    chunk = max(1, pool * batch_tokens // mean)
    batches = []
    for start in range(0, n, chunk):
        idx = order[start:start + chunk]
        idx = idx[np.lexsort((src_lens[idx], tgt_lens[idx]))]
        cur, longest = [], 0
        for i in idx:
            longest_new = max(longest, tgt_lens[i], src_lens[i])
            if cur and longest_new * (len(cur) + 1) > batch_tokens:
                batches.append(np.array(cur))
                cur, longest_new = [], max(tgt_lens[i], src_lens[i])
            cur.append(int(i))
            longest = longest_new
        if cur:
            batches.append(np.array(cur))
    if shuffle:
        perm = torch.randperm(len(batches), generator=gen).tolist()
        batches = [batches[i] for i in perm]
    return batches


def lengths_only(src_lens, tgt_lens) -> Encoded:
    off = [np.concatenate([[0], np.cumsum(x)]).astype(np.int64) for x in (src_lens, tgt_lens)]
    return Encoded(np.zeros(0, np.int32), off[0], np.zeros(0, np.int32), off[1])


@pytest.mark.parametrize("case", range(60))
def test_batches_equal_the_sentence_by_sentence_packing(case):
    rng = np.random.default_rng(case)
    n, hi = int(rng.integers(1, 500)), int(rng.integers(2, 90))
    data = lengths_only(rng.integers(0, hi, n), rng.integers(0, hi, n))
    budget, pool = int(rng.integers(1, 400)), int(rng.integers(1, 6))
    shuffle = case % 4 != 0
    new = token_batches(data, budget, case, 2, shuffle, pool)
    old = loop_token_batches(data, budget, case, 2, shuffle, pool)
    assert [b.tolist() for b in new] == [b.tolist() for b in old]
    assert all(b.dtype == np.int64 for b in new)


def test_batches_equal_the_sentence_by_sentence_packing_on_real_pieces(tok):
    enc, _ = encode_pairs(tok, SRC, TGT)
    for budget in (50, 300, 2000):
        assert [b.tolist() for b in token_batches(enc, budget, 1, 0)] == \
            [b.tolist() for b in loop_token_batches(enc, budget, 1, 0)]
