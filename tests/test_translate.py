"""Translation of lists of lines: N in, N out, in order, independent of the decoding batch."""

import pytest
import torch

from nmt.data.tokenizer import train_or_load
from nmt.model.seq2seq import ModelSpec, Seq2Seq
from nmt.translate import SearchOptions, translate
from tests.test_dataset import SRC, TGT


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = train_or_load(SRC + TGT, "t", tmp_path_factory.mktemp("spm"), vocab_size=120)
    torch.manual_seed(0)
    model = Seq2Seq(ModelSpec(vocab_size=len(tok), emb_size=16, hidden_size=16, dropout=0.0),
                    "bahdanau")
    return model.eval(), tok


LINES = ["the red dog", "", "   ", "the big dog number 7 runs to the big house",
         "a", "house house house", "ünséén çhäracters ☃ 漢字", "the red dog"]


@pytest.mark.parametrize("beam", [1, 3])
def test_n_lines_in_n_lines_out(setup, beam):
    model, tok = setup
    out = translate(model, tok, LINES, SearchOptions(beam_size=beam, max_len_offset=5),
                    torch.device("cpu"))
    assert len(out) == len(LINES)
    assert out[1].text == "" and out[2].text == ""
    assert out[0].text == out[-1].text  # same input, same output, wherever it sits


@pytest.mark.parametrize("beam", [1, 4])
def test_result_does_not_depend_on_batch_size(setup, beam):
    model, tok = setup
    lines = [s for s in SRC[:40:3]] + LINES
    one = translate(model, tok, lines, SearchOptions(beam_size=beam, batch_tokens=1),
                    torch.device("cpu"))
    many = translate(model, tok, lines, SearchOptions(beam_size=beam, batch_tokens=100_000),
                     torch.device("cpu"))
    assert [r.text for r in one] == [r.text for r in many]


def test_nbest_and_alignments(setup):
    model, tok = setup
    out = translate(model, tok, ["the red dog runs"], SearchOptions(beam_size=4, nbest=3),
                    torch.device("cpu"), alignments=True)[0]
    assert len(out.nbest) == 3
    scores = [s for _, s in out.nbest]
    assert scores == sorted(scores, reverse=True)
    assert out.alignment.shape == (len(out.tgt_pieces), len(out.src_pieces))
    assert torch.allclose(out.alignment.sum(1), torch.ones(len(out.tgt_pieces)), atol=1e-5)


def test_very_long_line_is_translated(setup):
    model, tok = setup
    line = " ".join(["dog"] * 5000)
    out = translate(model, tok, [line, "the dog"], SearchOptions(beam_size=2, max_len_ratio=0.01,
                                                                 max_len_offset=3),
                    torch.device("cpu"))
    assert len(out) == 2
