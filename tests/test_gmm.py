"""Gaussian-mixture attention (spec part 2 section 15)."""

import math

import pytest
import torch

from nmt.attention import AttentionConfigError, build_attention
from tests.test_attention import LENGTHS, D, make_inputs


def test_means_never_move_back_and_padding_gets_nothing():
    torch.manual_seed(0)
    attn = build_attention("gmm", D, D, mixtures=3, units=6)
    memory, mask, queries = make_inputs(LENGTHS, seed=1, steps=8)
    queries = queries * 5   # large queries: steps far from the initial one
    mem = attn.prepare(memory, mask)
    kappa = attn.init_state(mem)
    assert torch.all(kappa == 0)
    for q in queries:
        _, alpha, new = attn(q, mem, kappa)
        assert (new >= kappa).all()
        assert torch.all(alpha[~mask] == 0) and (alpha >= 0).all()
        kappa = new


def test_alignment_is_the_mixture_density():
    torch.manual_seed(2)
    attn = build_attention("gmm", D, D, mixtures=2, units=4, sigma_min=0.05)
    memory, mask, queries = make_inputs(LENGTHS, seed=3, steps=1)
    mem = attn.prepare(memory, mask)
    prev = torch.rand(len(LENGTHS), 2) * 3
    with torch.no_grad():
        _, alpha, kappa = attn(queries[0], mem, prev)
    with torch.no_grad():
        raw = attn.params(torch.tanh(attn.hidden(queries[0])))
    w = torch.softmax(raw[:, :2], -1)
    delta = torch.nn.functional.softplus(raw[:, 2:4])
    sigma = torch.nn.functional.softplus(raw[:, 4:]) + 0.05
    torch.testing.assert_close(kappa, prev + delta)
    for b, n in enumerate(LENGTHS):
        for j in range(n):
            dens = sum(w[b, k] * math.exp(-(j - kappa[b, k]) ** 2 / (2 * sigma[b, k] ** 2))
                       / math.sqrt(2 * math.pi * sigma[b, k] ** 2) for k in range(2))
            assert alpha[b, j].item() == pytest.approx(float(dens), rel=1e-5, abs=1e-7)


def test_initial_step_is_about_one_position():
    attn = build_attention("gmm", D, D)
    step = torch.nn.functional.softplus(attn.params.bias.detach()[5:10])
    torch.testing.assert_close(step, torch.ones(5))


def test_bad_settings_name_the_key():
    with pytest.raises(AttentionConfigError, match="attention.mixtures"):
        build_attention("gmm", D, D, mixtures=0)
    with pytest.raises(AttentionConfigError, match="attention.sigma_min"):
        build_attention("gmm", D, D, sigma_min=0)
