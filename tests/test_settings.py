"""Impossible settings stop at start-up naming the key; a smaller SentencePiece vocabulary than
asked for is reported; a run folder that cannot be created is one line, not a traceback."""

import logging
import subprocess
import sys
from dataclasses import replace

import pytest

from nmt.checks import check_config
from nmt.config import CompareConfig, SearchOptions, TrainConfig, TranslateConfig
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
