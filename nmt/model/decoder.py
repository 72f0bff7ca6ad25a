"""The two decoders. Both expose the same methods (init_state, embed_inputs, step, forward) and
an `out_size`, the width of what the output layer reads.

LuongDecoder (TF/Luong wiring), per target step t:
    s_t      = GRU([E y_{t-1}; h~_{t-1}], s_{t-1})       (h~_0 = 0; input feeding)
    c_t, a_t = attention(query = s_t, memory, state)
    h~_t     = tanh(W_c [c_t; s_t])
BahdanauDecoder (Bahdanau et al. 2015, spec part 2 section 12):
    c_t, a_t = attention(query = s_{t-1}, memory, state)
    s_t      = GRU([E y_{t-1}; c_t], s_{t-1})
    t_t      = maxout_2(U_o s_t + V_o E y_{t-1} + C_o c_t)
and the output layer maps h~_t (or t_t) to the vocabulary after the loop, for all steps at once.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.attention import Attention, Memory
from nmt.attention.base import at_least_fp32
from nmt.model.dropout import drop_words
from nmt.precision import full_precision


class DecoderState(NamedTuple):
    hidden: Tensor          # [L, B, H] GRU states
    feed: Tensor | None     # [B, H] previous attentional vector h~ (Luong decoder), or None
    attn: Tensor | None     # mechanism state (batch on axis 0), or None

    def index_select(self, index: Tensor) -> DecoderState:
        return DecoderState(self.hidden.index_select(1, index),
                            None if self.feed is None else self.feed.index_select(0, index),
                            None if self.attn is None else self.attn.index_select(0, index))


def gru_cell(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """torch.nn.GRUCell's update, given the input projection gi [B, 3H] (so callers can build it
    from precomputed parts). Under mixed precision the products may be bfloat16; the gates
    and the state are computed in (at least) float32, so rounding does not accumulate."""
    gi, gh = at_least_fp32(gi), at_least_fp32(F.linear(h, w_hh, b_hh))
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return n + z * (h - n)


def upper_cell(cell: nn.GRUCell, x: Tensor, h: Tensor) -> Tensor:
    """A GRU layer above the first, in float32 also under mixed precision."""
    with full_precision(h.device):
        return cell(at_least_fp32(x), h)


def add_gru_layer(module: nn.Module, in_size: int, hidden_size: int) -> None:
    """GRU layer 0's parameters w_ih [3H, in], w_hh [3H, H], b_ih, b_hh on `module`, initialised
    as torch.nn.GRU does (U(-1/sqrt(H), 1/sqrt(H)))."""
    module.w_ih = nn.Parameter(torch.empty(3 * hidden_size, in_size))
    module.w_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
    module.b_ih = nn.Parameter(torch.empty(3 * hidden_size))
    module.b_hh = nn.Parameter(torch.empty(3 * hidden_size))
    bound = hidden_size ** -0.5
    for p in (module.w_ih, module.w_hh, module.b_ih, module.b_hh):
        nn.init.uniform_(p, -bound, bound)


class LuongDecoder(nn.Module):
    def __init__(self, vocab_size: int, emb_size: int, hidden_size: int, layers: int,
                 dropout: float, attention: Attention, input_feeding: bool = True,
                 pad_id: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.hidden_size, self.layers, self.input_feeding = hidden_size, layers, input_feeding
        in_size = emb_size + (hidden_size if input_feeding else 0)
        # Layer 0 is written out so the embedding half of its input projection can be
        # computed for all target steps at once, before the time loop.
        add_gru_layer(self, in_size, hidden_size)
        self.upper = nn.ModuleList(nn.GRUCell(hidden_size, hidden_size) for _ in range(layers - 1))
        self.attention = attention
        self.combine = nn.Linear(attention.memory_size + hidden_size, hidden_size, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.emb_size = emb_size
        self.out_size = hidden_size
        self.word_dropout = 0.0   # set by the model (training only)

    def init_state(self, hidden: Tensor, mem: Memory) -> DecoderState:
        B = hidden.shape[1]
        feed = hidden.new_zeros(B, self.hidden_size)
        return DecoderState(hidden, feed, self.attention.init_state(mem))

    def embed_inputs(self, tokens: Tensor) -> Tensor:
        """[B, T] target ids -> [B, T, 3H]: the embedding part of layer 0's input projection."""
        emb = self.dropout(drop_words(self.embed(tokens), self.word_dropout, self.training))
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
        s = gru_cell(gi, state.hidden[0], self.w_hh, self.b_hh)
        hidden = [s]
        for cell in self.upper:
            s = upper_cell(cell, self.dropout(s), state.hidden[len(hidden)])
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


