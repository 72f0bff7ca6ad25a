"""Luong et al. (2015) local attention, spec part 2 section 13 (part 1 section 8).

Positions are 1-based, s = j + 1, and the window is W_i = {s : |s - p_i| <= D, 1 <= s <= len}:
    local_m: p_i = min(i + 1, len)          alpha_i = softmax over W_i of the content score
    local_p: p_i = len * sigmoid(v_p^T tanh(W_p q_i))
             alpha_i(s) = softmax over W_i of the content score * exp(-(s - p_i)^2 / (2 sigma^2))
with sigma = D / 2; local_p's product is not renormalised (alpha sums to at most 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.additive import AdditiveScore
from nmt.attention.base import (
    Attention,
    Memory,
    at_least_fp32,
    context,
    glorot_,
    glorot_vector_,
    masked_softmax,
)
from nmt.attention.multiplicative import bilinear_scores, require_equal_sizes
from nmt.precision import full_precision

SCORES = ("general", "dot", "concat")


class ContentScore(nn.Module):
    """Luong's scores: general q^T W_a h_j, dot q^T h_j, concat v^T tanh(W_1 q + W_2 h_j)."""

    def __init__(self, kind: str, query_size: int, memory_size: int, units: int, owner: str):
        super().__init__()
        if kind not in SCORES:
            raise ValueError(f"attention.score={kind!r}: choose one of {', '.join(SCORES)}")
        self.kind = kind
        if kind == "general":
            self.memory_layer = nn.Linear(memory_size, query_size, bias=False)  # W_a
            glorot_(self.memory_layer.weight)
        elif kind == "dot":
            require_equal_sizes(f"{owner} score=dot", query_size, memory_size)
        else:
            self.additive = AdditiveScore(query_size, memory_size, units or query_size)

    def keys(self, values: Tensor) -> Tensor:
        if self.kind == "general":
            return self.memory_layer(values)
        if self.kind == "concat":
            return self.additive.keys(values)
        return values

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        if self.kind == "concat":
            return self.additive(query, keys)
        return bilinear_scores(query, keys)


class Local(Attention):
    """Base of local_m and local_p: a content score restricted to a window around p_i."""

    sums_to_one = True

    def __init__(self, query_size: int, memory_size: int, score: str = "general",
                 window: int = 10, units: int = 0, **_: object):
        super().__init__(query_size, memory_size)
        if window < 1:
            raise ValueError(f"attention.window={window}: the half-width D must be >= 1")
        self.window = window
        self.score = ContentScore(score, query_size, memory_size, units, type(self).name)

    def project_keys(self, values: Tensor) -> Tensor:
        return self.score.keys(values)

    def centre(self, query: Tensor, mem: Memory, state: Tensor | None) -> Tensor:
        raise NotImplementedError

    def weights(self, alpha: Tensor, dist: Tensor) -> Tensor:
        return alpha

    def alignment(self, query: Tensor, mem: Memory, state: Tensor | None) -> Tensor:
        """alpha [B, S]: the windowed softmax (times the Gaussian for local_p)."""
        p = self.centre(query, mem, state)                                  # [B]
        positions = torch.arange(1, mem.mask.shape[1] + 1, device=p.device, dtype=p.dtype)
        dist = positions.unsqueeze(0) - p.unsqueeze(1)                       # [B, S] s - p_i
        in_window = (dist.abs() <= self.window) & mem.mask
        alpha = masked_softmax(self.score(query, mem.keys), in_window)
        return self.weights(alpha, dist)


def true_lengths(mem: Memory, dtype: torch.dtype) -> Tensor:
    return mem.mask.sum(dim=1).to(dtype)                                     # [B]


class LocalM(Local):
    """Monotonic alignment p_i = min(i + 1, len). The state is the step index i [B]."""

    def init_state(self, mem: Memory) -> Tensor:
        return torch.zeros(mem.mask.shape[0], dtype=at_least_fp32(mem.values).dtype,
                           device=mem.mask.device)

    def centre(self, query: Tensor, mem: Memory, state: Tensor | None) -> Tensor:
        assert state is not None, "local_m needs its step counter"
        return torch.minimum(state + 1, true_lengths(mem, state.dtype))

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        alpha = self.alignment(query, mem, state)
        return context(alpha, mem.values), alpha, state + 1


class LocalP(Local):
    """Predictive alignment p_i = len * sigmoid(v_p^T tanh(W_p q)), Gaussian around p_i."""

    sums_to_one = False

    def __init__(self, query_size: int, memory_size: int, score: str = "general",
                 window: int = 10, units: int = 0, **_: object):
        super().__init__(query_size, memory_size, score, window, units)
        d_p = query_size
        self.position_layer = nn.Linear(query_size, d_p, bias=False)          # W_p
        self.v_p = nn.Parameter(torch.empty(d_p))
        glorot_(self.position_layer.weight)
        glorot_vector_(self.v_p)
        self.sigma = window / 2

    def centre(self, query: Tensor, mem: Memory, state: Tensor | None) -> Tensor:
        # In float32 also under mixed precision: bfloat16 would round p_t to ~0.4% of |x|.
        with full_precision(query.device):
            hidden = torch.tanh(self.position_layer(at_least_fp32(query)))
            gate = torch.sigmoid(hidden @ self.v_p)   # [B]
        return true_lengths(mem, gate.dtype) * gate

    def weights(self, alpha: Tensor, dist: Tensor) -> Tensor:
        return alpha * torch.exp(-dist.square() / (2 * self.sigma ** 2))

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, None]:
        alpha = self.alignment(query, mem, state)
        return context(alpha, mem.values), alpha, None
