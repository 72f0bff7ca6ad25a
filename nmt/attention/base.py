"""The one attention interface every mechanism implements, and shared helpers."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class Memory(NamedTuple):
    """Per-batch attention inputs, computed once by `Attention.prepare` (and tiled for beams)."""

    keys: Tensor    # [B, S, K] mechanism-specific projection of the encoder outputs
    values: Tensor  # [B, S, D_m] encoder outputs, exactly zero at padded positions
    mask: Tensor    # [B, S] bool, True = real token

    def index_select(self, index: Tensor) -> Memory:
        return Memory(*(t.index_select(0, index) for t in self))


def at_least_fp32(x: Tensor) -> Tensor:
    """Scores and recurrences run in fp32 even under half precision; fp64 stays fp64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis with padded positions at exactly zero."""
    scores = at_least_fp32(scores).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def context(alpha: Tensor, values: Tensor) -> Tensor:
    """c_b = sum_j alpha_bj V_bj: [B, S] x [B, S, D] -> [B, D]."""
    return torch.bmm(alpha.unsqueeze(1).to(values.dtype), values).squeeze(1)


class Attention(nn.Module):
    """Base class. State, if any, is a tensor with the batch on axis 0 (beam search reorders it).

    prepare(memory, mask) -> Memory      once per batch
    init_state(mem) -> state | None      the initial alignment state
    forward(query, mem, state, hard)     -> (context [B, D_m], alpha [B, S], state')
    """

    sums_to_one = True   # alpha is a distribution (False: sums to at most 1, or unnormalised)

    def __init__(self, query_size: int, memory_size: int):
        super().__init__()
        self.query_size = query_size
        self.memory_size = memory_size

    def prepare(self, memory: Tensor, mask: Tensor) -> Memory:
        # Sources are right-padded: an empty one would make every alignment NaN.
        if not bool(mask[:, 0].all()):
            raise ValueError("attention needs at least one source position per sentence")
        values = memory * mask.unsqueeze(-1).to(memory.dtype)
        return Memory(self.project_keys(values), values, mask)

    def project_keys(self, values: Tensor) -> Tensor:
        return values

    def init_state(self, mem: Memory) -> Tensor | None:
        return None

    def forward(self, query: Tensor, mem: Memory, state: Tensor | None = None,
                hard: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        raise NotImplementedError

    def head_alignments(self, state: Tensor | None) -> Tensor | None:
        """Per-head alignments [B, H, S] of the step that returned `state` (multi-head only)."""
        return None


def glorot_(weight: Tensor) -> Tensor:
    return nn.init.xavier_uniform_(weight)


def glorot_vector_(v: Tensor) -> Tensor:
    """Keras Glorot-uniform of a 1-D [d] kernel (fan_in = fan_out = d): bound sqrt(3 / d)."""
    bound = (3.0 / v.numel()) ** 0.5
    return nn.init.uniform_(v, -bound, bound)
