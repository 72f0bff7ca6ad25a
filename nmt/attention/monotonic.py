"""Monotonic attention (Raffel et al. 2017), spec section 6.

Training computes the expected alignment
    alpha_ij = p_ij * sum_{k<=j} alpha_{i-1,k} * prod_{l=k}^{j-1} (1 - p_il),   p = sigmoid(e)
from the previous alignment (the state, one-hot at position 0 initially). Decoding uses the hard
process: attend the first position at or after the previous one whose energy is > 0, or nothing
(context 0) once no position qualifies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention.additive import AdditiveScore
from nmt.attention.base import Attention, Memory, at_least_fp32, context, glorot_
from nmt.precision import full_precision

MODES = ("log_matrix", "parallel", "recursive", "hard")
BARRIER = 1000.0   # a log(1 - p) below -BARRIER stops all mass (exp(-1000) == 0 in float64)


def excl_cumsum(x: Tensor) -> Tensor:
    return F.pad(torch.cumsum(x, -1)[..., :-1], (1, 0), value=0.0)


def excl_cumprod(x: Tensor) -> Tensor:
    return F.pad(torch.cumprod(x, -1)[..., :-1], (1, 0), value=1.0)


def mono_recursive(p: Tensor, prev: Tensor) -> Tensor:
    """q_0 = prev_0, q_j = (1 - p_{j-1}) q_{j-1} + prev_j, alpha_j = p_j q_j (sequential in S)."""
    q = prev[:, 0]
    out = [p[:, 0] * q]
    for j in range(1, p.shape[1]):
        q = (1 - p[:, j - 1]) * q + prev[:, j]
        out.append(p[:, j] * q)
    return torch.stack(out, dim=1)


def mono_parallel(p: Tensor, prev: Tensor) -> Tensor:
    """TensorFlow's closed form with safe_cumprod; loses mass when earlier p saturate (6.8)."""
    tiny = torch.finfo(p.dtype).tiny
    cp = torch.exp(excl_cumsum(torch.log(torch.clamp(1 - p, tiny, 1.0))))
    return p * cp * torch.cumsum(prev / torch.clamp(cp, 1e-10, 1.0), dim=1)


def mono_log_matrix(e: Tensor, prev: Tensor) -> Tensor:
    """Exact and parallel over S: alpha_j = p_j sum_{k<=j} prev_k exp(L_j - L_k), O(S^2).

    A factor 1 - p_l that is exactly 0 (e_l = +inf), or so small that exp underflows anyway,
    is a barrier: no mass crosses it. Barriers are counted apart from the finite log-factors,
    so one of them cannot swamp the differences L_j - L_k of the finite ones (in floating point
    -1e30 + x == -1e30), and the finite sums are taken in float64 for the same reason.
    """
    log_not_p = (-F.softplus(e)).double()           # log(1 - sigmoid(e)), -inf where e = +inf
    barrier = log_not_p < -BARRIER                  # exp(-BARRIER) is 0 in float64
    L = excl_cumsum(log_not_p.masked_fill(barrier, 0.0))           # [B, S]
    n = excl_cumsum(barrier.double())               # barriers before each position
    diff = L.unsqueeze(1) - L.unsqueeze(2)          # [B, k, j] = L_j - L_k
    blocked = n.unsqueeze(1) != n.unsqueeze(2)      # a barrier between k and j
    S = e.shape[1]
    lower = torch.ones(S, S, dtype=torch.bool, device=e.device).tril(-1)  # k > j
    # Mask the exponent, not the result: exp(+large) would be inf and its gradient NaN.
    weights = torch.exp(diff.masked_fill(blocked | lower, float("-inf"))).to(prev.dtype)
    with full_precision(e.device):   # the alignment state: no bfloat16 product
        return torch.sigmoid(e) * torch.bmm(prev.unsqueeze(1), weights).squeeze(1)


def mono_hard(e: Tensor, prev: Tensor) -> Tensor:
    """p = 1[e > 0] restricted to positions at or after the previous one; keep the first."""
    p = (e > 0).to(prev.dtype) * torch.cumsum(prev, dim=1)
    return p * excl_cumprod(1 - p)


class Monotonic(Attention):
    """Monotonic attention with Bahdanau (`flavour: bahdanau`) or Luong (`flavour: luong`) energies.

    mode: how the expected alignment is computed in training (log_matrix, parallel, recursive,
    or hard); decoding (`hard=True` from the search) always uses the hard process.
    """

    sums_to_one = False

    def __init__(self, query_size: int, memory_size: int, flavour: str = "bahdanau",
                 units: int = 0, normalize: bool = False, scale: bool = False,
                 score_bias_init: float = 0.0, sigmoid_noise: float = 1.0,
                 mode: str = "log_matrix", **_: object):
        super().__init__(query_size, memory_size)
        if mode not in MODES:
            raise ValueError(f"attention.mode={mode!r}: choose one of {', '.join(MODES)}")
        if flavour not in ("bahdanau", "luong"):
            raise ValueError(f"attention.flavour={flavour!r}: choose bahdanau or luong")
        self.flavour, self.mode, self.sigmoid_noise = flavour, mode, sigmoid_noise
        if flavour == "bahdanau":
            self.score = AdditiveScore(query_size, memory_size, units or query_size, normalize)
        else:
            self.memory_layer = nn.Linear(memory_size, query_size, bias=False)
            glorot_(self.memory_layer.weight)
            self.scale = scale
            if scale:
                self.g = nn.Parameter(torch.tensor(1.0))
        self.r = nn.Parameter(torch.tensor(float(score_bias_init)))

    def project_keys(self, values: Tensor) -> Tensor:
        if self.flavour == "bahdanau":
            return self.score.keys(values)
        return self.memory_layer(values)

    def energies(self, query: Tensor, keys: Tensor) -> Tensor:
        if self.flavour == "bahdanau":
            e = self.score(query, keys)
        else:
            e = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)
            if self.scale:
                e = self.g * e
        return e + self.r

    def init_state(self, mem: Memory) -> Tensor:
        state = torch.zeros(mem.mask.shape, dtype=at_least_fp32(mem.values).dtype,
                            device=mem.mask.device)
        state[:, 0] = 1.0
        return state

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        assert state is not None, "monotonic attention needs its previous alignment"
        e = at_least_fp32(self.energies(query, mem.keys)).masked_fill(~mem.mask, float("-inf"))
        mode = "hard" if hard else self.mode
        if mode == "hard":
            alpha = mono_hard(e, state)
        else:
            if self.training and self.sigmoid_noise > 0:
                e = e + self.sigmoid_noise * torch.randn_like(e)
            if mode == "log_matrix":
                alpha = mono_log_matrix(e, state)
            elif mode == "parallel":
                alpha = mono_parallel(torch.sigmoid(e), state)
            else:
                alpha = mono_recursive(torch.sigmoid(e), state)
        return context(alpha, mem.values), alpha, alpha
