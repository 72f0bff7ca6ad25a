"""Joint SentencePiece model: trained once per corpus and settings, cached by a key."""

from __future__ import annotations

import io
import logging
import os
import random
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from nmt.data.corpus import CorpusError, temp_path

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

    def encode(self, lines: list[str], threads: int = -1) -> list[list[int]]:
        """`threads`: SentencePiece's encoding threads for a list (-1: all cores)."""
        return self.sp.encode(lines, num_threads=threads)

    def decode(self, ids: list[int]) -> str:
        """Text of `ids`; pad, unk, bos and eos are left out (an unknown piece has no text, and
        SentencePiece's stand-in for it would count as a wrong word)."""
        return self.sp.decode([i for i in ids if i > EOS])

    def pieces(self, ids: list[int]) -> list[str]:
        return [self.sp.id_to_piece(i) for i in ids]


SAMPLE_SEED = 1


def train_or_load(lines: Iterable[str], key: str, cache_dir: str | os.PathLike,
                  vocab_size: int, model_type: str = "unigram", character_coverage: float = 1.0,
                  sample_size: int = 1_000_000) -> Tokenizer:
    """Train a joint model on `lines` unless `cache_dir/spm-<key>.model` exists.

    `lines` is read once as a stream (a generator over files keeps memory flat) into a sample
    of at most `sample_size` sentences drawn with a fixed seed: the same stream gives the same
    tokenizer in every process and on every machine, so builders of one cache agree, and runs
    trained on separate caches can be resumed, ensembled and averaged together.
    """
    path = Path(cache_dir) / f"spm-{key}.model"
    if path.is_file():
        log.info("tokenizer from cache: %s", path)
        return Tokenizer.load(path)
    log.info("training SentencePiece (%s, %d pieces) on a sample of at most %d sentences",
             model_type, vocab_size, sample_size)
    sample = reservoir((line for line in lines if line.strip()), sample_size)
    proto = io.BytesIO()
    try:
        _train(sample, proto, vocab_size, model_type, character_coverage, sample_size)
    except RuntimeError as err:
        # SentencePiece's own refusal, e.g. a vocabulary smaller than the corpus's characters
        reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CorpusError(f"data.vocab_size={vocab_size}, data.spm_model_type={model_type}: "
                          f"SentencePiece cannot train on this corpus ({reason})") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)   # concurrent builders each write (the same bytes)
    tmp.write_bytes(proto.getvalue())
    os.replace(tmp, path)
    return Tokenizer(proto.getvalue())


def reservoir(items: Iterable[str], size: int, seed: int = SAMPLE_SEED) -> list[str]:
    """A uniform sample of `size` items of a stream read once (all of them, in order, when there
    are no more). Drawn here rather than by SentencePiece, whose own sample (of an iterator)
    differed from process to process even after set_random_generator_seed."""
    rng = random.Random(seed)
    sample: list[str] = []
    for i, item in enumerate(items):
        if i < size:
            sample.append(item)
        elif (j := rng.randrange(i + 1)) < size:
            sample[j] = item
    return sample


def _train(sentences: list[str], writer: io.BytesIO, vocab_size: int, model_type: str,
           character_coverage: float, sample_size: int) -> None:
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=writer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
        # The sample is drawn already; these settings (SentencePiece takes all of a stream
        # this short, deterministically) keep the tokenizers of earlier versions.
        input_sentence_size=sample_size, shuffle_input_sentence=True,
        hard_vocab_limit=False, minloglevel=2, num_threads=1,
    )
