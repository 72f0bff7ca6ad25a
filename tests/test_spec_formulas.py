"""The spec's formulas, written out in plain torch (float64) from the module's own parameters and
compared with the module (attention-spec.md sections 2-6 and 8, attention-spec-2.md sections
12-13): the additive scores, local_p's position and Gaussian, the monotonic energies, both
decoders' steps; and input feeding off, which trains and decodes.

Every parameter (biases, g, r, b included) is set to a random non-zero value first, and the
batch mixes source lengths with every row padded (garbage in the padded memory rows).
"""

from __future__ import annotations

import pytest
import torch

from nmt.attention import REGISTRY, build_attention
from nmt.data.dataset import pad_sources
from nmt.model.seq2seq import build_model
from nmt.search import beam_search, greedy
from tests.test_attention import make_mask

LENGTHS = [8, 5, 2]
S = 9                          # > max(LENGTHS): every row has padding
D_Q, D_M, UNITS = 6, 10, 7     # query, memory and attention sizes all differ
STEPS = 4
G, R = 1.7, -0.6               # values for the scalars g and r (neither is an init value)
TOL = {"rtol": 1e-7, "atol": 1e-9}
V = 20                         # vocabulary of the model tests
f64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize(module: torch.nn.Module, seed: int, scale: float = 0.7) -> torch.nn.Module:
    """float64, eval mode, every parameter N(0, scale^2); g and r get G and R."""
    module.double().eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 0:
                p.fill_({"g": G, "r": R}[name.rsplit(".", 1)[-1]])
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=f64) * scale)
    return module


def inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(len(LENGTHS), S, D_M, generator=gen, dtype=f64)
    queries = torch.randn(STEPS, len(LENGTHS), D_Q, generator=gen, dtype=f64)
    return memory, make_mask(LENGTHS, S), queries


# --- the spec's scores, per sentence: score(q [D_q], h [n, D_m]) -> e [n] ----------------------


def additive_score(sd: dict, prefix: str, normed: bool = False):
    """Section 3: v^T tanh(W_k h + W_q q); section 4: g v^T/||v|| tanh(W_k h + W_q q + b)."""
    W_q, W_k, v = sd[prefix + "query_layer.weight"], sd[prefix + "memory_layer.weight"], \
        sd[prefix + "v"]
    b = 0.0
    if normed:
        v = sd[prefix + "g"] * v / torch.sqrt(torch.sum(v ** 2))
        b = sd[prefix + "b"]
    return lambda q, h: torch.tanh(h @ W_k.T + W_q @ q + b) @ v


def general_score(sd: dict, key: str, g: float = 1.0):
    """Section 5: q^T W_a h_j, W_a [D_q, D_m]."""
    W_a = sd[key]
    return lambda q, h: g * (h @ W_a.T @ q)


def attend(score, q, memory, lengths):
    """Global attention: softmax over each sentence's own positions; alpha [B, S], c [B, D_m]."""
    alpha = torch.zeros(len(lengths), memory.shape[1], dtype=f64)
    for b, n in enumerate(lengths):
        w = torch.exp(score(q[b], memory[b, :n]))
        alpha[b, :n] = w / w.sum()
    return alpha, contexts(alpha, memory, lengths)


def contexts(alpha, memory, lengths):
    return torch.stack([alpha[b, :n] @ memory[b, :n] for b, n in enumerate(lengths)])


# --- attention mechanisms -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bahdanau", "normed_bahdanau", "luong_concat"])
def test_additive_attention_is_the_spec_formula(name):
    attn = randomize(build_attention(name, D_Q, D_M, units=UNITS), seed=1)
    sd = attn.state_dict()
    if name == "normed_bahdanau":
        assert sd["score.b"].abs().min() > 0 and sd["score.g"] == G
    score = additive_score(sd, "score.", normed=name == "normed_bahdanau")
    memory, mask, queries = inputs(2)
    mem = attn.prepare(memory, mask)
    for q in queries:
        ctx, alpha, _ = attn(q, mem, None)
        ref_alpha, ref_ctx = attend(score, q, memory, LENGTHS)
        torch.testing.assert_close(alpha, ref_alpha, **TOL)
        torch.testing.assert_close(ctx, ref_ctx, **TOL)


