"""Embedding -> (bi)directional multi-layer GRU over packed sequences."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.model.dropout import drop_words
from nmt.precision import full_precision


class Encoder(nn.Module):
    def __init__(self, vocab_size: int, emb_size: int, hidden_size: int, layers: int,
                 bidirectional: bool, dropout: float, pad_id: int = 0, word_dropout: float = 0.0):
        super().__init__()
        directions = 2 if bidirectional else 1
        if hidden_size % directions:
            raise ValueError(f"encoder size {hidden_size} (model.enc_hidden_size or "
                             "model.hidden_size) must be even for a bidirectional encoder (each "
                             "direction gets half)")
        self.embed = nn.Embedding(vocab_size, emb_size, padding_idx=pad_id)
        self.rnn = nn.GRU(emb_size, hidden_size // directions, num_layers=layers,
                          batch_first=True, bidirectional=bidirectional,
                          dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.output_size = hidden_size
        self.layers, self.directions = layers, directions
        self.word_dropout = word_dropout

    def forward(self, src: Tensor, src_len: Tensor) -> tuple[Tensor, Tensor]:
        """src [B, S], src_len [B] (CPU) -> outputs [B, S, H] (0 at padding), final [L, B, H]."""
        x = self.dropout(drop_words(self.embed(src), self.word_dropout, self.training))
        packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        with full_precision(x.device):   # the recurrence in fp32, also under mixed precision
            out, h = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        # h: [L * dirs, B, H/dirs] -> [L, B, H] with both directions' final states side by side.
        h = h.view(self.layers, self.directions, h.shape[1], h.shape[2])
        h = torch.cat([h[:, d] for d in range(self.directions)], dim=-1)
        return self.dropout(out), h
