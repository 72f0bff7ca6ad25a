"""Data for a training run: the training cache, validation and test text, Multi30k download."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from nmt.config import DataConfig
from nmt.data.corpus import (
    MULTI30K_SHA256,
    CorpusError,
    download_multi30k,
    find_file,
    read_parallel,
)
from nmt.data.dataset import Encoded, encode_pairs
from nmt.data.preprocess import log_skipped, prepare_corpus
from nmt.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass
class Split:
    src_path: Path
    tgt_path: Path
    src: list[str]
    tgt: list[str]


@dataclass
class Data:
    tokenizer: Tokenizer
    train: Encoded
    valid: Split
    valid_enc: Encoded
    tests: dict[str, Split] = field(default_factory=dict)


def split_paths(cfg: DataConfig, split: str) -> tuple[Path, Path]:
    explicit = {"train": (cfg.train_src, cfg.train_tgt), "valid": (cfg.valid_src, cfg.valid_tgt)}
    src, tgt = explicit.get(split, (None, None))
    if src or tgt:
        if not (src and tgt):
            raise CorpusError(f"data.{split}_src and data.{split}_tgt must be given together")
        check_direction(cfg, split, src, tgt)
        return Path(src), Path(tgt)
    if split == "valid" and cfg.train_src:
        # Validation chooses best.pt and stops training: never silently another corpus's.
        raise CorpusError(f"data.valid_src and data.valid_tgt are required with data.train_src "
                          f"(else validation would read {cfg.valid}.{cfg.src_lang} from "
                          f"data.root={cfg.root})")
    name = {"train": cfg.train, "valid": cfg.valid}.get(split, split)
    return find_file(cfg.root, name, cfg.src_lang), find_file(cfg.root, name, cfg.tgt_lang)


def check_direction(cfg: DataConfig, split: str, src: str, tgt: str) -> None:
    """Files named like the other direction (train.de as data.train_src of an en->de pair)."""
    def lang(path: str) -> str:
        parts = Path(path).name.removesuffix(".gz").rsplit(".", 1)
        return parts[1] if len(parts) == 2 else ""

    swapped = (lang(src), lang(tgt)) == (cfg.tgt_lang, cfg.src_lang)
    if swapped and cfg.src_lang != cfg.tgt_lang:
        raise CorpusError(f"data.{split}_src={src} and data.{split}_tgt={tgt} look like the "
                          f"{cfg.tgt_lang}->{cfg.src_lang} direction, but data.src_lang="
                          f"{cfg.src_lang} and data.tgt_lang={cfg.tgt_lang}: swap the files or "
                          "set the languages")


def ensure_corpus(cfg: DataConfig, splits: list[str] | None = None) -> None:
    """Download Multi30k into data.root when it is the corpus asked for and files of `splits`
    (default: training, validation and data.test) are missing."""
    if cfg.train_src or not cfg.download:
        return
    wanted = [f"{s}.{lang}.gz" for s in (splits or [cfg.train, cfg.valid, *cfg.test])
              for lang in (cfg.src_lang, cfg.tgt_lang)]
    missing = [n for n in wanted if not any((Path(cfg.root) / m).is_file()
                                            for m in (n, n[:-3]))]
    # Another name among them: not Multi30k but the user's own corpus, whose missing files
    # are reported as such (data.test first) rather than half-downloaded.
    if missing and all(n in MULTI30K_SHA256 for n in missing):
        download_multi30k(cfg.root, missing)


def load_split(cfg: DataConfig, split: str, limit: int = 0) -> Split:
    src_path, tgt_path = split_paths(cfg, split)
    src, tgt = read_parallel(src_path, tgt_path)
    if limit:
        src, tgt = src[:limit], tgt[:limit]
    return Split(src_path, tgt_path, src, tgt)


def prepare_data(cfg: DataConfig, threads: int = -1) -> Data:
    """Tokenizer and encoded training pairs from the preprocessing cache (built when missing,
    see nmt.data.preprocess), and the validation and test text."""
    ensure_corpus(cfg)
    for name in cfg.test:   # before hours of training, not after
        try:
            split_paths(cfg, name)
        except CorpusError as err:
            raise CorpusError(f"data.test: {name}: {err}; list only test sets that exist "
                              "(data.test=[] for none)") from err
    valid = load_split(cfg, "valid", cfg.valid_limit)
    train = prepare_corpus(cfg, *split_paths(cfg, "train"), threads=threads)
    log_skipped(train.info)
    tok, train_enc = train.tokenizer, train.train
    valid_enc, _ = encode_pairs(tok, valid.src, valid.tgt)
    log.info("train: %d pairs, %d target pieces; valid: %d pairs (%s); vocabulary %d",
             len(train_enc), int(train_enc.tgt_lens.sum()), len(valid.src), valid.src_path,
             len(tok))
    tests = {name: load_split(cfg, name) for name in cfg.test}
    for name, split in tests.items():
        log.info("test %s: %d pairs (%s)", name, len(split.src), split.src_path)
    return Data(tok, train_enc, valid, valid_enc, tests)
