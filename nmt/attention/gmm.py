"""Gaussian-mixture attention (Graves 2013 section 5; Battenberg et al. 2019 "GMMv2b"), spec part 2
section 15. Location-relative and content-free: from the query alone,
    (w^, D^, s^) = MLP(q_i)                 one tanh layer, then linear to 3K
    w = softmax(w^),  D = softplus(D^),  sigma = softplus(s^) + sigma_min
    kappa_i = kappa_{i-1} + D               (kappa_{-1} = 0; the means only move forward)
    alpha_i(j) = sum_k w_k N(j; kappa_ik, sigma_k^2)   j = 0..S-1; 0 at padding; not renormalised
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention.base import Attention, Memory, at_least_fp32, context, glorot_


class GMM(Attention):
    """State: the means kappa [B, K]."""

    sums_to_one = False

    def __init__(self, query_size: int, memory_size: int, mixtures: int = 5, units: int = 128,
                 sigma_min: float = 1e-2, **_: object):
        super().__init__(query_size, memory_size)
        if mixtures < 1:
            raise ValueError(f"attention.mixtures={mixtures}: needs at least one component")
        if sigma_min <= 0:
            raise ValueError(f"attention.sigma_min={sigma_min}: must be > 0")
        units = units or query_size
        self.mixtures, self.sigma_min = mixtures, sigma_min
        self.hidden = nn.Linear(query_size, units)
        self.params = nn.Linear(units, 3 * mixtures)
        glorot_(self.hidden.weight)
        glorot_(self.params.weight)
        nn.init.zeros_(self.hidden.bias)
        with torch.no_grad():
            self.params.bias.zero_()
            # softplus(log(e - 1)) = 1: the means start one source position per target step.
            self.params.bias[mixtures:2 * mixtures] = math.log(math.e - 1)

    def init_state(self, mem: Memory) -> Tensor:
        return torch.zeros(mem.mask.shape[0], self.mixtures,
                           dtype=at_least_fp32(mem.values).dtype, device=mem.mask.device)

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        assert state is not None, "gmm attention needs its previous means"
        raw = at_least_fp32(self.params(torch.tanh(self.hidden(query))))
        w_hat, delta_hat, sigma_hat = raw.chunk(3, dim=-1)                   # [B, K] each
        w = torch.softmax(w_hat, dim=-1)
        sigma = F.softplus(sigma_hat) + self.sigma_min
        kappa = state + F.softplus(delta_hat)
        j = torch.arange(mem.mask.shape[1], device=kappa.device, dtype=kappa.dtype)
        z = (j.view(1, 1, -1) - kappa.unsqueeze(-1)) / sigma.unsqueeze(-1)  # [B, K, S]
        density = torch.exp(-0.5 * z.square()) / (sigma.unsqueeze(-1) * math.sqrt(2 * math.pi))
        alpha = (w.unsqueeze(-1) * density).sum(dim=1) * mem.mask            # [B, S]
        return context(alpha, mem.values), alpha, kappa