@pytest.mark.parametrize("score", ["general", "concat"])
@pytest.mark.parametrize("window", [1, 3])
def test_local_p_position_and_gaussian_follow_the_formula(score, window):
    """p = len_b sigmoid(v_p^T tanh(W_p q)) with each sentence's own length; alpha(s) = softmax
    over {s : |s - p| <= D, 1 <= s <= len_b} times exp(-(s - p)^2 / (2 (D/2)^2))."""
    attn = randomize(build_attention("local_p", D_Q, D_M, score=score, window=window,
                                     units=UNITS), seed=3)
    sd = attn.state_dict()
    content = (general_score(sd, "score.memory_layer.weight") if score == "general"
               else additive_score(sd, "score.additive."))
    W_p, v_p = sd["position_layer.weight"], sd["v_p"]
    memory, mask, queries = inputs(4)
    mem = attn.prepare(memory, mask)
    sigma = window / 2
    for q in queries:
        ctx, alpha, _ = attn(q, mem, None)
        ref = torch.zeros(len(LENGTHS), S, dtype=f64)
        for b, n in enumerate(LENGTHS):
            p = n * torch.sigmoid(v_p @ torch.tanh(W_p @ q[b]))
            s = torch.arange(1, n + 1, dtype=f64)                  # 1-based positions
            inside = (s - p).abs() <= window
            w = torch.exp(content(q[b], memory[b, :n])) * inside
            ref[b, :n] = w / w.sum() * torch.exp(-(s - p) ** 2 / (2 * sigma ** 2))
        torch.testing.assert_close(alpha, ref, **TOL)
        torch.testing.assert_close(ctx, contexts(ref, memory, LENGTHS), **TOL)


MONOTONIC = [("bahdanau", {}), ("bahdanau", {"normalize": True}),
             ("luong", {}), ("luong", {"scale": True})]


@pytest.mark.parametrize("flavour, options", MONOTONIC,
                         ids=["bahdanau", "bahdanau-normalize", "luong", "luong-scale"])
def test_monotonic_energy_and_expected_alignment_follow_the_formula(flavour, options):
    """Section 6.1: r is added after the score (after g; outside the tanh, b inside it); then
    alpha_j = p_j sum_{k<=j} alpha'_k prod_{l=k}^{j-1} (1 - p_l), p = sigmoid(e), alpha_0 =
    one-hot(0), p = 0 at padding (section 6.3)."""
    attn = randomize(build_attention(f"monotonic_{flavour}", D_Q, D_M, units=UNITS,
                                     **options), seed=5)
    sd = attn.state_dict()
    assert sd["r"] == R
    if flavour == "bahdanau":
        score = additive_score(sd, "score.", normed="normalize" in options)
    else:
        score = general_score(sd, "memory_layer.weight", sd["g"] if options else 1.0)
    memory, mask, queries = inputs(6)
    mem = attn.prepare(memory, mask)
    state = attn.init_state(mem)
    prev = torch.zeros(len(LENGTHS), S, dtype=f64)
    prev[:, 0] = 1.0
    for q in queries:
        ctx, alpha, state = attn(q, mem, state)
        ref = torch.zeros_like(prev)
        for b, n in enumerate(LENGTHS):
            p = torch.sigmoid(score(q[b], memory[b, :n]) + sd["r"])
            for j in range(n):
                ref[b, j] = p[j] * sum(prev[b, k] * torch.prod(1 - p[k:j]) for k in range(j + 1))
        torch.testing.assert_close(alpha, ref, **TOL)
        torch.testing.assert_close(ctx, contexts(ref, memory, LENGTHS), **TOL)
        prev = ref


# --- decoders (section 2 (L), section 12) --------------------------------------------------------