class BahdanauDecoder(nn.Module):
    """Bahdanau et al. (2015): the previous state queries, the context enters every GRU gate of
    layer 0 (the top layer's state is the query), and a maxout readout of (s_t, E y_{t-1}, c_t)
    feeds the output layer. No input feeding: the context is the feed."""

    def __init__(self, vocab_size: int, emb_size: int, hidden_size: int, layers: int,
                 dropout: float, attention: Attention, readout_size: int = 0, pad_id: int = 0):
        super().__init__()
        if readout_size < 0:
            raise ValueError(f"decoder.readout_size={readout_size}: must be >= 0 "
                             "(0: hidden_size / 2)")
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.hidden_size, self.layers, self.emb_size = hidden_size, layers, emb_size
        ctx_size = attention.memory_size
        # Layer 0 written out, as in LuongDecoder: the embedding half of its input projection
        # is computed for all target steps before the loop, the context half per step.
        add_gru_layer(self, emb_size + ctx_size, hidden_size)
        self.upper = nn.ModuleList(nn.GRUCell(hidden_size, hidden_size) for _ in range(layers - 1))
        self.attention = attention
        self.out_size = readout_size or max(hidden_size // 2, 1)   # l
        self.readout_emb = nn.Linear(emb_size, 2 * self.out_size)                    # V_o, bias
        self.readout_state = nn.Linear(hidden_size + ctx_size, 2 * self.out_size,
                                       bias=False)                                   # [U_o C_o]
        self.dropout = nn.Dropout(dropout)
        self.word_dropout = 0.0   # set by the model (training only)

    def init_state(self, hidden: Tensor, mem: Memory) -> DecoderState:
        return DecoderState(hidden, None, self.attention.init_state(mem))

    def embed_inputs(self, tokens: Tensor) -> Tensor:
        """[B, T] target ids -> [B, T, 3H + 2l]: layer 0's and the readout's embedding parts."""
        emb = self.dropout(drop_words(self.embed(tokens), self.word_dropout, self.training))
        return torch.cat([F.linear(emb, self.w_ih[:, :self.emb_size], self.b_ih),
                          self.readout_emb(emb)], dim=-1)

    def context_weight(self) -> Tensor:
        """The context half of layer 0's input weights [3H, D_m], taken once per sequence."""
        return self.w_ih[:, self.emb_size:].contiguous()

    def recur(self, gi_emb: Tensor, state: DecoderState, mem: Memory, hard: bool,
              w_ctx: Tensor) -> tuple[Tensor, Tensor, DecoderState]:
        """Attend with s_{t-1}, then update the GRU: -> (c_t, alpha_t, state with s_t)."""
        ctx, alpha, attn_state = self.attention(state.hidden[-1], mem, state.attn, hard=hard)
        s = gru_cell(gi_emb + F.linear(ctx, w_ctx), state.hidden[0], self.w_hh, self.b_hh)
        hidden = [s]
        for cell in self.upper:
            s = upper_cell(cell, self.dropout(s), state.hidden[len(hidden)])
            hidden.append(s)
        return ctx, alpha, DecoderState(torch.stack(hidden), None, attn_state)

    def readout(self, r_emb: Tensor, s: Tensor, ctx: Tensor) -> Tensor:
        """maxout over pairs of U_o s + V_o E y + C_o c: [..., 2l] -> [..., l]."""
        t = r_emb + self.readout_state(torch.cat([s, ctx], dim=-1))
        return self.dropout(t.unflatten(-1, (self.out_size, 2)).amax(dim=-1))

    def step(self, x_proj: Tensor, state: DecoderState, mem: Memory, hard: bool = False,
             w_feed: Tensor | None = None) -> tuple[Tensor, Tensor, DecoderState]:
        """One step: x_proj [B, 3H + 2l] from `embed_inputs` -> (t [B, l], alpha [B, S], state)."""
        w_ctx = self.context_weight() if w_feed is None else w_feed
        gi_emb, r_emb = x_proj.split([3 * self.hidden_size, 2 * self.out_size], dim=-1)
        ctx, alpha, state = self.recur(gi_emb, state, mem, hard, w_ctx)
        return self.readout(r_emb, state.hidden[-1], ctx), alpha, state

    def forward(self, tgt_in: Tensor, state: DecoderState, mem: Memory
                ) -> tuple[Tensor, Tensor]:
        """Teacher forcing: tgt_in [B, T] -> readouts [B, T, l], alignments [B, T, S]."""
        gi_emb, r_emb = self.embed_inputs(tgt_in).split(
            [3 * self.hidden_size, 2 * self.out_size], dim=-1)
        w_ctx = self.context_weight()
        states, ctxs, alphas = [], [], []
        for g_t in gi_emb.unbind(1):
            ctx, alpha, state = self.recur(g_t, state, mem, False, w_ctx)
            states.append(state.hidden[-1])
            ctxs.append(ctx)
            alphas.append(alpha)
        # The readout does not feed back into the recurrence: one matmul for all steps.
        out = self.readout(r_emb, torch.stack(states, dim=1), torch.stack(ctxs, dim=1))
        return out, torch.stack(alphas, dim=1)


DECODERS = ("luong", "bahdanau")
