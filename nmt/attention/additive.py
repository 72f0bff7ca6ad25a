"""Additive attention: Bahdanau (spec section 3), normed Bahdanau (section 4), Luong concat."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import Attention, Memory, context, glorot_, glorot_vector_, masked_softmax


class AdditiveScore(nn.Module):
    """e_j = v^T tanh(K_j + W_q q) or, normalized, g v^T/||v|| tanh(K_j + W_q q + b).

    Shared by the additive, monotonic-Bahdanau and location-sensitive mechanisms.
    """

    def __init__(self, query_size: int, memory_size: int, units: int, normalize: bool = False):
        super().__init__()
        self.normalize = normalize
        self.query_layer = nn.Linear(query_size, units, bias=False)  # W_q
        self.memory_layer = nn.Linear(memory_size, units, bias=False)  # W_k
        self.v = nn.Parameter(torch.empty(units))
        glorot_(self.query_layer.weight)
        glorot_(self.memory_layer.weight)
        glorot_vector_(self.v)
        if normalize:
            # Decay would shrink |v| without changing the function, so raise its step size.
            self.v.no_weight_decay = True  # type: ignore[attr-defined]
            self.g = nn.Parameter(torch.tensor((1.0 / units) ** 0.5))
            self.b = nn.Parameter(torch.zeros(units))

    def keys(self, values: Tensor) -> Tensor:
        return self.memory_layer(values)  # [B, S, d_a]

    def forward(self, query: Tensor, keys: Tensor, extra: Tensor | None = None) -> Tensor:
        """query [B, D_q], keys [B, S, d_a], extra [B, S, d_a] added inside the tanh -> [B, S]."""
        hidden = keys + self.query_layer(query).unsqueeze(1)
        if extra is not None:
            hidden = hidden + extra
        if self.normalize:
            hidden = hidden + self.b
            # TF normalizes v with rsqrt(sum v^2) and no epsilon.
            v = self.g * self.v * torch.rsqrt(torch.sum(self.v * self.v))
        else:
            v = self.v
        # In place: `hidden` is a temporary here, and tanh's backward needs only its output.
        return hidden.tanh_() @ v


class Bahdanau(Attention):
    """Additive attention; `normalize=True` is TensorFlow's normed_bahdanau."""

    def __init__(self, query_size: int, memory_size: int, units: int = 0,
                 normalize: bool = False, **_: object):
        super().__init__(query_size, memory_size)
        self.score = AdditiveScore(query_size, memory_size, units or query_size, normalize)

    def project_keys(self, values: Tensor) -> Tensor:
        return self.score.keys(values)

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        alpha = masked_softmax(self.score(query, mem.keys), mem.mask)
        return context(alpha, mem.values), alpha, None


class NormedBahdanau(Bahdanau):
    def __init__(self, query_size: int, memory_size: int, units: int = 0, **kw: object):
        kw.pop("normalize", None)
        super().__init__(query_size, memory_size, units, normalize=True)


class LuongConcat(Bahdanau):
    """Luong et al. (2015) concat: v^T tanh(W [q; h_j]) = v^T tanh(W_1 q + W_2 h_j), i.e. additive
    attention with the current decoder state as query (our decoder's query). Without the paper's
    footnote-15 restriction (W_2 tied to identity)."""
