"""Attention mechanisms (docs attention-spec.md): the masking invariant, padding/batch invariance,
gradients, identities between variants, the monotonic modes against the defining sum and the
linear-time hard scan, numerical pitfalls (saturated energies, smoothing), gradcheck, config
errors, and search (beam size 1 == greedy, batch independence, beam state reordering) for every
registered mechanism.

Every test is seeded and uses tiny sizes (B=3, S<=9, D=8) so the file runs in seconds on a CPU.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nmt.attention import REGISTRY, AttentionConfigError, build_attention, masked_softmax
from nmt.attention.monotonic import (
    Monotonic,
    mono_hard,
    mono_log_matrix,
    mono_parallel,
    mono_recursive,
)
from nmt.data.dataset import pad_sources
from nmt.data.tokenizer import BOS, EOS
from nmt.model.seq2seq import ModelSpec, Seq2Seq
from nmt.search import beam_search, greedy, max_lengths

B, S, D = 3, 9, 8
LENGTHS = [9, 5, 2]            # mixed lengths, the longest fills S
STEPS = 4                      # recurrent steps per test
SOFT_MODES = ("log_matrix", "parallel", "recursive")
LOCATION_SIZES = {"units": 8, "filters": 4, "kernel_size": 5}


def is_monotonic(name: str) -> bool:
    return issubclass(REGISTRY[name], Monotonic)


def _cases() -> list:
    """(name, options, hard) for every registered mechanism, in each of its modes."""
    cases = []
    for name in sorted(REGISTRY):
        if is_monotonic(name):
            for mode in (*SOFT_MODES, "hard"):
                cases.append(pytest.param(name, {"mode": mode}, False, id=f"{name}-{mode}"))
            cases.append(pytest.param(name, {"mode": "log_matrix"}, True,
                                      id=f"{name}-hard_decoding"))
        elif name in ("local_m", "local_p"):
            for score in ("general", "dot", "concat"):
                for window in (1, 3):
                    cases.append(pytest.param(name, {"score": score, "window": window}, False,
                                              id=f"{name}-{score}-D{window}"))
        elif name == "location":
            for smoothing in (False, True):
                for inp in ("prev", "cumulative", "both"):
                    opts = {**LOCATION_SIZES, "location_input": inp, "smoothing": smoothing}
                    tag = f"{name}-{inp}" + ("-smoothing" if smoothing else "")
                    cases.append(pytest.param(name, opts, False, id=tag))
        else:
            cases.append(pytest.param(name, {}, False, id=name))
    return cases


CASES = _cases()
# Differentiable cases: the hard monotonic process has no gradient w.r.t. the energies.
SOFT_CASES = [c for c in CASES if not c.values[2] and c.values[1].get("mode") != "hard"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_mask(lengths: list[int], S: int | None = None) -> torch.Tensor:
    S = S or max(lengths)
    return torch.arange(S).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)   # [B, S]


def make_inputs(lengths: list[int], seed: int, steps: int = STEPS, d: int = D,
                dtype: torch.dtype = torch.float32):
    """Random memory (garbage, not zeros, at padded positions), mask and queries [T, B, d]."""
    g = torch.Generator().manual_seed(seed)
    mask = make_mask(lengths)
    memory = torch.randn(len(lengths), mask.shape[1], d, generator=g, dtype=dtype)
    queries = torch.randn(steps, len(lengths), d, generator=g, dtype=dtype)
    return memory, mask, queries


def run_steps(attn, queries, memory, mask, hard=False):
    """Run the recurrence, feeding back the returned state: lists of contexts and alphas."""
    mem = attn.prepare(memory, mask)
    state = attn.init_state(mem)
    ctxs, alphas = [], []
    for q in queries:
        ctx, alpha, state = attn(q, mem, state, hard=hard)
        ctxs.append(ctx)
        alphas.append(alpha)
    return ctxs, alphas


def mono_definition(p: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """alpha_j = p_j sum_{k<=j} prev_k prod_{l=k}^{j-1} (1 - p_l), naive loops in float64."""
    p, prev = p.double(), prev.double()
    out = torch.zeros_like(p)
    for b in range(p.shape[0]):
        for j in range(p.shape[1]):
            acc = 0.0
            for k in range(j + 1):
                acc += prev[b, k] * torch.prod(1 - p[b, k:j])
            out[b, j] = p[b, j] * acc
    return out


def hard_scan(e, t_prev, done, lengths):
    """Spec 6.5: online linear-time hard decoding. Returns (alpha, t, exhausted)."""
    alpha = torch.zeros_like(e)
    t, done_next = t_prev.clone(), done.clone()
    for b in range(e.shape[0]):
        if done[b]:
            continue
        for j in range(int(t_prev[b]), int(lengths[b])):
            if e[b, j] > 0:
                alpha[b, j] = 1.0
                t[b] = j
                break
        else:
            done_next[b] = True
    return alpha, t, done_next


# --- 1. masking invariant -------------------------------------------------------------------


@pytest.mark.parametrize("name, options, hard", CASES)
def test_alignments_are_distributions_with_zero_weight_on_padding(name, options, hard):
    attn = build_attention(name, D, D, **options).train()   # monotonic: noise on (default 1.0)
    memory, mask, queries = make_inputs(LENGTHS, seed=1, steps=6)
    mem = attn.prepare(memory, mask)
    assert torch.all(mem.values[~mask] == 0)
    ctxs, alphas = run_steps(attn, queries, memory, mask, hard)
    prev_total = torch.ones(B)
    for ctx, alpha in zip(ctxs, alphas, strict=True):
        assert alpha.shape == (B, S) and ctx.shape == (B, D)
        assert torch.isfinite(ctx).all() and torch.isfinite(alpha).all()
        assert (alpha >= 0).all()
        assert torch.all(alpha[~mask] == 0), "attention leaked onto padding"
        total = alpha.sum(-1)
        if not REGISTRY[name].sums_to_one and not is_monotonic(name):
            if name == "local_p":
                assert (total <= 1 + 1e-6).all()   # the Gaussian only removes mass
        elif is_monotonic(name):
            assert (total <= 1 + 1e-6).all()
            assert (total <= prev_total + 1e-6).all(), "monotonic mass must never come back"
            prev_total = total
            if hard or options["mode"] == "hard":
                assert torch.all((alpha == 0) | (alpha == 1))
        else:
            torch.testing.assert_close(total, torch.ones(B), atol=1e-5, rtol=0)


# --- 2. padding / batch invariance ----------------------------------------------------------


@pytest.mark.parametrize("name, options, hard", CASES)
def test_sentence_result_does_not_depend_on_batch_padding(name, options, hard):
    lengths = [4, 9, 6]
    attn = build_attention(name, D, D, **options).eval()
    memory, mask, queries = make_inputs(lengths, seed=2)
    ctx_batch, alpha_batch = run_steps(attn, queries, memory, mask, hard)
    for b, n in enumerate(lengths):
        ctx_one, alpha_one = run_steps(attn, queries[:, b:b + 1], memory[b:b + 1, :n],
                                       mask[b:b + 1, :n], hard)
        for t in range(STEPS):
            torch.testing.assert_close(alpha_batch[t][b, :n], alpha_one[t][0], atol=1e-6, rtol=0)
            assert torch.all(alpha_batch[t][b, n:] == 0)
            # rtol: the batched matmul rounds differently from the one-sentence one (~1 ulp).
            torch.testing.assert_close(ctx_batch[t][b], ctx_one[t][0], atol=1e-6, rtol=2e-6)


# --- 3. gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, options, hard", SOFT_CASES)
def test_gradients_reach_every_parameter(name, options, hard):
    attn = build_attention(name, D, D, **options).train()
    memory, mask, queries = make_inputs(LENGTHS, seed=3, steps=3)
    memory.requires_grad_(True)
    queries.requires_grad_(True)
    ctxs, _ = run_steps(attn, queries, memory, mask)
    weights = torch.randn(len(ctxs), B, D)   # a weighted sum avoids accidental cancellations
    (torch.stack(ctxs) * weights).sum().backward()
    for pname, param in attn.named_parameters():
        assert param.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, f"{pname} gets an all-zero gradient"
    for x in (memory, queries):
        assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.all(memory.grad[~mask] == 0), "padded memory must not influence the output"


# --- 4. identities between variants ---------------------------------------------------------


def copy_additive(dst, src):
    """Copy W_q, W_k and v of one AdditiveScore into another."""
    with torch.no_grad():
        dst.query_layer.weight.copy_(src.query_layer.weight)
        dst.memory_layer.weight.copy_(src.memory_layer.weight)
        dst.v.copy_(src.v)


def assert_same_outputs(a, b, lengths=LENGTHS, seed=4, atol=1e-6, query_scale=1.0):
    memory, mask, queries = make_inputs(lengths, seed)
    queries = queries * query_scale
    ctx_a, alpha_a = run_steps(a, queries, memory, mask)
    ctx_b, alpha_b = run_steps(b, queries, memory, mask)
    for t in range(len(ctx_a)):
        torch.testing.assert_close(alpha_a[t], alpha_b[t], atol=atol, rtol=0)
        torch.testing.assert_close(ctx_a[t], ctx_b[t], atol=atol, rtol=0)


def test_normed_bahdanau_with_g_equal_norm_v_and_zero_bias_is_bahdanau():
    plain = build_attention("bahdanau", D, D, units=6)
    normed = build_attention("normed_bahdanau", D, D, units=6)
    copy_additive(normed.score, plain.score)
    with torch.no_grad():
        normed.score.g.copy_(plain.score.v.norm())
    assert torch.all(normed.score.b == 0)
    assert_same_outputs(normed, plain)


def test_scaled_luong_with_g_one_is_luong_general():
    general = build_attention("luong_general", D, D)
    scaled = build_attention("scaled_luong", D, D)
    assert scaled.g.item() == 1.0
    with torch.no_grad():
        scaled.memory_layer.weight.copy_(general.memory_layer.weight)
    assert_same_outputs(scaled, general)


@pytest.mark.parametrize("location_input", ["prev", "cumulative", "both"])
def test_location_without_location_features_is_bahdanau(location_input):
    plain = build_attention("bahdanau", D, D, units=8)
    loc = build_attention("location", D, D, location_input=location_input, **LOCATION_SIZES)
    copy_additive(loc.score, plain.score)
    with torch.no_grad():
        loc.conv.weight.zero_()
        loc.conv.bias.zero_()
        loc.b.zero_()
    assert_same_outputs(loc, plain)


def random_monotonic_inputs(seed: int, scale: float = 2.0):
    """Moderate energies [B, S] and a previous alignment that sums to < 1 (as after a few steps)."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(B, S, generator=g) * scale
    prev = torch.rand(B, S, generator=g)
    prev = prev / (prev.sum(1, keepdim=True) * 1.2)
    return e, prev


