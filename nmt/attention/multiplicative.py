"""Luong et al. (2015) multiplicative scores (spec section 5) and scaled dot (section 8)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import Attention, Memory, context, glorot_, masked_softmax


class AttentionConfigError(ValueError):
    """An attention setting that cannot work with the model's sizes."""


def bilinear_scores(query: Tensor, keys: Tensor) -> Tensor:
    """e_bj = K_bj . q_b: [B, D] x [B, S, D] -> [B, S]."""
    return torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)


class LuongGeneral(Attention):
    """e_j = q^T W_a h_j (general); with `scale`, g * q^T W_a h_j with g learned, init 1."""

    def __init__(self, query_size: int, memory_size: int, scale: bool = False, **_: object):
        super().__init__(query_size, memory_size)
        self.memory_layer = nn.Linear(memory_size, query_size, bias=False)  # W_a
        glorot_(self.memory_layer.weight)
        self.scale = scale
        if scale:
            self.g = nn.Parameter(torch.tensor(1.0))

    def project_keys(self, values: Tensor) -> Tensor:
        return self.memory_layer(values)  # [B, S, D_q]

    def scores(self, query: Tensor, keys: Tensor) -> Tensor:
        e = bilinear_scores(query, keys)
        return self.g * e if self.scale else e

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        alpha = masked_softmax(self.scores(query, mem.keys), mem.mask)
        return context(alpha, mem.values), alpha, None


class ScaledLuong(LuongGeneral):
    def __init__(self, query_size: int, memory_size: int, **kw: object):
        kw.pop("scale", None)
        super().__init__(query_size, memory_size, scale=True)


def require_equal_sizes(name: str, query_size: int, memory_size: int) -> None:
    if query_size != memory_size:
        raise AttentionConfigError(
            f"attention={name} needs decoder hidden size == encoder output size, but they are "
            f"{query_size} and {memory_size}; use attention=luong_general (a learned W_a maps "
            "between the sizes) or make model.enc_hidden_size equal model.hidden_size")


class LuongDot(Attention):
    """e_j = q^T h_j; no parameters."""

    scale = 1.0

    def __init__(self, query_size: int, memory_size: int, **_: object):
        super().__init__(query_size, memory_size)
        require_equal_sizes(type(self).name, query_size, memory_size)

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        alpha = masked_softmax(bilinear_scores(query, mem.keys) * self.scale, mem.mask)
        return context(alpha, mem.values), alpha, None


class ScaledDot(LuongDot):
    """e_j = q^T h_j / sqrt(d) (Vaswani et al. 2017)."""

    def __init__(self, query_size: int, memory_size: int, **kw: object):
        super().__init__(query_size, memory_size)
        self.scale = query_size ** -0.5
