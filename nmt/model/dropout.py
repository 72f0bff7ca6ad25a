"""Word dropout: during training, a whole token's embedding is zeroed with probability p (the
same mask for every dimension), so the model cannot lean on any single input word."""

from __future__ import annotations

import torch
from torch import Tensor


def drop_words(emb: Tensor, p: float, training: bool) -> Tensor:
    """emb [B, T, E] -> emb with whole token vectors zeroed with probability p (not rescaled:
    a dropped word carries no information, as an unknown word would)."""
    if not training or p <= 0:
        return emb
    keep = torch.rand(emb.shape[:-1], device=emb.device) >= p
    return emb * keep.unsqueeze(-1).to(emb.dtype)
