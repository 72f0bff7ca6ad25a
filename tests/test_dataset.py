"""Tokenizer cache, encoded cache, and token-budget batching."""

import numpy as np
import pytest
import torch

from nmt.data.dataset import cached_encode, encode_pairs, make_batch, token_batches
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


def test_encoded_cache_round_trip(tmp_path, tok):
    enc = cached_encode(tok, SRC, TGT, "x", tmp_path)
    again = cached_encode(tok, SRC, TGT, "x", tmp_path)
    assert list(tmp_path.glob("enc-*.npz"))
    assert np.array_equal(enc.src_ids, again.src_ids) and np.array_equal(enc.tgt_off,
                                                                          again.tgt_off)
    assert list(enc.src(5)) == tok.encode([SRC[5]])[0]


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
