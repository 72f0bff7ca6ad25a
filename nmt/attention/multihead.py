"""Multi-head attention (Vaswani et al. 2017, section 3.2.2) as encoder-decoder attention, spec
part 2 section 14:
    Q_k = q W_k^Q,  K_k = h W_k^K,  V_k = h W_k^V          d_k = D_q / H, d_v = D_m / H
    alpha_k = masked softmax(Q_k K_k^T / sqrt(d_k))
    c = [alpha_1 V_1; ...; alpha_H V_H] W^O
The alignment returned is the mean of the heads; the state carries the heads' own alignments
[B, H, S] of the last step (never read back), so callers can draw them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.attention.base import Attention, Memory, at_least_fp32, glorot_, masked_softmax
from nmt.attention.multiplicative import AttentionConfigError


class MultiHead(Attention):
    def __init__(self, query_size: int, memory_size: int, heads: int = 4, **_: object):
        super().__init__(query_size, memory_size)
        bad = [f"{name} {size}" for name, size in
               (("the decoder hidden size", query_size), ("the encoder output size", memory_size))
               if heads < 1 or size % heads]
        if bad:
            raise AttentionConfigError(f"attention.heads={heads} must divide "
                                       f"{' and '.join(bad)}")
        self.heads = heads
        self.d_k, self.d_v = query_size // heads, memory_size // heads
        self.query_layer = nn.Linear(query_size, query_size, bias=False)     # [W_1^Q ... W_H^Q]
        self.key_layer = nn.Linear(memory_size, query_size, bias=False)      # [W_k^K]
        self.value_layer = nn.Linear(memory_size, memory_size, bias=False)   # [W_k^V]
        self.output_layer = nn.Linear(memory_size, memory_size, bias=False)  # W^O
        for layer in (self.query_layer, self.key_layer, self.value_layer, self.output_layer):
            glorot_(layer.weight)

    def project_keys(self, values: Tensor) -> Tensor:
        """Keys and values of every head, once per batch: [B, S, D_q + D_m]."""
        return torch.cat([self.key_layer(values), self.value_layer(values)], dim=-1)

    def init_state(self, mem: Memory) -> Tensor:
        B, S = mem.mask.shape
        return mem.values.new_zeros(B, self.heads, S, dtype=at_least_fp32(mem.values).dtype)

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        B, S, _ = mem.keys.shape
        H = self.heads
        keys, values = mem.keys.split([self.query_size, self.memory_size], dim=-1)
        keys = keys.view(B, S, H, self.d_k).transpose(1, 2)                 # [B, H, S, d_k]
        values = values.view(B, S, H, self.d_v).transpose(1, 2)             # [B, H, S, d_v]
        q = self.query_layer(query).view(B, H, self.d_k, 1)                 # [B, H, d_k, 1]
        scores = (keys @ q).squeeze(-1) * self.d_k ** -0.5                  # [B, H, S]
        alpha = masked_softmax(scores, mem.mask.unsqueeze(1))               # [B, H, S]
        heads = (alpha.unsqueeze(2).to(values.dtype) @ values).squeeze(2)   # [B, H, d_v]
        ctx = self.output_layer(heads.reshape(B, H * self.d_v))
        return ctx, alpha.mean(dim=1), alpha

    def head_alignments(self, state: Tensor | None) -> Tensor | None:
        return state
