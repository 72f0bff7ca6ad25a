"""Luong local attention (spec part 2 section 13): the window, the identity with global attention,
the predictive position's gradient and the Gaussian factor."""

import pytest
import torch

from nmt.attention import build_attention
from nmt.attention.local import LocalP
from tests.test_attention import LENGTHS, D, S, assert_same_outputs, make_inputs, run_steps

GLOBAL = {"general": "luong_general", "dot": "luong_dot", "concat": "bahdanau"}


def score_state(dst, src):
    """Copy the global mechanism's score weights into a local mechanism's content score."""
    with torch.no_grad():
        if dst.score.kind == "general":
            dst.score.memory_layer.weight.copy_(src.memory_layer.weight)
        elif dst.score.kind == "concat":
            dst.score.additive.load_state_dict(src.score.state_dict())


@pytest.mark.parametrize("score", ["general", "dot", "concat"])
def test_local_m_with_window_covering_the_source_is_its_global_score(score):
    torch.manual_seed(0)
    local = build_attention("local_m", D, D, score=score, window=S)
    glob = build_attention(GLOBAL[score], D, D)
    score_state(local, glob)
    assert_same_outputs(local, glob)


@pytest.mark.parametrize("name", ["local_m", "local_p"])
@pytest.mark.parametrize("window", [1, 2])
def test_alignment_is_zero_outside_the_window(name, window):
    torch.manual_seed(1)
    attn = build_attention(name, D, D, window=window).eval()
    memory, mask, queries = make_inputs(LENGTHS, seed=2, steps=6)
    mem = attn.prepare(memory, mask)
    state = attn.init_state(mem)
    lengths = torch.tensor(LENGTHS, dtype=torch.float)
    s = torch.arange(1, S + 1, dtype=torch.float)          # 1-based positions
    for i, q in enumerate(queries):
        if name == "local_m":
            p = torch.minimum(torch.full_like(lengths, i + 1.0), lengths)
        else:
            p = attn.centre(q, mem, None)
            assert ((p > 0) & (p < lengths)).all()
        _, alpha, state = attn(q, mem, state)
        outside = ((s.unsqueeze(0) - p.unsqueeze(1)).abs() > window) | ~mask
        assert torch.all(alpha[outside] == 0)
        assert (alpha[~outside] > 0).all()
        assert (alpha.sum(-1) <= 1 + 1e-6).all()


def test_local_p_is_the_windowed_softmax_times_a_gaussian():
    torch.manual_seed(3)
    attn = build_attention("local_p", D, D, window=4).eval()
    memory, mask, queries = make_inputs(LENGTHS, seed=4, steps=1)
    mem = attn.prepare(memory, mask)
    _, alpha, _ = attn(queries[0], mem)
    p = attn.centre(queries[0], mem, None)
    s = torch.arange(1, S + 1, dtype=torch.float)
    dist = s.unsqueeze(0) - p.unsqueeze(1)
    window = (dist.abs() <= 4) & mask
    e = attn.score(queries[0], mem.keys).masked_fill(~window, float("-inf"))
    expected = torch.softmax(e, -1) * torch.exp(-dist ** 2 / (2 * 2.0 ** 2))   # sigma = D / 2
    torch.testing.assert_close(alpha, expected)
    assert (alpha.sum(-1) < 1).all(), "the Gaussian is not renormalised"


def test_local_p_position_gradient_reaches_w_p_and_v_p():
    torch.manual_seed(5)
    attn = build_attention("local_p", D, D, window=3)
    assert isinstance(attn, LocalP)
    memory, mask, queries = make_inputs(LENGTHS, seed=6, steps=2)
    ctxs, _ = run_steps(attn, queries, memory, mask)
    (torch.stack(ctxs) * torch.randn(2, len(LENGTHS), D)).sum().backward()
    for p in (attn.position_layer.weight, attn.v_p):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_local_rejects_bad_window_and_score():
    from nmt.attention import AttentionConfigError
    with pytest.raises(AttentionConfigError, match="attention.window"):
        build_attention("local_m", D, D, window=0)
    with pytest.raises(AttentionConfigError, match="attention.score"):
        build_attention("local_p", D, D, score="cosine")
    with pytest.raises(AttentionConfigError, match="luong_general"):
        build_attention("local_m", D, 2 * D, score="dot")