def test_monotonic_modes_agree_with_the_defining_sum():
    e, prev = random_monotonic_inputs(seed=5)
    p = torch.sigmoid(e)
    ref = mono_definition(p, prev)
    recursive = mono_recursive(p, prev)
    torch.testing.assert_close(mono_parallel(p, prev), recursive, atol=1e-5, rtol=0)
    torch.testing.assert_close(mono_log_matrix(e, prev), recursive, atol=1e-5, rtol=0)
    for alpha in (recursive, mono_parallel(p, prev), mono_log_matrix(e, prev)):
        torch.testing.assert_close(alpha.double(), ref, atol=1e-6, rtol=0)
    # In float64 all three forms match the definition to rounding error.
    e64, prev64 = e.double(), prev.double()
    ref64 = mono_definition(torch.sigmoid(e64), prev64)
    torch.testing.assert_close(mono_recursive(torch.sigmoid(e64), prev64), ref64, atol=1e-12,
                               rtol=0)
    torch.testing.assert_close(mono_parallel(torch.sigmoid(e64), prev64), ref64, atol=1e-12,
                               rtol=0)
    torch.testing.assert_close(mono_log_matrix(e64, prev64), ref64, atol=1e-12, rtol=0)
    assert (ref.sum(1) <= prev.double().sum(1) + 1e-12).all()


