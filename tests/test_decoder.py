"""The two decoders (spec part 2 section 12): Bahdanau's queries with the previous state, feeds the
context into the GRU and reads out through a maxout layer; Luong's is unchanged."""

import pytest
import torch
import torch.nn.functional as F

from nmt.model.seq2seq import ModelSpec, Seq2Seq, build_model

V = 30


def model(decoder: str, attention: str = "bahdanau", layers: int = 1, **spec) -> Seq2Seq:
    torch.manual_seed(0)
    spec = ModelSpec(vocab_size=V, emb_size=8, hidden_size=8, dropout=0.0, dec_layers=layers,
                     **spec)
    return Seq2Seq(spec, attention, decoder={"name": decoder}).eval()


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (3, 7), generator=g)
    src_len = torch.tensor([7, 4, 2])
    src[1, 4:] = 0
    src[2, 2:] = 0
    return src, src_len, torch.randint(4, V, (3, 6), generator=g)


def test_luong_decoder_gives_the_numbers_of_the_single_decoder_toolkit():
    """Losses of seeded models recorded before the decoder became a choice (commit 015ab5c)."""
    expected = {"bahdanau": 62.415474, "location": 62.081768, "monotonic_luong": 62.44038}
    for attention, value in expected.items():
        for decoder in (None, {"name": "luong"}):
            torch.manual_seed(0)
            spec = ModelSpec(vocab_size=V, emb_size=8, hidden_size=8, dropout=0.1, dec_layers=2)
            m = Seq2Seq(spec, attention, decoder=decoder)
            g = torch.Generator().manual_seed(1)
            src = torch.randint(4, V, (3, 7), generator=g)
            tgt = torch.randint(4, V, (3, 6), generator=g)
            torch.manual_seed(2)
            loss, _ = m.loss(src, torch.tensor([7, 7, 7]), tgt, tgt, 0.1)
            assert loss.item() == pytest.approx(value, rel=1e-6), attention


@pytest.mark.parametrize("attention", ["bahdanau", "location", "gmm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_bahdanau_decoder_attends_with_the_previous_state(attention, layers):
    """Changing how s_t is computed (the GRU weights) leaves alpha_t unchanged in the Bahdanau
    decoder, and changes it in the Luong decoder."""
    src, src_len, tgt = batch()
    for decoder, unchanged in (("bahdanau", True), ("luong", False)):
        m = model(decoder, attention, layers)
        mem, state = m.encode(src, src_len)
        x = m.decoder.embed_inputs(tgt[:, :1]).squeeze(1)
        _, alpha, after = m.decoder.step(x, state, mem)
        with torch.no_grad():
            m.decoder.w_hh.add_(torch.randn_like(m.decoder.w_hh))
            m.decoder.w_ih.add_(torch.randn_like(m.decoder.w_ih))
        _, alpha2, after2 = m.decoder.step(x, state, mem)
        assert not torch.allclose(after.hidden, after2.hidden)
        assert torch.equal(alpha, alpha2) == unchanged, decoder


def test_bahdanau_step_is_the_papers_formula():
    m = model("bahdanau", "luong_general")
    d = m.decoder
    src, src_len, tgt = batch()
    mem, state = m.encode(src, src_len)
    y = tgt[:, 0]
    logp, alpha, new = m.step_logprobs(y, state, mem)
    s_prev = state.hidden[0]
    e = torch.einsum("bd,bsd->bs", s_prev, d.attention.memory_layer(mem.values))
    a = torch.softmax(e.masked_fill(~mem.mask, float("-inf")), -1)
    c = torch.einsum("bs,bsd->bd", a, mem.values)
    cell = torch.nn.GRUCell(d.emb_size + 8, 8)
    with torch.no_grad():
        cell.weight_ih.copy_(d.w_ih)
        cell.weight_hh.copy_(d.w_hh)
        cell.bias_ih.copy_(d.b_ih)
        cell.bias_hh.copy_(d.b_hh)
    emb = d.embed(y)
    s = cell(torch.cat([emb, c], -1), s_prev)
    t_tilde = (d.readout_state.weight[:, :8] @ s.T).T + (d.readout_state.weight[:, 8:] @ c.T).T \
        + d.readout_emb(emb)
    t = torch.stack([torch.maximum(t_tilde[:, 2 * k], t_tilde[:, 2 * k + 1])
                     for k in range(d.out_size)], -1)
    torch.testing.assert_close(alpha, a)
    torch.testing.assert_close(new.hidden[0], s)
    torch.testing.assert_close(logp, F.log_softmax(m.output(t), -1))
    assert d.out_size == 4, "readout size l defaults to hidden_size / 2"


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("attention", ["bahdanau", "monotonic_bahdanau", "location", "local_m",
                                       "multihead", "gmm"])
def test_teacher_forcing_equals_stepping(decoder, attention):
    """The batched training path (readout after the loop) and the decoding step agree."""
    m = model(decoder, attention, layers=2)
    src, src_len, tgt = batch(3)
    with torch.no_grad():
        logits, alphas = m(src, src_len, tgt)
        mem, state = m.encode(src, src_len)
        for t in range(tgt.shape[1]):
            logp, alpha, state = m.step_logprobs(tgt[:, t], state, mem, hard=False)
            torch.testing.assert_close(logp, F.log_softmax(logits[:, t], -1))
            torch.testing.assert_close(alpha, alphas[:, t])


def test_readout_size_and_tied_output_embedding():
    m = model("bahdanau", tie_embeddings=True)
    assert m.output.weight.shape == (V, 4)
    torch.manual_seed(0)
    spec = ModelSpec(vocab_size=V, emb_size=4, hidden_size=8, tie_embeddings=True)
    tied = Seq2Seq(spec, "bahdanau", decoder={"name": "bahdanau"})
    assert tied.output.weight is tied.decoder.embed.weight
    wide = build_model({"emb_size": 8, "hidden_size": 8}, {"name": "bahdanau"}, V,
                       {"name": "bahdanau", "readout_size": 6})
    assert wide.decoder.out_size == 6 and wide.output.in_features == 6


def test_unknown_decoder_is_named():
    with pytest.raises(ValueError, match="decoder.name='bahdanou'.*luong, bahdanau"):
        model("bahdanou")
