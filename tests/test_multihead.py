"""Multi-head attention (spec part 2 section 14)."""

import pytest
import torch

from nmt.attention import AttentionConfigError, build_attention
from tests.test_attention import LENGTHS, D, assert_same_outputs, make_inputs, run_steps


def test_one_head_with_identity_projections_is_scaled_dot():
    mh = build_attention("multihead", D, D, heads=1)
    with torch.no_grad():
        for layer in (mh.query_layer, mh.key_layer, mh.value_layer, mh.output_layer):
            layer.weight.copy_(torch.eye(D))
    assert_same_outputs(mh, build_attention("scaled_dot", D, D))


def test_alignment_is_the_mean_of_the_heads_and_the_state_holds_them():
    torch.manual_seed(0)
    mh = build_attention("multihead", D, D, heads=4)
    memory, mask, queries = make_inputs(LENGTHS, seed=1, steps=1)
    mem = mh.prepare(memory, mask)
    _, alpha, heads = mh(queries[0], mem, mh.init_state(mem))
    assert heads.shape == (len(LENGTHS), 4, mask.shape[1])
    torch.testing.assert_close(heads.sum(-1), torch.ones(len(LENGTHS), 4))
    torch.testing.assert_close(alpha, heads.mean(1))
    assert not torch.allclose(heads[:, 0], heads[:, 1]), "heads should differ"


def test_context_is_the_concatenated_heads_through_w_o():
    torch.manual_seed(2)
    mh = build_attention("multihead", D, 2 * D, heads=2)
    memory, mask, queries = make_inputs(LENGTHS, seed=3, steps=1, d=2 * D)
    queries = queries[..., :D]
    ctxs, _ = run_steps(mh, queries, memory, mask)
    values = memory * mask.unsqueeze(-1)
    q = mh.query_layer(queries[0]).view(-1, 2, D // 2)
    k = mh.key_layer(values).view(len(LENGTHS), -1, 2, D // 2)
    v = mh.value_layer(values).view(len(LENGTHS), -1, 2, D)
    parts = []
    for h in range(2):
        e = torch.einsum("bd,bsd->bs", q[:, h], k[:, :, h]) / (D // 2) ** 0.5
        a = torch.softmax(e.masked_fill(~mask, float("-inf")), -1)
        parts.append(torch.einsum("bs,bsd->bd", a, v[:, :, h]))
    torch.testing.assert_close(ctxs[0], mh.output_layer(torch.cat(parts, -1)))


@pytest.mark.parametrize("q, m, which", [(6, 8, "decoder hidden size 6"),
                                         (8, 6, "encoder output size 6")])
def test_heads_must_divide_both_sizes(q, m, which):
    with pytest.raises(AttentionConfigError, match=which):
        build_attention("multihead", q, m, heads=4)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("beam", [1, 3])
def test_search_returns_each_heads_alignment(decoder, beam):
    from nmt.search import decode
    from tests.test_attention import tiny_model, tiny_sources
    model = tiny_model("multihead", decoder)
    src, src_len = tiny_sources()
    for (hyp,), n in zip(decode(model, src, src_len, beam_size=beam, alignments=True),
                         src_len.tolist(), strict=True):
        steps = len(hyp.tokens) + hyp.ended
        assert hyp.heads.shape == (steps, model.decoder.attention.heads, n)
        torch.testing.assert_close(hyp.heads.mean(1), hyp.alignment)


def test_other_mechanisms_have_no_heads():
    from nmt.search import decode
    from tests.test_attention import tiny_model, tiny_sources
    src, src_len = tiny_sources()
    (hyp,), *_ = decode(tiny_model("bahdanau"), src, src_len, beam_size=2, alignments=True)
    assert hyp.heads is None and hyp.alignment is not None


def test_head_grid_draws_one_panel_per_head(tmp_path):
    import matplotlib.image

    from nmt.plots import head_grid
    heads = torch.softmax(torch.randn(3, 4, 5), -1)
    head_grid(heads, list("abcde"), ["x", "y", "</s>"], tmp_path / "h.png", title="sentence 1")
    img = matplotlib.image.imread(tmp_path / "h.png")
    assert img.ndim == 3 and img.shape[1] > 2 * img.shape[0]   # four panels side by side
