"""Location-sensitive hybrid attention (Chorowski et al. 2015), spec section 7.

e_ij = w^T tanh(W q + V h_j + U f_ij + b), f = F * (conv input), where the convolution reads the
previous alignment (`prev`, Chorowski), the cumulative alignment (`cumulative`, Tacotron 2), or
both as two channels (`both`, NVIDIA Tacotron 2). `smoothing` normalizes with
sigmoid(e) / sum sigmoid(e), computed stably as softmax(log sigmoid(e)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention.additive import AdditiveScore
from nmt.attention.base import Attention, Memory, at_least_fp32, context, glorot_, masked_softmax

# Channels of the state, as slices: a list index would copy (and on a GPU wait for the host to
# send the index) at every target step.
INPUTS = {"prev": slice(0, 1), "cumulative": slice(1, 2), "both": slice(0, 2)}


class Location(Attention):
    """State [B, 2, S]: the previous and the cumulative alignment (zeros at the start)."""

    def __init__(self, query_size: int, memory_size: int, units: int = 128, filters: int = 32,
                 kernel_size: int = 31, location_input: str = "cumulative",
                 smoothing: bool = False, conv_bias: bool = True, energy_bias: bool = True,
                 **_: object):
        super().__init__(query_size, memory_size)
        if kernel_size % 2 != 1:
            raise ValueError(f"attention.kernel_size={kernel_size}: must be odd, so the "
                             "location features stay centred on their position")
        if location_input not in INPUTS:
            raise ValueError(f"attention.location_input={location_input!r}: choose one of "
                             f"{', '.join(INPUTS)}")
        units = units or query_size
        self.channels = INPUTS[location_input]
        self.smoothing = smoothing
        self.score = AdditiveScore(query_size, memory_size, units)
        self.conv = nn.Conv1d(self.channels.stop - self.channels.start, filters, kernel_size,
                              padding=(kernel_size - 1) // 2, bias=conv_bias)
        self.location_layer = nn.Linear(filters, units, bias=False)  # U
        glorot_(self.location_layer.weight)
        glorot_(self.conv.weight)  # TF's default (Rayhane-mamah Tacotron-2), not PyTorch's
        if conv_bias:
            nn.init.zeros_(self.conv.bias)
        self.b = nn.Parameter(torch.zeros(units)) if energy_bias else None

    def project_keys(self, values: Tensor) -> Tensor:
        return self.score.keys(values)

    def init_state(self, mem: Memory) -> Tensor:
        B, S = mem.mask.shape
        return torch.zeros(B, 2, S, dtype=at_least_fp32(mem.values).dtype, device=mem.mask.device)

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        assert state is not None, "location attention needs its previous alignment"
        conv_in = state[:, self.channels].to(mem.keys.dtype)              # [B, C, S]
        features = self.conv(conv_in).transpose(1, 2)                     # [B, S, filters]
        extra = self.location_layer(features)                             # [B, S, d_a]
        if self.b is not None:
            extra = extra + self.b
        e = self.score(query, mem.keys, extra)
        if self.smoothing:
            e = F.logsigmoid(at_least_fp32(e))
        alpha = masked_softmax(e, mem.mask)
        new_state = torch.stack([alpha, state[:, 1] + alpha], dim=1)
        return context(alpha, mem.values), alpha, new_state
