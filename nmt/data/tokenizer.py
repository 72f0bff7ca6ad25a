"""Joint SentencePiece model: trained once per corpus and settings, cached by a key."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path

import sentencepiece as spm

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    """Wraps a SentencePiece processor; ids 0..3 are pad, unk, bos, eos."""

    def __init__(self, model_proto: bytes):
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        return cls(Path(path).read_bytes())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, lines: list[str]) -> list[list[int]]:
        return self.sp.encode(lines)

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode([i for i in ids if i > EOS])

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in ids]


def settings_key(files: list[Path], vocab_size: int, model_type: str,
                 character_coverage: float) -> str:
    """A key that changes when the training files or the SentencePiece settings change."""
    stamp = [(str(f.resolve()), f.stat().st_size, int(f.stat().st_mtime)) for f in files]
    blob = json.dumps([stamp, vocab_size, model_type, character_coverage]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train_or_load(lines: list[str], key: str, cache_dir: str | os.PathLike, vocab_size: int,
                  model_type: str = "unigram", character_coverage: float = 1.0) -> Tokenizer:
    """Train a joint model on `lines` unless `cache_dir/spm-<key>.model` exists."""
    path = Path(cache_dir) / f"spm-{key}.model"
    if path.is_file():
        log.info("tokenizer from cache: %s", path)
        return Tokenizer.load(path)
    log.info("training SentencePiece (%s, %d pieces) on %d lines", model_type, vocab_size,
             len(lines))
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(line for line in lines if line.strip()),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        input_sentence_size=2_000_000, shuffle_input_sentence=True,
        hard_vocab_limit=False, minloglevel=2, num_threads=1,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(proto.getvalue())
    os.replace(tmp, path)
    return Tokenizer(proto.getvalue())
