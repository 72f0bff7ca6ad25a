"""Ensembles decode with the mean of the models' log-probabilities, in greedy and beam search,
for any mix of mechanisms and decoders."""

import pytest
import torch

from nmt.ensemble import Ensemble
from nmt.search import beam_search, decode, greedy
from tests.test_attention import rescore, tiny_model, tiny_sources


def same(a, b):
    for (x,), (y,) in zip(a, b, strict=True):
        assert x.tokens == y.tokens and x.ended == y.ended
        assert x.score == pytest.approx(y.score, abs=1e-5)
        torch.testing.assert_close(x.alignment, y.alignment)


@pytest.mark.parametrize("name, decoder", [("bahdanau", "luong"), ("location", "bahdanau"),
                                           ("multihead", "luong"), ("monotonic_luong", "luong")])
@pytest.mark.parametrize("beam", [1, 4])
def test_an_ensemble_of_one_model_is_that_model(name, decoder, beam):
    model = tiny_model(name, decoder)
    src, src_len = tiny_sources()
    same(decode(Ensemble([model]), src, src_len, beam_size=beam, alignments=True),
         decode(model, src, src_len, beam_size=beam, alignments=True))


def test_an_ensemble_of_copies_is_the_model():
    model = tiny_model("gmm", "bahdanau")
    src, src_len = tiny_sources()
    same(decode(Ensemble([model, model, model]), src, src_len, beam_size=3, alignments=True),
         decode(model, src, src_len, beam_size=3, alignments=True))


def test_step_is_the_mean_of_the_models_log_probabilities_and_alignments():
    models = [tiny_model("bahdanau", "luong"), tiny_model("local_p", "bahdanau")]
    with torch.no_grad():
        for p in models[1].parameters():
            p.add_(0.3 * torch.randn_like(p))
    ens = Ensemble(models)
    src, src_len = tiny_sources()
    mem, state = ens.encode(src, src_len)
    tokens = torch.full((src.shape[0],), 1)
    with torch.no_grad():
        logp, alpha, _ = ens.step_logprobs(tokens, state, mem)
        outs = [m.step_logprobs(tokens, *m.encode(src, src_len)[::-1]) for m in models]
    torch.testing.assert_close(logp, (outs[0][0] + outs[1][0]) / 2)
    torch.testing.assert_close(alpha, (outs[0][1] + outs[1][1]) / 2)


def test_beam_reorders_every_models_state():
    """Each hypothesis's score is the mean of the models' log-probabilities of its tokens."""
    models = [tiny_model("location", "luong"), tiny_model("monotonic_bahdanau", "bahdanau"),
              tiny_model("multihead", "luong")]
    ens = Ensemble(models)
    src, src_len = tiny_sources()
    nbest = beam_search(ens, src, src_len, beam_size=3, nbest=3, alpha=0.0)
    for b, n in enumerate(src_len.tolist()):
        for hyp in nbest[b]:
            one = (src[b:b + 1, :n], src_len[b:b + 1])
            expected = sum(rescore(m, *one, hyp.tokens, hyp.ended) for m in models) / 3
            assert hyp.score == pytest.approx(expected, abs=1e-4)
    assert [h[0].tokens for h in greedy(ens, src, src_len)] == \
        [h[0].tokens for h in beam_search(ens, src, src_len, beam_size=1, alpha=0.0)]


def test_models_of_different_vocabularies_are_refused():
    from nmt.model.seq2seq import ModelSpec, Seq2Seq
    other = Seq2Seq(ModelSpec(vocab_size=21, emb_size=8, hidden_size=8), "bahdanau")
    with pytest.raises(ValueError, match="vocabulary"):
        Ensemble([tiny_model("bahdanau"), other])


def test_three_models_while_decoding_give_the_mean_and_leave_each_model_alone():
    """While decoding, the log-probabilities are summed in place into the first model's; the
    result is still the mean of three different models, and each one's state is its own."""
    models = [tiny_model("bahdanau", "luong"), tiny_model("location", "bahdanau"),
              tiny_model("scaled_dot", "luong")]
    with torch.no_grad():
        for m in models[1:]:
            for p in m.parameters():
                p.add_(0.3 * torch.randn_like(p))
    ens = Ensemble(models)
    src, src_len = tiny_sources()
    tokens = torch.full((src.shape[0],), 1)
    with torch.inference_mode():
        mem, state = ens.encode(src, src_len)
        logp, alpha, new = ens.step_logprobs(tokens, state, mem)
        outs = [m.step_logprobs(tokens, *m.encode(src, src_len)[::-1]) for m in models]
    torch.testing.assert_close(logp, sum(o[0] for o in outs) / 3)
    torch.testing.assert_close(alpha, sum(o[1] for o in outs) / 3)
    for part, out in zip(new.parts, outs, strict=True):
        torch.testing.assert_close(part.hidden, out[2].hidden)
