"""Preprocessing: streamed build of the memory-mapped cache, its keys, and errors."""

import gzip
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nmt.config import DataConfig
from nmt.data import corpus, prepare, preprocess
from nmt.data.corpus import CorpusError, iter_lines, iter_parallel, read_lines
from nmt.data.dataset import encode_pairs
from nmt.data.prepare import split_paths
from nmt.data.preprocess import NpyWriter, build, cache_keys, prepare_corpus
from nmt.data.tokenizer import train_or_load
from tests.conftest import write
from tests.test_dataset import SRC, TGT


def lines(items):
    return "".join(x + "\n" for x in items)


@pytest.fixture
def files(tmp_path):
    src = write(tmp_path / "train.en", lines(SRC))
    tgt = write(tmp_path / "train.de.gz", gzip.compress(lines(TGT).encode()))
    return src, tgt


def data_config(tmp_path, **kw) -> DataConfig:
    return replace(DataConfig(), cache_dir=str(tmp_path / "cache"), vocab_size=120, **kw)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_or_load(SRC + TGT, "p", tmp_path_factory.mktemp("spm"), vocab_size=120)


def test_chunked_build_equals_encoding_in_memory(tmp_path, tok):
    src = SRC[:40] + ["", "a dog", "the red dog " * 40, "  "]
    tgt = TGT[:40] + ["etwas", "", "der rote hund", "ein hund"]
    s = write(tmp_path / "s.txt", lines(src))
    t = write(tmp_path / "t.txt", lines(tgt))
    info = build(tok, s, t, tmp_path / "enc", max_len=30, threads=1, chunk=7)
    want, skipped = encode_pairs(tok, src, tgt, max_len=30)
    spm_path = write(tmp_path / "spm.model", tok.proto)
    got = preprocess.load(tmp_path / "enc", spm_path).train
    for name in preprocess.SIDES:
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    for i in range(len(want)):
        assert np.array_equal(got.src(i), want.src(i)) and np.array_equal(got.tgt(i), want.tgt(i))
    assert isinstance(got.src_off, np.memmap)
    assert (info["empty"], info["too_long"]) == (skipped["empty"], skipped["too_long"])
    assert skipped["empty"] == 3 and skipped["too_long"] >= 1
    assert info["pairs"] == 44 and info["kept"] == len(want) == 44 - sum(skipped.values())
    assert not list(tmp_path.glob("enc.*.tmp"))


def test_npy_writer_header_grows_in_place(tmp_path):
    w = NpyWriter(tmp_path / "a.npy", np.int64)
    for k in range(3):
        w.append(np.arange(k * 100_000, (k + 1) * 100_000))
    w.close()
    assert np.array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), np.arange(300_000))


def test_second_start_reads_no_text(tmp_path, files, monkeypatch):
    cfg = data_config(tmp_path)
    first = prepare_corpus(cfg, *files, threads=1)

    def no_reading(*args, **kw):
        raise AssertionError("the text was read again")

    monkeypatch.setattr(corpus, "iter_lines", no_reading)
    monkeypatch.setattr(corpus, "sha256", no_reading)
    again = prepare_corpus(cfg, *files, threads=1)
    assert again.folder == first.folder
    assert again.tokenizer.proto == first.tokenizer.proto
    assert np.array_equal(again.train.tgt_ids, first.train.tgt_ids)


def test_cache_keys_follow_content_and_settings(tmp_path, files):
    cfg = data_config(tmp_path)
    tok_key, enc_key = cache_keys(cfg, *files)
    assert cache_keys(cfg, *files) == (tok_key, enc_key)
    assert cache_keys(replace(cfg, max_len=50), *files)[0] == tok_key  # no new tokenizer
    assert cache_keys(replace(cfg, max_len=50), *files)[1] != enc_key
    for changed in (replace(cfg, vocab_size=100), replace(cfg, spm_model_type="bpe"),
                    replace(cfg, character_coverage=0.99), replace(cfg, spm_sample_size=10),
                    replace(cfg, train_limit=10)):
        assert cache_keys(changed, *files)[0] != tok_key
    # Same size, new content (a different file's mtime may even be the same second).
    src = files[0]
    src.write_text(src.read_text().replace("red", "tan"))
    assert cache_keys(cfg, *files)[0] != tok_key
    # The same bytes under another name share the cache.
    copy = write(tmp_path / "copy.en", src.read_bytes())
    assert cache_keys(cfg, copy, files[1]) == cache_keys(cfg, *files)


