"""GRU decoder with input feeding and the attentional vector tanh(W_c [c; s]) (TF/Luong wiring).

Per target step t:
    s_t      = GRU([E y_{t-1}; h~_{t-1}], s_{t-1})       (h~_0 = 0; input feeding)
    c_t, a_t = attention(query = s_t, memory, state)
    h~_t     = tanh(W_c [c_t; s_t])
and the output layer maps h~_t to the vocabulary after the loop, for all steps at once.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention import Attention, Memory


class DecoderState(NamedTuple):
    hidden: Tensor          # [L, B, H] GRU states
    feed: Tensor            # [B, H] previous attentional vector h~
    attn: Tensor | None     # mechanism state (batch on axis 0), or None

    def index_select(self, index: Tensor) -> DecoderState:
        return DecoderState(self.hidden.index_select(1, index), self.feed.index_select(0, index),
                            None if self.attn is None else self.attn.index_select(0, index))


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, emb_size: int, hidden_size: int, layers: int,
                 dropout: float, attention: Attention, input_feeding: bool = True,
                 pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.hidden_size, self.layers, self.input_feeding = hidden_size, layers, input_feeding
        in_size = emb_size + (hidden_size if input_feeding else 0)
        # Layer 0 is written out so the embedding half of its input projection can be
        # computed for all target steps at once, before the time loop.
        self.w_ih = nn.Parameter(torch.empty(3 * hidden_size, in_size))
        self.w_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.b_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.b_hh = nn.Parameter(torch.empty(3 * hidden_size))
        bound = hidden_size ** -0.5
        for p in (self.w_ih, self.w_hh, self.b_ih, self.b_hh):
            nn.init.uniform_(p, -bound, bound)
        self.upper = nn.ModuleList(nn.GRUCell(hidden_size, hidden_size) for _ in range(layers - 1))
        self.attention = attention
        self.combine = nn.Linear(attention.memory_size + hidden_size, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.emb_size = emb_size

    def init_state(self, hidden: Tensor, mem: Memory) -> DecoderState:
        B = hidden.shape[1]
        feed = hidden.new_zeros(B, self.hidden_size)
        return DecoderState(hidden, feed, self.attention.init_state(mem))

    def embed_inputs(self, tokens: Tensor) -> Tensor:
        """[B, T] target ids -> [B, T, 3H]: the embedding part of layer 0's input projection."""
        emb = self.dropout(self.embed(tokens))
        return F.linear(emb, self.w_ih[:, :self.emb_size], self.b_ih)

    def feed_weight(self) -> Tensor:
        """The input-feeding half of layer 0's input weights [3H, H]. Taken once per sequence:
        slicing inside the step would copy the weight, and its gradient, at every step."""
        return self.w_ih[:, self.emb_size:].contiguous()

    def step(self, x_proj: Tensor, state: DecoderState, mem: Memory, hard: bool = False,
             w_feed: Tensor | None = None) -> tuple[Tensor, Tensor, DecoderState]:
        """One step: x_proj [B, 3H] from `embed_inputs` -> (h~ [B, H], alpha [B, S], state)."""
        gi = x_proj
        if self.input_feeding:
            w = self.feed_weight() if w_feed is None else w_feed
            gi = gi + F.linear(state.feed, w)
        gh = F.linear(state.hidden[0], self.w_hh, self.b_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        s = n + z * (state.hidden[0] - n)
        hidden = [s]
        for cell in self.upper:
            s = cell(self.dropout(s), state.hidden[len(hidden)])
            hidden.append(s)
        ctx, alpha, attn_state = self.attention(s, mem, state.attn, hard=hard)
        out = self.dropout(torch.tanh(self.combine(torch.cat([ctx, s], dim=-1))))
        return out, alpha, DecoderState(torch.stack(hidden), out, attn_state)

    def forward(self, tgt_in: Tensor, state: DecoderState, mem: Memory
                ) -> tuple[Tensor, Tensor]:
        """Teacher forcing: tgt_in [B, T] -> attentional vectors [B, T, H], alignments [B, T, S]."""
        # unbind, not x_proj[:, t]: the gradient of each slice would be a zero-filled
        # [B, T, 3H] tensor per step (quadratic in T); unbind's gradient is one stack.
        w_feed = self.feed_weight() if self.input_feeding else None
        outs, alphas = [], []
        for x_t in self.embed_inputs(tgt_in).unbind(1):
            out, alpha, state = self.step(x_t, state, mem, w_feed=w_feed)
            outs.append(out)
            alphas.append(alpha)
        return torch.stack(outs, dim=1), torch.stack(alphas, dim=1)
