"""Impossible settings stop at start-up naming the key; a smaller SentencePiece vocabulary than
asked for is reported; a run folder that cannot be created is one line, not a traceback."""

import logging
import subprocess
import sys
from dataclasses import replace

import pytest

from nmt.checks import check_config
from nmt.config import CompareConfig, SearchOptions, TrainConfig, TranslateConfig
from nmt.data.corpus import CorpusError
from nmt.data.prepare import prepare_data
from tests.test_end_to_end import small_corpus


def train_with(**sections):
    cfg = TrainConfig()
    for section, values in sections.items():
        setattr(cfg, section, replace(getattr(cfg, section), **values))
    return cfg


@pytest.mark.parametrize("cfg, key", [
    (train_with(train={"batch_tokens": 0}), "train.batch_tokens=0"),
    (train_with(train={"valid_every": -5}), "train.valid_every=-5"),
    (train_with(train={"label_smoothing": 1.0}), "train.label_smoothing=1.0"),
    (train_with(train={"save_every_minutes": -1.0}), "train.save_every_minutes=-1.0"),
    (train_with(optim={"lr": 0.0}), "optim.lr=0.0"),
    (train_with(optim={"betas": [0.9]}), "optim.betas=[0.9]"),
    (train_with(optim={"lr_factor": 1.5}), "optim.lr_factor=1.5"),
    (train_with(model={"hidden_size": 0}), "model.hidden_size=0"),
    (train_with(model={"dropout": 1.0}), "model.dropout=1.0"),
    (train_with(data={"vocab_size": 3}), "data.vocab_size=3"),
    (train_with(data={"max_len": 0}), "data.max_len=0"),
    (train_with(data={"spm_model_type": "wordpiece"}), "data.spm_model_type=wordpiece"),
    (train_with(attention={"units": -1}), "attention.units=-1"),
    (train_with(attention={"kernel_size": -3}), "attention.kernel_size=-3"),
    (train_with(attention={"filters": 0}), "attention.filters=0"),
    (TranslateConfig(search=SearchOptions(beam_size=0)), "search.beam_size=0"),
    (TranslateConfig(search=SearchOptions(beam_size=2, nbest=3)), "search.nbest=3"),
    (TranslateConfig(chunk_lines=0), "chunk_lines=0"),
    (CompareConfig(samples=0), "samples=0"),
    (CompareConfig(order="best"), "order=best"),
    (CompareConfig(length_buckets=[20, 10]), "length_buckets=[20, 10]"),
    (CompareConfig(length_buckets=[0, 10]), "length_buckets=[0, 10]"),
    (CompareConfig(length_buckets=[10, 10]), "length_buckets=[10, 10]"),
    (TranslateConfig(length_buckets=[]), "length_buckets=[]"),
])
def test_impossible_values_are_refused_naming_the_key(cfg, key):
    with pytest.raises(ValueError, match="^" + key.replace("[", r"\[").replace("]", r"\]")):
        check_config(cfg)


