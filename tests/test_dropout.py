"""Word dropout zeroes whole token embeddings in training only."""

import torch

from nmt.model.dropout import drop_words
from nmt.model.seq2seq import ModelSpec, Seq2Seq


def test_whole_words_are_dropped_at_the_rate_in_training_only():
    torch.manual_seed(0)
    emb = torch.randn(50, 40, 16) + 5.0          # no exact zeros of its own
    out = drop_words(emb, 0.25, training=True)
    dropped = (out == 0).all(-1)
    kept = (out == emb).all(-1)
    assert bool((dropped | kept).all()), "a word is dropped whole or kept whole"
    assert abs(dropped.float().mean().item() - 0.25) < 0.03
    assert torch.equal(drop_words(emb, 0.25, training=False), emb)
    assert torch.equal(drop_words(emb, 0.0, training=True), emb)


def test_model_uses_word_dropout_in_both_sides_when_training():
    torch.manual_seed(0)
    spec = ModelSpec(vocab_size=30, emb_size=8, hidden_size=8, dropout=0.0, word_dropout=0.5)
    model = Seq2Seq(spec, "bahdanau", decoder={"name": "bahdanau"})
    src = torch.randint(4, 30, (4, 6))
    tgt = torch.randint(4, 30, (4, 5))
    lengths = torch.full((4,), 6)
    model.eval()
    a, _ = model.loss(src, lengths, tgt, tgt)
    b, _ = model.loss(src, lengths, tgt, tgt)
    assert torch.equal(a, b), "no word dropout in evaluation"
    model.train()
    c, _ = model.loss(src, lengths, tgt, tgt)
    assert not torch.equal(a, c)
    assert model.encoder.word_dropout == model.decoder.word_dropout == 0.5