def test_train_limit_uses_the_first_pairs(tmp_path, files):
    got = prepare_corpus(data_config(tmp_path, train_limit=25), *files, threads=1)
    want, _ = encode_pairs(got.tokenizer, SRC[:25], TGT[:25], max_len=100)
    assert np.array_equal(got.train.src_ids, want.src_ids) and len(got.train) == 25


@pytest.mark.parametrize("side", [0, 1])
def test_bad_line_names_file_and_line_and_leaves_no_cache(tmp_path, files, side):
    bad = files[side].with_name("bad" + "".join(files[side].suffixes))
    raw = lines(SRC if side == 0 else TGT).encode().split(b"\n")
    raw[499] = b"bro\xffken"
    data = b"\n".join(raw)
    write(bad, gzip.compress(data) if bad.suffix == ".gz" else data)
    pair = (bad, files[1]) if side == 0 else (files[0], bad)
    with pytest.raises(CorpusError, match=rf"{bad.name}:500: invalid UTF-8"):
        prepare_corpus(data_config(tmp_path), *pair, threads=1)
    cache = tmp_path / "cache"
    assert not list(cache.glob("spm-*")) and not list(cache.glob("train-*"))


def test_line_count_mismatch_is_found_even_past_the_limit(tmp_path, files):
    short = write(tmp_path / "short.de", lines(TGT[:-1]))
    with pytest.raises(CorpusError, match=r"line counts differ: .*train\.en has 600 lines, "
                                          r".*short\.de has 599"):
        prepare_corpus(data_config(tmp_path, train_limit=10), files[0], short, threads=1)


def test_streamed_reading_equals_whole_file_reading(tmp_path):
    text = b"one\r\ntwo\n\nthr\xc3\xa9e\xe2\x80\xa8x\nlast"
    path = write(tmp_path / "x.txt", text)
    for block in (1, 2, 3, 5, 64):
        assert list(iter_lines(path, block_size=block)) == read_lines(path) == \
            ["one", "two", "", "thr\u00e9e\u2028x", "last"]
    bad = write(tmp_path / "bad.txt", b"a\nb\nc\xff\n")
    with pytest.raises(CorpusError, match=r"bad\.txt:3: invalid UTF-8"):
        list(iter_lines(bad, block_size=2))
    nul = write(tmp_path / "nul.txt", b"a\nb\nc\nd\x00\n")
    with pytest.raises(CorpusError, match=r"nul\.txt:4: NUL byte"):
        list(iter_lines(nul, block_size=3))
    a, b = write(tmp_path / "a", "x\ny\n"), write(tmp_path / "b", "1\n2\n")
    assert list(iter_parallel(a, b)) == [("x", "1"), ("y", "2")]
    c = write(tmp_path / "c", "1\n2\n3\n")
    for x, y, counts in ((a, c, "a has 2 lines, .*c has 3"), (c, a, "c has 3 lines, .*a has 2")):
        with pytest.raises(CorpusError, match=counts):
            list(iter_parallel(x, y))


def test_truncated_gzip_is_a_clear_error(tmp_path):
    path = write(tmp_path / "t.gz", gzip.compress(lines(SRC).encode())[:-30])
    with pytest.raises(CorpusError, match=r"t\.gz: cannot read"):
        list(iter_lines(path))