def test_the_defaults_pass():
    for cfg in (TrainConfig(), TranslateConfig(), CompareConfig()):
        check_config(cfg)


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_the_commands_stop_at_start_up_with_one_line(tmp_path):
    res = run("nmt.cli.train", "train.batch_tokens=0", "data.root=/nonexistent",
              "data.download=false", cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "error: train.batch_tokens=0: must be positive" in res.stderr
    res = run("nmt.cli.translate", "checkpoint=missing.pt", "search.beam_size=-1", cwd=tmp_path)
    assert res.returncode == 2 and "search.beam_size=-1" in res.stderr


@pytest.mark.parametrize("module, key", [("nmt.cli.train", "hydra.run.dir"),
                                         ("nmt.cli.translate", "hydra.run.dir")])
def test_a_run_folder_that_cannot_be_created_is_one_line(tmp_path, module, key):
    (tmp_path / "a_file").write_text("")
    res = run(module, f"{key}={tmp_path / 'a_file' / 'run'}", "checkpoint=x.pt"
              if "translate" in module else "data.download=false", cwd=tmp_path)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot create the run folder" in lines[0]
    assert "Traceback" not in res.stderr


def test_a_sweep_folder_that_cannot_be_created_is_one_line(tmp_path):
    (tmp_path / "a_file").write_text("")
    res = run("nmt.cli.train", "-m", f"hydra.sweep.dir={tmp_path / 'a_file' / 'sweep'}",
              "seed=1,2", cwd=tmp_path)
    assert res.returncode == 2 and "cannot create the run folder" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_vocabulary_smaller_than_asked_for_is_reported(multi30k, tmp_path, caplog):
    corpus = small_corpus(multi30k, tmp_path / "corpus")
    cfg = TrainConfig().data
    cfg = replace(cfg, root=str(corpus), download=False, cache_dir=str(tmp_path / "cache"),
                  vocab_size=20000, test=[])
    with caplog.at_level(logging.WARNING):
        data = prepare_data(cfg, threads=1)
    got = len(data.tokenizer)
    assert got < 20000
    assert f"has {got} pieces, fewer than the 20000 asked for (data.vocab_size)" in caplog.text


def test_an_infinite_value_is_refused():
    with pytest.raises(ValueError, match="^optim.lr=inf"):
        check_config(train_with(optim={"lr": float("inf")}))


@pytest.mark.parametrize("attention, message", [
    ({"name": "bahdanu"}, "bahdanau"),
    ({"name": "multihead", "heads": 3}, "heads"),
    ({"name": "monotonic_luong", "mode": "hard"}, "attention.mode=hard"),
])
def test_model_options_fail_before_the_data_is_read(tmp_path, attention, message):
    """Data preparation can take hours on a large corpus; a mistyped mechanism must not wait."""
    from nmt.train import Trainer
    cfg = train_with(attention=attention, data={"root": str(tmp_path / "none"),
                                                "download": False})
    with pytest.raises(ValueError, match=message):
        Trainer(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_test_set_that_is_not_there_stops_before_training(multi30k, tmp_path):
    corpus = small_corpus(multi30k, tmp_path / "corpus")
    cfg = replace(TrainConfig().data, root=str(corpus), download=False,
                  cache_dir=str(tmp_path / "cache"), test=["test_2016_flickr", "test_2018"])
    with pytest.raises(CorpusError, match="^data.test: test_2018: .*test_2018.en"):
        prepare_data(cfg, threads=1)
    assert not (tmp_path / "cache").exists()   # before the corpus is preprocessed


def test_a_test_set_of_ones_own_is_reported_not_half_downloaded(tmp_path, monkeypatch):
    """An en-cs corpus keeping the default (Multi30k) test names: nothing is downloaded, and the
    error names the test set that is not there."""
    from nmt.data import prepare
    got = []
    monkeypatch.setattr(prepare, "download_multi30k", lambda root, names: got.extend(names))
    cfg = replace(TrainConfig().data, root=str(tmp_path), tgt_lang="cs")
    with pytest.raises(CorpusError, match="^data.test: test_2016_flickr: .*test_2016_flickr"):
        prepare_data(cfg, threads=1)
    assert got == []
    prepare.ensure_corpus(replace(TrainConfig().data, root=str(tmp_path)))   # Multi30k en-de
    assert "test_2017_flickr.de.gz" in got and "train.en.gz" in got


def test_a_failed_download_names_the_url_and_the_way_out(tmp_path, monkeypatch):
    import urllib.error

    from nmt.data import corpus

    def offline(*a, **kw):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(corpus.urllib.request, "urlopen", offline)
    with pytest.raises(CorpusError, match="download failed .*data.download=false"):
        corpus.download_multi30k(tmp_path, ["val.en.gz"])
    assert list(tmp_path.iterdir()) == []


def test_a_vocabulary_sentencepiece_cannot_train_names_the_key(tmp_path):
    from nmt.data.tokenizer import train_or_load
    with pytest.raises(CorpusError, match="^data.vocab_size=20, .*smaller than required_chars"):
        train_or_load(["the quick brown fox jumps over the lazy dog 0123456789 ÄÖÜ"] * 20, "k",
                      tmp_path, vocab_size=20)


def test_a_missing_required_key_is_one_line(tmp_path):
    res = run("nmt.cli.translate", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip() == \
        "error: checkpoint: required (e.g. checkpoint=...)"


def test_an_infinite_clip_norm_is_named_as_such():
    with pytest.raises(ValueError, match="^optim.clip_norm=inf: must be a finite number"):
        check_config(train_with(optim={"clip_norm": float("inf")}))
