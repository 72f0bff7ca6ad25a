"""Preprocessing a training corpus once: validate, train SentencePiece, encode to disk.

The result lives in `data.cache_dir`; training memory-maps the offsets and reads a batch's
sentences from the id files (see IdsFile), so a corpus of millions of pairs costs neither the
text nor Python lists in memory, and a second start reads no text:

    digests.json        file path, size and mtime -> SHA-256 of its bytes (the content key
                        without reading the file again)
    spm-<key>.model     the tokenizer; key: training files' content + SentencePiece settings
    train-<key>/        the encoded pairs; key: the tokenizer's key + data.max_len
        src_ids.npy     int32, every kept source sentence back to back (no BOS/EOS)
        src_off.npy     int64 [N+1]: sentence i is src_ids[src_off[i]:src_off[i+1]]
        tgt_ids.npy, tgt_off.npy
        info.json       counts (pairs read, kept, skipped); written last, so a folder with it
                        is complete
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

from nmt.config import DataConfig
from nmt.data import corpus
from nmt.data.dataset import Encoded
from nmt.data.tokenizer import Tokenizer, train_or_load

log = logging.getLogger(__name__)

FORMAT = 2  # bump when the layout or the encoding changes, so old caches are not reused
SIDES = ("src_ids", "src_off", "tgt_ids", "tgt_off")


@dataclass
class Corpus:
    tokenizer: Tokenizer
    train: Encoded
    info: dict      # the folder's info.json
    folder: Path


def file_digest(path: Path, cache_dir: Path) -> str:
    """SHA-256 of the file's bytes, remembered in `cache_dir/digests.json` by path, size and
    modification time, so an unchanged file is not read again."""
    index_path = cache_dir / "digests.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    if path.is_dir():
        raise corpus.CorpusError(f"{path}: a folder, not a file")
    if path.exists() and not path.is_file():
        raise corpus.CorpusError(f"{path}: not a regular file (a pipe?); training data is read "
                                 "more than once, so give a file")
    if not path.is_file():
        raise corpus.CorpusError(f"{path}: file not found")
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    name = str(path.resolve())
    entry = index.get(name)
    if entry and entry["stamp"] == stamp:
        return entry["sha256"]
    digest = corpus.sha256(path)
    index[name] = {"stamp": stamp, "sha256": digest}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = corpus.temp_path(index_path)
    tmp.write_text(json.dumps(index, indent=0))
    os.replace(tmp, index_path)
    return digest


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([FORMAT, *parts]).encode()).hexdigest()[:16]


def cache_keys(cfg: DataConfig, src: Path, tgt: Path) -> tuple[str, str]:
    """(tokenizer key, encoded-corpus key): they change when the content of the training files,
    `data.train_limit`, the SentencePiece settings or (the second) `data.max_len` change."""
    cache = Path(cfg.cache_dir)
    tok_key = _key(file_digest(src, cache), file_digest(tgt, cache), cfg.train_limit,
                   cfg.vocab_size, cfg.spm_model_type, cfg.character_coverage,
                   cfg.spm_sample_size)
    return tok_key, _key(tok_key, cfg.max_len)


def prepare_corpus(cfg: DataConfig, src: Path, tgt: Path, threads: int = -1) -> Corpus:
    """The tokenizer and encoded training pairs from the cache, built first if missing.

    `threads`: SentencePiece encoding threads (-1: all cores)."""
    cache = Path(cfg.cache_dir)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise corpus.CorpusError(f"data.cache_dir={cache}: cannot create it "
                                 f"({err.strerror or err})") from err
    tok_key, enc_key = cache_keys(cfg, src, tgt)
    folder = cache / f"train-{enc_key}"
    if not (folder / "info.json").is_file():
        tok = train_or_load(_sample_stream(src, tgt, cfg.train_limit), tok_key, cache,
                            cfg.vocab_size, cfg.spm_model_type, cfg.character_coverage,
                            cfg.spm_sample_size)
        build(tok, src, tgt, folder, cfg.max_len, cfg.train_limit, threads)
    encoded = load(folder, cache / f"spm-{tok_key}.model")
    if len(encoded.tokenizer) < cfg.vocab_size:
        # SentencePiece stops early (hard_vocab_limit=False) when the text has too few pieces.
        log.warning("the SentencePiece vocabulary has %d pieces, fewer than the %d asked for "
                    "(data.vocab_size): the training text is too small for more",
                    len(encoded.tokenizer), cfg.vocab_size)
    return encoded


def load(folder: Path, spm_path: Path) -> Corpus:
    try:
        info = json.loads((folder / "info.json").read_text())
        tok = Tokenizer.load(spm_path)
        arrays = [IdsFile(folder / f"{name}.npy") if name.endswith("ids")
                  else np.load(folder / f"{name}.npy", mmap_mode="r") for name in SIDES]
    except (OSError, ValueError, EOFError, KeyError, RuntimeError) as err:
        raise corpus.CorpusError(f"{folder}: the cache is damaged ({err}); delete {folder} "
                                 f"and {spm_path} to rebuild them") from err
    if hashlib.sha256(tok.proto).hexdigest() != info.get("tokenizer_sha256"):
        raise corpus.CorpusError(f"{spm_path} is not the tokenizer {folder} was encoded with; "
                                 "delete both to rebuild them")
    log.info("encoded corpus from cache: %s", folder)
    return Corpus(tok, Encoded(*arrays), info, folder)


class IdsFile:
    """A flat .npy id array on disk, read a slice (a sentence) at a time with pread.

    Not memory-mapped like the offsets: Linux maps the whole page-cache folio (up to 2 MB)
    around every read through a file mapping, so random sentence reads soon count the whole
    file in the process's resident memory; pread copies just the sentence.
    """

    def __init__(self, path: Path):
        header = np.load(path, mmap_mode="r")  # checks the header; where the data starts
        self.path, self.dtype, self.length = path, header.dtype, len(header)
        self.start = header.offset
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, span: slice) -> np.ndarray:
        a, b = int(span.start), int(span.stop)
        size = self.dtype.itemsize
        return np.frombuffer(os.pread(self.fd, (b - a) * size, self.start + a * size),
                             self.dtype)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        return np.asarray(np.load(self.path, mmap_mode="r"), dtype=dtype)

    def __del__(self) -> None:
        if hasattr(self, "fd"):
            os.close(self.fd)


def _sample_stream(src: Path, tgt: Path, limit: int) -> Iterator[str]:
    """Both sides of the first `limit` pairs (all if 0) for SentencePiece; the whole files are
    read, so a bad line or a line-count mismatch anywhere stops before anything is trained."""
    bar = tqdm(desc="reading for SentencePiece", unit=" pairs", unit_scale=True, disable=None)
    for i, (s, t) in enumerate(corpus.iter_parallel(src, tgt)):
        if not limit or i < limit:
            yield s
            yield t
        bar.update(1)
    bar.close()


class NpyWriter:
    """A 1-D .npy file written in pieces. numpy leaves room in the header for a longer shape, so
    the header is rewritten in place with the final length when the file is closed."""

    def __init__(self, path: Path, dtype: type):
        self.dtype = np.dtype(dtype)
        self.length = 0
        self.file: BinaryIO = open(path, "wb")
        self.data_start = self._write_header()

    def _write_header(self) -> int:
        self.file.seek(0)
        np.lib.format.write_array_header_1_0(self.file, {
            "descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
            "shape": (self.length,)})
        return self.file.tell()

    def append(self, values: np.ndarray) -> None:
        values.astype(self.dtype, copy=False).tofile(self.file)
        self.length += len(values)

    def close(self) -> None:
        end = self.file.tell()
        if self._write_header() != self.data_start:
            raise AssertionError(f"{self.file.name}: .npy header changed size")
        self.file.seek(end)
        self.file.close()


def build(tok: Tokenizer, src: Path, tgt: Path, folder: Path, max_len: int | None,
          limit: int = 0, threads: int = -1, chunk: int = 50_000) -> dict:
    """Encode the pairs `chunk` at a time into `folder` (see the module docstring); pairs with an
    empty side or a side longer than `max_len` pieces are skipped and counted."""
    start = time.time()
    tmp = corpus.temp_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        writers = {name: NpyWriter(tmp / f"{name}.npy", np.int64 if name.endswith("off")
                                   else np.int32) for name in SIDES}
        writers["src_off"].append(np.zeros(1))
        writers["tgt_off"].append(np.zeros(1))
        totals = {"src_off": 0, "tgt_off": 0}
        counts = {"pairs": 0, "kept": 0, "empty": 0, "too_long": 0}
        pairs = corpus.iter_parallel(src, tgt)
        if limit:
            pairs = _validate_rest(pairs, limit)
        bar = tqdm(desc="encoding", unit=" pairs", unit_scale=True, disable=None)
        for batch in _chunks(pairs, chunk):
            s_ids = tok.encode([s for s, _ in batch], threads)
            t_ids = tok.encode([t for _, t in batch], threads)
            s_len = np.fromiter(map(len, s_ids), np.int64, len(s_ids))
            t_len = np.fromiter(map(len, t_ids), np.int64, len(t_ids))
            empty = (s_len == 0) | (t_len == 0)
            too_long = np.zeros_like(empty)
            if max_len is not None:
                too_long = ~empty & ((s_len > max_len) | (t_len > max_len))
            keep = ~empty & ~too_long
            for side, ids, lens in (("src", s_ids, s_len), ("tgt", t_ids, t_len)):
                kept = list(itertools.compress(ids, keep))
                flat = itertools.chain.from_iterable(kept)
                writers[f"{side}_ids"].append(np.fromiter(flat, np.int32, int(lens[keep].sum())))
                off = totals[f"{side}_off"] + np.cumsum(lens[keep])
                writers[f"{side}_off"].append(off)
                if len(off):
                    totals[f"{side}_off"] = int(off[-1])
            counts["pairs"] += len(batch)
            counts["kept"] += int(keep.sum())
            counts["empty"] += int(empty.sum())
            counts["too_long"] += int(too_long.sum())
            bar.update(len(batch))
        bar.close()
        for w in writers.values():
            w.close()
        if counts["pairs"] and not counts["kept"]:
            raise corpus.CorpusError(
                f"{src}, {tgt}: no training pairs left: all {counts['pairs']} have an empty "
                f"side ({counts['empty']}) or one longer than data.max_len={max_len} pieces "
                f"({counts['too_long']})")
        info = {**counts, "max_len": max_len, "limit": limit, "src_tokens": totals["src_off"],
                "tgt_tokens": totals["tgt_off"], "files": [str(src), str(tgt)],
                "tokenizer_sha256": hashlib.sha256(tok.proto).hexdigest(),
                "seconds": round(time.time() - start, 2)}
        (tmp / "info.json").write_text(json.dumps(info, indent=1))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process finished the same folder first
            if not (folder / "info.json").is_file():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log_skipped(info)
    log.info("encoded %d pairs into %s in %.1f s", info["kept"], folder, info["seconds"])
    return info


def log_skipped(info: dict) -> None:
    if info["empty"] or info["too_long"]:
        log.info("skipped %d empty and %d over-long (> %s pieces) training pairs of %d",
                 info["empty"], info["too_long"], info["max_len"], info["pairs"])


def _validate_rest(pairs: Iterator[tuple[str, str]], limit: int) -> Iterator[tuple[str, str]]:
    """The first `limit` pairs; the rest is still read, so its errors are reported."""
    for i, pair in enumerate(pairs):
        if i < limit:
            yield pair


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    while batch := list(itertools.islice(items, size)):
        yield batch