@pytest.mark.parametrize("name", [n for n in sorted(REGISTRY) if is_monotonic(n)])
def test_monotonic_module_modes_agree(name):
    modules = {mode: build_attention(name, D, D, mode=mode, sigmoid_noise=0.0).train()
               for mode in SOFT_MODES}
    for mode in ("parallel", "log_matrix"):
        modules[mode].load_state_dict(modules["recursive"].state_dict())
        # Luong energies reach |e| ~ 9 at scale 1, where 'parallel' already loses precision
        # (spec 6.8); halving the queries keeps the energies moderate (|e| < 5).
        assert_same_outputs(modules[mode], modules["recursive"], seed=6, atol=1e-5,
                            query_scale=0.5)


@pytest.mark.parametrize("location_input", ["prev", "cumulative", "both"])
def test_location_state_is_previous_and_cumulative_alignment(location_input):
    attn = build_attention("location", D, D, location_input=location_input, **LOCATION_SIZES)
    memory, mask, queries = make_inputs(LENGTHS, seed=16)
    mem = attn.prepare(memory, mask)
    state = attn.init_state(mem)
    assert state.shape == (B, 2, S) and torch.all(state == 0)
    cumulative = torch.zeros(B, S)
    for q in queries:
        _, alpha, state = attn(q, mem, state)
        cumulative = cumulative + alpha
        torch.testing.assert_close(state[:, 0], alpha)
        torch.testing.assert_close(state[:, 1], cumulative)
    # The convolution reads exactly the configured channels of the state.
    read = {"prev": {0}, "cumulative": {1}, "both": {0, 1}}[location_input]
    _, alpha, _ = attn(queries[0], mem, state)
    for channel in (0, 1):
        bumped = state.clone()
        bumped[:, channel, 0] += 0.5
        _, alpha_bumped, _ = attn(queries[0], mem, bumped)
        assert (not torch.allclose(alpha, alpha_bumped)) == (channel in read)