def test_preprocess_cli(tmp_path, files):
    cmd = [sys.executable, "-m", "nmt.cli.preprocess", f"data.train_src={files[0]}",
           f"data.train_tgt={files[1]}", f"data.cache_dir={tmp_path / 'cache'}",
           "data.vocab_size=120", "data.download=false", "threads=1",
           f"hydra.run.dir={tmp_path / 'log'}"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "600 kept of 600" in res.stdout
    folder, = (tmp_path / "cache").glob("train-*")
    assert json.loads((folder / "info.json").read_text())["kept"] == 600
    bad = subprocess.run(cmd[:4] + [f"data.train_tgt={tmp_path / 'nope.de'}"] + cmd[5:],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and "nope.de: file not found" in bad.stderr


def test_sentencepiece_trains_on_a_reproducible_sample(tmp_path):
    def stream():  # a generator: read once, never held as a list
        yield from (s for pair in zip(SRC, TGT, strict=True) for s in pair)

    a = train_or_load(stream(), "a", tmp_path / "a", vocab_size=100, sample_size=300)
    b = train_or_load(stream(), "b", tmp_path / "b", vocab_size=100, sample_size=300)
    whole = train_or_load(stream(), "c", tmp_path / "c", vocab_size=100, sample_size=10_000)
    assert a.proto == b.proto and a.proto != whole.proto


def test_the_sample_is_the_same_in_every_process(tmp_path):
    # SentencePiece seeds from std::random_device unless told: each process drew its own
    # sample, so two builders of one cache (or two nodes) made different tokenizers.
    code = ("import hashlib, sys; from nmt.data.tokenizer import train_or_load; "
            "from tests.test_dataset import SRC, TGT; "
            "t = train_or_load(SRC + TGT, 'k', sys.argv[1], vocab_size=100, sample_size=300); "
            "print(hashlib.sha256(t.proto).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code, str(tmp_path / str(i))],
                              capture_output=True, text=True, check=True, timeout=300,
                              cwd=Path(__file__).parent.parent).stdout for i in range(3)}
    assert len(digests) == 1


def test_own_training_files_need_their_own_validation_files(tmp_path, files):
    cfg = data_config(tmp_path, train_src=str(files[0]), train_tgt=str(files[1]))
    with pytest.raises(CorpusError, match="data.valid_src and data.valid_tgt are required"):
        split_paths(cfg, "valid")
    swapped = replace(cfg, valid_src=str(tmp_path / "dev.de"), valid_tgt=str(tmp_path / "dev.en"))
    with pytest.raises(CorpusError, match="en->de.*data.src_lang=de|de->en direction"):
        split_paths(swapped, "valid")
    ok = replace(cfg, valid_src=str(tmp_path / "dev.en"), valid_tgt=str(tmp_path / "dev.de"))
    assert split_paths(ok, "valid") == (tmp_path / "dev.en", tmp_path / "dev.de")


def test_a_corpus_with_no_pair_left_is_an_error(tmp_path, files, tok):
    with pytest.raises(CorpusError, match="no training pairs left: all 600"):
        build(tok, *files, tmp_path / "cache" / "train-x", max_len=1)
    assert not list((tmp_path / "cache").glob("*"))   # nothing half-built is left


def test_preprocessing_asks_for_the_training_files_only(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(prepare, "download_multi30k", lambda root, names: asked.extend(names))
    cfg = data_config(tmp_path, root=str(tmp_path / "empty"), download=True)
    prepare.ensure_corpus(cfg, [cfg.train])
    assert sorted(asked) == ["train.de.gz", "train.en.gz"]


@pytest.mark.parametrize("damage", ["no tokenizer", "empty info", "empty ids"])
def test_a_damaged_cache_is_named_with_what_to_delete(tmp_path, files, damage):
    cfg = data_config(tmp_path)
    prepare_corpus(cfg, *files, threads=1)
    cache = tmp_path / "cache"
    folder, = cache.glob("train-*")
    if damage == "no tokenizer":
        next(cache.glob("spm-*.model")).unlink()
    else:
        (folder / ("info.json" if damage == "empty info" else "src_ids.npy")).write_bytes(b"")
    with pytest.raises(CorpusError, match=f"{folder.name}: the cache is damaged.*delete"):
        prepare_corpus(cfg, *files, threads=1)


def test_a_file_as_cache_folder_names_the_key(tmp_path, files):
    cfg = replace(data_config(tmp_path), cache_dir=str(files[0]))
    with pytest.raises(CorpusError, match="data.cache_dir=.*cannot create it"):
        prepare_corpus(cfg, *files, threads=1)


def test_a_folder_or_a_pipe_as_training_file_is_named(tmp_path, files):
    with pytest.raises(CorpusError, match="a folder, not a file"):
        prepare_corpus(data_config(tmp_path), tmp_path, files[1], threads=1)
    fifo = tmp_path / "fifo.en"
    os.mkfifo(fifo)
    with pytest.raises(CorpusError, match="not a regular file"):
        prepare_corpus(data_config(tmp_path), fifo, files[1], threads=1)