def gru(x, h, w_ih, w_hh, b_ih, b_hh):
    """torch's GRU cell, gates in the order r, z, n."""
    x_r, x_z, x_n = (x @ w_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def layer_weights(sd: dict, layer: int):
    if layer == 0:
        return [sd[f"decoder.{k}"] for k in ("w_ih", "w_hh", "b_ih", "b_hh")]
    return [sd[f"decoder.upper.{layer - 1}.{k}"]
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def decoder_model(decoder: str, attention: str, layers: int, input_feeding: bool = True):
    torch.manual_seed(0)
    model = build_model({"emb_size": 6, "hidden_size": 8, "enc_hidden_size": D_M,
                         "enc_layers": 2, "dec_layers": layers, "dropout": 0.0,
                         "input_feeding": input_feeding},
                        {"name": attention, "units": UNITS}, V, {"name": decoder})
    return randomize(model, seed=7, scale=0.5)


def model_batch(seed: int = 8, T: int = 5):
    gen = torch.Generator().manual_seed(seed)
    src, src_len = pad_sources([torch.randint(4, V, (n - 1,), generator=gen).tolist()
                                for n in LENGTHS])
    return src, src_len, torch.randint(4, V, (len(LENGTHS), T), generator=gen)


def decoder_score(sd: dict, attention: str):
    if attention == "bahdanau":
        return additive_score(sd, "decoder.attention.score.")
    return general_score(sd, "decoder.attention.memory_layer.weight")


ATTENTIONS = ["luong_general", "bahdanau"]


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("input_feeding", [True, False], ids=["feed", "nofeed"])
def test_luong_decoder_is_the_spec_step(attention, layers, input_feeding):
    """s_t = GRU([E y_{t-1}; h~_{t-1}] (or E y_{t-1} alone), s_{t-1}), h~_0 = 0; attend with the
    current top state s_t; h~_t = tanh(W_c [c_t; s_t]) (no bias); logits = W_s h~_t + b_s."""
    model = decoder_model("luong", attention, layers, input_feeding)
    sd = model.state_dict()
    src, src_len, tgt = model_batch()
    with torch.no_grad():
        logits, alphas = model(src, src_len, tgt)
        mem, state = model.encode(src, src_len)      # encoder and bridge: not under test here
    score = decoder_score(sd, attention)
    W_c = sd["decoder.combine.weight"]
    assert "decoder.combine.bias" not in sd
    s = list(state.hidden)
    feed = torch.zeros(len(LENGTHS), 8, dtype=f64)
    for t in range(tgt.shape[1]):
        x = sd["decoder.embed.weight"][tgt[:, t]]
        s[0] = gru(torch.cat([x, feed], -1) if input_feeding else x, s[0],
                   *layer_weights(sd, 0))
        for layer in range(1, layers):
            s[layer] = gru(s[layer - 1], s[layer], *layer_weights(sd, layer))
        alpha, c = attend(score, s[-1], mem.values, LENGTHS)
        feed = torch.tanh(c @ W_c[:, :D_M].T + s[-1] @ W_c[:, D_M:].T)
        torch.testing.assert_close(alphas[:, t], alpha, **TOL)
        torch.testing.assert_close(logits[:, t], feed @ sd["output.weight"].T + sd["output.bias"],
                                   **TOL)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("layers", [1, 2])
def test_bahdanau_decoder_is_the_spec_step(attention, layers):
    """c_i = attend(s_{i-1} of the top layer; s_{-1} = the bridge); s_i = GRU([E y; c_i]) into
    layer 0; t~ = U_o s_i + V_o E y + C_o c_i + bias; maxout over pairs; logits = W_o t + b_o."""
    model = decoder_model("bahdanau", attention, layers)
    sd = model.state_dict()
    src, src_len, tgt = model_batch()
    with torch.no_grad():
        logits, alphas = model(src, src_len, tgt)
        mem, state = model.encode(src, src_len)
    score = decoder_score(sd, attention)
    W_r = sd["decoder.readout_state.weight"]                  # [U_o C_o]
    V_o = sd["decoder.readout_emb.weight"]
    assert "decoder.readout_emb.bias" in sd, "t~ has a bias (spec section 12)"
    bias = sd["decoder.readout_emb.bias"]
    l = model.decoder.out_size
    assert l == 4 and W_r.shape == (2 * l, 8 + D_M)
    s = list(state.hidden)
    if layers == 2:
        assert not torch.allclose(s[0], s[1]), "the layers should start apart"
    for t in range(tgt.shape[1]):
        x = sd["decoder.embed.weight"][tgt[:, t]]
        alpha, c = attend(score, s[-1], mem.values, LENGTHS)
        s[0] = gru(torch.cat([x, c], -1), s[0], *layer_weights(sd, 0))
        for layer in range(1, layers):
            s[layer] = gru(s[layer - 1], s[layer], *layer_weights(sd, layer))
        t_tilde = s[-1] @ W_r[:, :8].T + x @ V_o.T + c @ W_r[:, 8:].T + bias
        readout = torch.maximum(t_tilde[:, 0::2], t_tilde[:, 1::2])
        torch.testing.assert_close(alphas[:, t], alpha, **TOL)
        torch.testing.assert_close(logits[:, t],
                                   readout @ sd["output.weight"].T + sd["output.bias"], **TOL)


# --- input feeding off (spec section 2: every mechanism works under both settings) ---------------


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_without_input_feeding_every_mechanism_trains_and_decodes(name):
    torch.manual_seed(0)
    model = build_model({"emb_size": 8, "hidden_size": 8, "dropout": 0.1,
                         "input_feeding": False}, {"name": name}, V)
    assert model.decoder.input_feeding is False
    assert model.decoder.w_ih.shape == (3 * 8, 8), "layer 0 reads E y only"
    src, src_len, tgt = model_batch(seed=9, T=6)
    model.train()
    loss, nll = model.loss(src, src_len, tgt, tgt, label_smoothing=0.1)
    assert torch.isfinite(loss) and torch.isfinite(nll)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    before = [p.detach().clone() for p in model.parameters()]
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    model.eval()
    with torch.no_grad():
        logits, alphas = model(src, src_len, tgt)
    assert logits.shape == (len(LENGTHS), 6, V) and alphas.shape == (len(LENGTHS), 6, src.shape[1])
    assert torch.isfinite(logits).all() and torch.isfinite(alphas).all()
    for nbest in (greedy(model, src, src_len, alignments=True),
                  beam_search(model, src, src_len, beam_size=3, nbest=2, alignments=True)):
        assert len(nbest) == len(LENGTHS)
        for hyps, n in zip(nbest, src_len.tolist(), strict=True):
            for h in hyps:
                assert all(0 <= y < V for y in h.tokens) and torch.isfinite(torch.tensor(h.score))
                assert h.alignment.shape == (len(h.tokens) + h.ended, n)
                assert torch.isfinite(h.alignment).all()