# --- 5. hard monotonic attention ------------------------------------------------------------


def test_mono_hard_equals_linear_time_scan():
    lengths = torch.tensor([9, 5, 7, 1])
    mask = make_mask(lengths.tolist())
    g = torch.Generator().manual_seed(7)
    prev = torch.zeros(4, S)
    prev[:, 0] = 1.0
    t = torch.zeros(4, dtype=torch.long)
    done = torch.zeros(4, dtype=torch.bool)
    mixed = False
    for _ in range(10):
        e = (torch.randn(4, S, generator=g) * 1.5 - 0.5).masked_fill(~mask, float("-inf"))
        alpha = mono_hard(e, prev)
        expected, t, done = hard_scan(e, t, done, lengths)
        assert torch.equal(alpha, expected)
        prev = alpha
        mixed |= bool(done.any() and not done.all())
    assert mixed, "the test should cover exhausted rows next to live ones"


@pytest.mark.parametrize("name", [n for n in sorted(REGISTRY) if is_monotonic(n)])
def test_hard_monotonic_decoding_moves_forward_and_stays_exhausted(name):
    lengths = [9, 6, 3]
    attn = build_attention(name, D, D).eval()
    memory, mask, queries = make_inputs(lengths, seed=8, steps=25)
    # Random energies every step, positive ones at padded positions included: the module must
    # mask those itself.
    g = torch.Generator().manual_seed(8)
    attn.energies = lambda query, keys: torch.randn(keys.shape[:2], generator=g) * 2 - 0.3
    mem = attn.prepare(memory, mask)
    state = attn.init_state(mem)
    t = torch.zeros(B, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    moved, mixed = torch.zeros(B, dtype=torch.bool), False
    with torch.no_grad():
        for q in queries:
            state_g = g.get_state()
            e = attn.energies(q, mem.keys).masked_fill(~mask, float("-inf"))
            g.set_state(state_g)                                    # forward sees the same e
            ctx, alpha, state = attn(q, mem, state, hard=True)
            expected, t_next, done_next = hard_scan(e, t, done, lengths)
            assert torch.equal(alpha, expected)
            live = alpha.sum(1) > 0
            assert torch.all(alpha.sum(1) == live.float())        # one-hot or all zero
            assert not (live & done).any(), "an exhausted row attended again"
            assert (t_next >= t).all(), "the attended position moved backwards"
            assert torch.all(ctx[~live] == 0), "an exhausted row must have a zero context"
            torch.testing.assert_close(ctx[live], mem.values[live, t_next[live]])
            moved |= t_next > t
            t, done = t_next, done_next
            mixed |= bool(done.any() and not done.all())
    assert mixed and moved.any(), "the test should cover moving rows and exhausted ones"


# --- 6. saturated energies ------------------------------------------------------------------


def test_log_matrix_is_finite_for_saturated_energies():
    g = torch.Generator().manual_seed(9)
    mask = make_mask(LENGTHS)
    sign = torch.randint(0, 2, (B, S), generator=g).float() * 2 - 1
    e = (30.0 * sign).masked_fill(~mask, float("-inf")).requires_grad_(True)
    prev = torch.rand(B, S, generator=g) * mask
    prev = (prev / prev.sum(1, keepdim=True)).requires_grad_(True)
    alpha = mono_log_matrix(e, prev)
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha.double(), mono_definition(torch.sigmoid(e.detach()),
                                                               prev.detach()), atol=1e-5, rtol=0)
    (alpha * torch.randn(B, S, generator=g)).sum().backward()
    assert torch.isfinite(e.grad).all() and torch.isfinite(prev.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_matrix_equals_the_recursion_with_infinite_and_huge_energies(dtype):
    """A choose probability of exactly 1 (e = +inf) or 0 (e = -inf), or a saturated one, stops
    or passes the mass exactly as the recursion does, at the positions after it too."""
    g = torch.Generator().manual_seed(21)
    e = torch.randn(4, 12, generator=g, dtype=dtype) * 3
    e[0, 3] = float("inf")
    e[1, 2] = float("-inf")
    e[1, 7] = float("inf")
    e[2, 1], e[2, 5] = 1e6, 60.0
    e[3, :] = float("inf")
    prev = torch.rand(4, 12, generator=g, dtype=dtype)
    prev = prev / prev.sum(1, keepdim=True)
    e.requires_grad_(True)
    alpha = mono_log_matrix(e, prev)
    torch.testing.assert_close(alpha, mono_recursive(torch.sigmoid(e.detach()), prev),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(alpha[3], prev[3])   # p = 1 everywhere: nothing moves
    (alpha * torch.randn(4, 12, generator=g, dtype=dtype)).sum().backward()
    assert torch.isfinite(e.grad).all()


def test_parallel_loses_mass_where_log_matrix_stays_exact():
    """Spec 6.8: ten earlier positions with e = 5, previous attention at index 12."""
    e = torch.full((1, 30), -2.0)
    e[0, :10] = 5.0
    prev = torch.zeros(1, 30)
    prev[0, 12] = 1.0
    exact = mono_definition(torch.sigmoid(e), prev)
    assert abs(exact.sum().item() - 0.898) < 1e-3
    torch.testing.assert_close(mono_log_matrix(e, prev).double(), exact, atol=1e-6, rtol=0)
    torch.testing.assert_close(mono_recursive(torch.sigmoid(e), prev).double(), exact,
                               atol=1e-6, rtol=0)
    assert mono_parallel(torch.sigmoid(e), prev).sum().item() < 1e-6   # the documented pitfall


# --- 7. smoothing ---------------------------------------------------------------------------


def capture_energies(attn) -> list[torch.Tensor]:
    """Record the raw energies e (before normalisation) computed by `attn.score`."""
    seen: list[torch.Tensor] = []
    attn.score.register_forward_hook(lambda mod, args, out: seen.append(out.detach()))
    return seen


@pytest.mark.parametrize("location_input", ["prev", "cumulative", "both"])
def test_smoothing_is_sigmoid_over_sum_of_sigmoids(location_input):
    attn = build_attention("location", D, D, smoothing=True, location_input=location_input,
                           **LOCATION_SIZES)
    energies = capture_energies(attn)
    memory, mask, queries = make_inputs(LENGTHS, seed=10)
    _, alphas = run_steps(attn, queries, memory, mask)
    for e, alpha in zip(energies, alphas, strict=True):
        sig = torch.sigmoid(e.double()) * mask
        torch.testing.assert_close(alpha.double(), sig / sig.sum(1, keepdim=True), atol=1e-6,
                                   rtol=0)


def test_smoothing_has_no_nan_for_very_negative_energies():
    attn = build_attention("location", D, D, smoothing=True, **LOCATION_SIZES)
    with torch.no_grad():                     # e = v . tanh(~100) = -100 * units = -800
        attn.score.v.fill_(-100.0)
        attn.b.fill_(100.0)
    energies = capture_energies(attn)
    memory, mask, queries = make_inputs(LENGTHS, seed=11)
    _, alphas = run_steps(attn, queries, memory, mask)
    assert (energies[0][mask] < -700).all()
    assert torch.sigmoid(energies[0][mask]).max() == 0     # the naive ratio would be 0/0
    uniform = mask / mask.sum(1, keepdim=True)
    for alpha in alphas:
        assert torch.isfinite(alpha).all()
        torch.testing.assert_close(alpha, uniform.float(), atol=1e-6, rtol=0)


def test_log_sigmoid_softmax_equals_naive_ratio_and_survives_underflow():
    mask = make_mask(LENGTHS)
    e = torch.randn(B, S) * 3
    sig = torch.sigmoid(e.double()) * mask
    torch.testing.assert_close(masked_softmax(F.logsigmoid(e), mask).double(),
                               sig / sig.sum(1, keepdim=True), atol=1e-6, rtol=0)
    very_negative = torch.full((B, S), -800.0) + torch.randn(B, S) * 1e-3
    alpha = masked_softmax(F.logsigmoid(very_negative), mask)
    assert torch.isfinite(alpha).all() and torch.all(alpha[~mask] == 0)
    torch.testing.assert_close(alpha.sum(1), torch.ones(B))


# --- 8. normed Bahdanau initialisation ------------------------------------------------------


@pytest.mark.parametrize("name, options, units", [
    pytest.param("normed_bahdanau", {}, D, id="normed_bahdanau-default_units"),
    pytest.param("normed_bahdanau", {"units": 16}, 16, id="normed_bahdanau-units16"),
    pytest.param("monotonic_bahdanau", {"units": 16, "normalize": True}, 16,
                 id="monotonic_bahdanau-normalize"),
])
def test_normed_bahdanau_init_gain_and_energy_bound(name, options, units):
    attn = build_attention(name, D, D, **options)
    assert attn.score.g.item() == pytest.approx(math.sqrt(1.0 / units))
    assert torch.all(attn.score.b == 0)
    memory, mask, queries = make_inputs(LENGTHS, seed=12)
    mem = attn.prepare(memory * 10, mask)
    for q in queries:
        e = attn.score(q * 10, mem.keys)
        assert e.abs().max() <= 1 + 1e-6


# --- 9. gradcheck ---------------------------------------------------------------------------


def gradcheck_inputs(name, options):
    """A float64 mechanism and a function of (queries, memory) over 2 steps, tiny mixed batch."""
    d = 4
    if name == "location":
        options = {**options, "units": 4, "filters": 2, "kernel_size": 3}
    if name == "gmm":
        options = {**options, "units": 4, "mixtures": 2}
    if name == "multihead":
        options = {**options, "heads": 2}
    if is_monotonic(name):
        options = {**options, "sigmoid_noise": 0.0}
    attn = build_attention(name, d, d, **options).double().train()
    memory, mask, queries = make_inputs([5, 3, 1], seed=13, steps=2, d=d, dtype=torch.float64)

    def f(queries, memory):
        ctxs, alphas = run_steps(attn, queries, memory, mask)
        return torch.cat([torch.stack(ctxs).flatten(), torch.stack(alphas).flatten()])

    return f, (queries.requires_grad_(True), memory.requires_grad_(True))


@pytest.mark.parametrize("name, options, hard", SOFT_CASES)
def test_gradcheck_float64(name, options, hard):
    f, inputs = gradcheck_inputs(name, options)
    torch.autograd.gradcheck(f, inputs)


# --- 10. configuration errors ---------------------------------------------------------------


def test_unknown_attention_name_lists_valid_names():
    with pytest.raises(AttentionConfigError) as err:
        build_attention("bahdanau_typo", D, D)
    for name in REGISTRY:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["luong_dot", "scaled_dot"])
def test_dot_attention_with_different_sizes_suggests_luong_general(name):
    with pytest.raises(AttentionConfigError, match="luong_general") as err:
        build_attention(name, D, 2 * D)
    assert name in str(err.value)


@pytest.mark.parametrize("name, options", [
    ("monotonic_bahdanau", {"mode": "soft"}),
    ("location", {"kernel_size": 4}),
    ("location", {"location_input": "sideways"}),
])
def test_invalid_options_raise_attention_config_error(name, options):
    with pytest.raises(AttentionConfigError):
        build_attention(name, D, D, **options)


@pytest.mark.parametrize("name", ["bahdanau", "luong_general"])
def test_empty_source_row_is_rejected(name):
    attn = build_attention(name, D, D)
    memory, _, queries = make_inputs([4, 4, 4], seed=15, steps=1)
    mask = make_mask([4, 2, 0], S=4)
    with pytest.raises((AssertionError, ValueError)):
        mem = attn.prepare(memory, mask)
        attn(queries[0], mem, attn.init_state(mem))


# --- 11. search -----------------------------------------------------------------------------


DECODERS = ("luong", "bahdanau")
MODELS = [pytest.param(name, dec, id=f"{name}-{dec}") for name in sorted(REGISTRY)
          for dec in DECODERS]


def tiny_model(name: str, decoder: str = "luong") -> Seq2Seq:
    torch.manual_seed(0)
    spec = ModelSpec(vocab_size=20, emb_size=8, hidden_size=8, dropout=0.0)
    return Seq2Seq(spec, name, decoder={"name": decoder}).eval()


def tiny_sources():
    g = torch.Generator().manual_seed(14)
    seqs = [torch.randint(4, 20, (n,), generator=g).tolist() for n in (3, 7, 1, 5)]
    return pad_sources(seqs)


def tokens(hyps) -> list[list[int]]:
    return [h[0].tokens for h in hyps]


@pytest.mark.parametrize("name, decoder", MODELS)
def test_beam_size_one_equals_greedy(name, decoder):
    model = tiny_model(name, decoder)
    src, src_len = tiny_sources()
    out = tokens(greedy(model, src, src_len))
    assert out == tokens(beam_search(model, src, src_len, beam_size=1, alpha=0.0))
    assert any(out), "the model should produce some tokens"
    # the scores too, on the same scale: log-probability over the same length penalty
    for alpha in (0.0, 0.6):
        g = [h[0].score for h in greedy(model, src, src_len, alpha=alpha)]
        b = [h[0].score for h in beam_search(model, src, src_len, beam_size=1, alpha=alpha)]
        assert g == pytest.approx(b, rel=1e-5)


@pytest.mark.parametrize("name, decoder", MODELS)
def test_decoding_a_sentence_alone_equals_decoding_it_in_a_batch(name, decoder):
    model = tiny_model(name, decoder)
    src, src_len = tiny_sources()
    batch_greedy = tokens(greedy(model, src, src_len))
    batch_beam = tokens(beam_search(model, src, src_len, beam_size=3))
    for b, n in enumerate(src_len.tolist()):
        one, one_len = src[b:b + 1, :n], src_len[b:b + 1]
        assert tokens(greedy(model, one, one_len)) == [batch_greedy[b]]
        assert tokens(beam_search(model, one, one_len, beam_size=3)) == [batch_beam[b]]


@torch.inference_mode()
def rescore(model: Seq2Seq, src, src_len, ys: list[int], eos: bool) -> float:
    """log p(ys [+ EOS] | src), one sentence, stepping the decoder as the search does."""
    mem, state = model.encode(src, src_len)
    prev, total = BOS, 0.0
    for y in ys + ([EOS] if eos else []):
        logp, _, state = model.step_logprobs(torch.tensor([prev]), state, mem)
        total += logp[0, y].item()
        prev = y
    return total


@pytest.mark.parametrize("name, decoder", MODELS)
def test_beam_hypothesis_scores_match_rescoring(name, decoder):
    """Beam 3 reorders the GRU, input-feed and attention state by back-pointer: if it did not,
    the score of a hypothesis would differ from the probability the model gives its tokens."""
    model = tiny_model(name, decoder)
    src, src_len = tiny_sources()
    nbest = beam_search(model, src, src_len, beam_size=3, nbest=3, alpha=0.0)
    limits = max_lengths(src_len, 1.5, 10).tolist()
    for b, n in enumerate(src_len.tolist()):
        assert len(nbest[b]) == 3
        for hyp in nbest[b]:
            assert hyp.ended or len(hyp.tokens) == limits[b]   # cut at the maximum length
            expected = rescore(model, src[b:b + 1, :n], src_len[b:b + 1], hyp.tokens, hyp.ended)
            assert hyp.score == pytest.approx(expected, abs=1e-4)


def test_weight_decay_spares_the_normalised_direction():
    # attention-spec.md: decay shrinks |v| without changing the function, which only raises
    # v's effective step size; v is left out, everything else is decayed.
    from nmt.train import param_groups

    model = tiny_model("normed_bahdanau")
    v = dict(model.named_parameters())["decoder.attention.score.v"]
    other = model.decoder.attention.score.query_layer.weight
    before_v, before_other = v.detach().clone(), other.detach().clone()
    opt = torch.optim.Adam(param_groups(model, 0.5), lr=0.1, weight_decay=0.5)   # as trained
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(v, before_v) and not torch.allclose(other, before_other)
    assert len(param_groups(model, 0.0)) == 1
    assert len(param_groups(tiny_model("bahdanau"), 0.5)) == 1
