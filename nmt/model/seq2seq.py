"""The encoder-decoder: one class that reads top to bottom."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nmt.attention import Memory, build_attention
from nmt.attention.base import at_least_fp32
from nmt.model.decoder import DECODERS, BahdanauDecoder, DecoderState, LuongDecoder
from nmt.model.encoder import Encoder
from nmt.model.loss import smoothed_cross_entropy


@dataclass
class ModelSpec:
    vocab_size: int
    emb_size: int = 256
    hidden_size: int = 512
    enc_hidden_size: int = 0   # 0: hidden_size
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    input_feeding: bool = True
    tie_embeddings: bool = False
    word_dropout: float = 0.0  # probability of zeroing a whole source or target word embedding


class Seq2Seq(nn.Module):
    def __init__(self, spec: ModelSpec, attention: str, attention_options: dict | None = None,
                 pad_id: int = 0, decoder: dict | None = None):
        super().__init__()
        self.spec = spec
        self.pad_id = pad_id
        self.encoder = Encoder(spec.vocab_size, spec.emb_size,
                               spec.enc_hidden_size or spec.hidden_size, spec.enc_layers,
                               spec.bidirectional, spec.dropout, pad_id, spec.word_dropout)
        attn = build_attention(attention, spec.hidden_size, self.encoder.output_size,
                               **(attention_options or {}))
        decoder = {"name": "luong", **(decoder or {})}
        self.decoder_name = decoder["name"]
        if self.decoder_name == "luong":
            self.decoder = LuongDecoder(spec.vocab_size, spec.emb_size, spec.hidden_size,
                                        spec.dec_layers, spec.dropout, attn, spec.input_feeding,
                                        pad_id)
        elif self.decoder_name == "bahdanau":
            self.decoder = BahdanauDecoder(spec.vocab_size, spec.emb_size, spec.hidden_size,
                                           spec.dec_layers, spec.dropout, attn,
                                           decoder.get("readout_size", 0), pad_id)
        else:
            raise ValueError(f"decoder.name={self.decoder_name!r} is unknown; valid names: "
                             f"{', '.join(DECODERS)}")
        self.decoder.word_dropout = spec.word_dropout
        # Bridge: decoder layer l starts from tanh(W_b [final fwd; final bwd] of encoder layer).
        self.bridge = nn.Linear(self.encoder.output_size, spec.hidden_size)
        self.output = nn.Linear(self.decoder.out_size, spec.vocab_size)
        if spec.tie_embeddings:
            self.decoder.embed.weight = self.encoder.embed.weight
            if spec.emb_size == self.decoder.out_size:
                self.output.weight = self.decoder.embed.weight

    def encode(self, src: Tensor, src_len: Tensor) -> tuple[Memory, DecoderState]:
        """src [B, S], src_len [B] -> attention memory and the decoder's initial state."""
        out, final = self.encoder(src, src_len)
        mask = src != self.pad_id
        mem = self.decoder.attention.prepare(out, mask)
        # Top encoder layers feed the decoder layers when the depths differ.
        final = final[-self.spec.dec_layers:]
        if final.shape[0] < self.spec.dec_layers:
            final = final[-1:].expand(self.spec.dec_layers, -1, -1)
        hidden = at_least_fp32(torch.tanh(self.bridge(final))).contiguous()
        return mem, self.decoder.init_state(hidden, mem)

    def forward(self, src: Tensor, src_len: Tensor, tgt_in: Tensor) -> tuple[Tensor, Tensor]:
        """-> logits [B, T, V] and alignments [B, T, S]."""
        mem, state = self.encode(src, src_len)
        outs, alphas = self.decoder(tgt_in, state, mem)
        return self.output(outs), alphas

    def loss(self, src: Tensor, src_len: Tensor, tgt_in: Tensor, tgt_out: Tensor,
             label_smoothing: float = 0.0) -> tuple[Tensor, Tensor]:
        """Summed label-smoothed cross-entropy and summed plain NLL over real target tokens."""
        mem, state = self.encode(src, src_len)
        outs, _ = self.decoder(tgt_in, state, mem)
        real = tgt_out != self.pad_id
        # Only real positions reach the output layer, the largest matmul of the model.
        logits = at_least_fp32(self.output(outs[real]))                   # [N, V]
        loss, nll = smoothed_cross_entropy(logits, tgt_out[real], label_smoothing)
        return loss.sum(), nll.sum()

    def head_alignments(self, state: DecoderState) -> Tensor | None:
        """Per-head alignments [B, H, S] of the last step, for multi-head mechanisms."""
        return self.decoder.attention.head_alignments(state.attn)

    def step_logits(self, tokens: Tensor, state: DecoderState, mem: Memory, hard: bool = True
                    ) -> tuple[Tensor, Tensor, Tensor, DecoderState]:
        """One decoding step: tokens [B] -> logits [B, V] and their log-normaliser [B]
        (log-probs = logits - norm), alignment [B, S], new state. The search ranks raw logits and
        normalises only the few it keeps, sparing two passes over [B, V]."""
        x_proj = self.decoder.embed_inputs(tokens.unsqueeze(1)).squeeze(1)
        out, alpha, state = self.decoder.step(x_proj, state, mem, hard=hard)
        logits = self.output(out).float()
        return logits, torch.logsumexp(logits, dim=-1), alpha, state

    def step_logprobs(self, tokens: Tensor, state: DecoderState, mem: Memory, hard: bool = True
                      ) -> tuple[Tensor, Tensor, DecoderState]:
        """One decoding step: tokens [B] -> log-probs [B, V], alignment [B, S], new state."""
        logits, norm, alpha, state = self.step_logits(tokens, state, mem, hard)
        return logits - norm.unsqueeze(1), alpha, state


def build_model(model_cfg: dict, attention_cfg: dict, vocab_size: int,
                decoder_cfg: dict | None = None) -> Seq2Seq:
    """A model from plain config dicts (as stored in checkpoints; None: the Luong decoder)."""
    options = {k: v for k, v in attention_cfg.items() if k != "name"}
    spec = ModelSpec(vocab_size=vocab_size, **model_cfg)
    return Seq2Seq(spec, attention_cfg["name"], options, decoder=dict(decoder_cfg or {}))
