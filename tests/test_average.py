"""Checkpoint averaging: the mean of the weights, checked inputs, and the nmt-average command."""

import subprocess
import sys

import pytest
import torch

from nmt import checkpoint
from nmt.average import average_checkpoints, step_checkpoints
from nmt.checkpoint import CheckpointError
from tests.test_attention import tiny_model

CONFIG = {"model": {"emb_size": 8}, "attention": {"name": "bahdanau"},
          "decoder": {"name": "luong"}}


def save(path, seed, tokenizer=b"spm", step=1, config=CONFIG):
    torch.manual_seed(seed)
    model = tiny_model("bahdanau")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    checkpoint.save({"model": model.state_dict(), "config": config, "progress": {"step": step},
                     "tokenizer": torch.frombuffer(bytearray(tokenizer), dtype=torch.uint8)},
                    path)
    return model.state_dict()


def test_average_of_identical_checkpoints_is_the_checkpoint(tmp_path):
    weights = save(tmp_path / "a.pt", 1)
    avg = average_checkpoints([tmp_path / "a.pt"] * 3)
    for k, v in weights.items():
        assert torch.equal(avg["model"][k], v), k


def test_average_is_the_elementwise_mean_and_keeps_the_last_progress(tmp_path):
    a = save(tmp_path / "a.pt", 1, step=10)
    b = save(tmp_path / "b.pt", 2, step=20)
    avg = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    for k in a:
        torch.testing.assert_close(avg["model"][k], (a[k] + b[k]) / 2)
    assert avg["progress"]["step"] == 20 and avg["config"] == CONFIG
    assert "optimizer" not in avg


def test_other_vocabulary_or_model_is_refused(tmp_path):
    save(tmp_path / "a.pt", 1)
    save(tmp_path / "b.pt", 2, tokenizer=b"other")
    save(tmp_path / "c.pt", 3, config={**CONFIG, "attention": {"name": "location"}})
    with pytest.raises(CheckpointError, match="b.pt: another vocabulary"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    with pytest.raises(CheckpointError, match="c.pt: another model .*attention.name"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])


def test_two_initialisations_are_refused_but_a_new_dropout_is_not(tmp_path):
    # The mean of two independently initialised networks translates nothing.
    save(tmp_path / "a.pt", 1, config={**CONFIG, "seed": 1})
    save(tmp_path / "b.pt", 2, config={**CONFIG, "seed": 2})
    with pytest.raises(CheckpointError, match="another initialisation.*ensemble"):
        average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    # a run resumed with another dropout (allowed on resume) still averages with itself
    save(tmp_path / "c.pt", 3, config={**CONFIG, "seed": 1,
                                       "model": {"emb_size": 8, "dropout": 0.1}})
    avg = average_checkpoints([tmp_path / "a.pt", tmp_path / "c.pt"])
    assert avg["config"]["model"]["dropout"] == 0.1


def test_nmt_average_takes_a_runs_newest_step_checkpoints(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    weights = {k: save(ckpts / f"step{k}.pt", k, step=k) for k in (200, 1000, 400, 800, 600)}
    (ckpts / "last.pt").write_bytes((ckpts / "step1000.pt").read_bytes())
    assert [p.name for p in step_checkpoints(tmp_path / "run")] == \
        ["step200.pt", "step400.pt", "step600.pt", "step800.pt", "step1000.pt"]
    out = tmp_path / "avg.pt"
    res = subprocess.run([sys.executable, "-m", "nmt.cli.average", f"run={tmp_path / 'run'}",
                          "last=3", f"output={out}"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "averaged 3 checkpoints" in res.stderr
    assert not (tmp_path / "average.log").exists()   # no log file left where it ran
    avg = checkpoint.load(out)
    for k in weights[200]:
        torch.testing.assert_close(avg["model"][k], sum(weights[s][k] for s in (600, 800, 1000))
                                   / 3)
    bad = subprocess.run([sys.executable, "-m", "nmt.cli.average", f"run={tmp_path}",
                          f"output={out}"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert bad.returncode == 2 and "train.keep_last" in bad.stderr
    typo = subprocess.run([sys.executable, "-m", "nmt.cli.average", f"run={tmp_path / 'rnu'}",
                           f"output={out}"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert typo.returncode == 2 and "rnu: folder not found" in typo.stderr


def test_training_keeps_the_last_n_validations(multi30k, tmp_path):
    from nmt.train import run
    from tests.conftest import REPO
    from tests.test_end_to_end import small_corpus
    from tests.test_every_mechanism import config
    corpus = small_corpus(multi30k, tmp_path / "corpus")
    cfg = config(corpus, REPO / "configs" / "attention" / "bahdanau.yaml", "luong")
    cfg.train.max_steps, cfg.train.valid_every, cfg.train.keep_last = 5, 1, 3
    cfg.train.test_beam = 0
    run(cfg, tmp_path / "run")
    kept = step_checkpoints(tmp_path / "run")
    assert [p.name for p in kept] == ["step3.pt", "step4.pt", "step5.pt"]
    assert "optimizer" not in checkpoint.load(kept[0])
    last = checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")
    for k, v in checkpoint.load(kept[-1])["model"].items():
        assert torch.equal(v, last["model"][k])


def test_nmt_average_never_writes_over_a_checkpoint_it_averages(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save(a, 1)
    save(b, 2)
    kept = a.read_bytes()
    for output, message in ((a, "is one of the checkpoints averaged"),
                            (tmp_path, "a folder, not a file"),
                            (tmp_path / "no" / "avg.pt", "does not exist")):
        res = subprocess.run([sys.executable, "-m", "nmt.cli.average", f"checkpoints=[{a},{b}]",
                              f"output={output}"], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert a.read_bytes() == kept
