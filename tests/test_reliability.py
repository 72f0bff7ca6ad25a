"""Bad input and faults: clear errors naming the key/file, nothing lost, clean stops."""

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nmt import checkpoint
from nmt.attention import AttentionConfigError, build_attention
from nmt.cli.train import STOPPED
from nmt.config import TrainConfig
from nmt.data.corpus import CorpusError, decode_lines
from nmt.data.dataset import token_batches
from nmt.data.tokenizer import train_or_load
from nmt.model.seq2seq import ModelSpec, Seq2Seq
from nmt.train import Trainer
from nmt.translate import SearchOptions, translate
from tests.test_dataset import SRC, TGT
from tests.test_end_to_end import small_corpus


@pytest.fixture(scope="module")
def corpus(multi30k, tmp_path_factory):
    return small_corpus(multi30k, tmp_path_factory.mktemp("c") / "corpus")


def tiny_config(corpus, cache) -> TrainConfig:
    cfg = TrainConfig()
    cfg.data = replace(cfg.data, root=str(corpus), download=False, cache_dir=str(cache),
                       vocab_size=400, test=[])
    cfg.model = replace(cfg.model, emb_size=16, hidden_size=32)
    cfg.train = replace(cfg.train, max_steps=6, valid_every=2, batch_tokens=500,
                        heatmap_sentences=0, max_bad_steps=3)
    return cfg


def test_unknown_attention_lists_valid_names():
    with pytest.raises(AttentionConfigError) as err:
        build_attention("bahdanow", 8, 8)
    assert "bahdanau" in str(err.value) and "location" in str(err.value)


def test_luong_dot_with_different_sizes_suggests_general():
    with pytest.raises(AttentionConfigError, match="luong_general"):
        Seq2Seq(ModelSpec(vocab_size=10, hidden_size=16, enc_hidden_size=32), "luong_dot")
    Seq2Seq(ModelSpec(vocab_size=10, hidden_size=16, enc_hidden_size=32), "luong_general")


def test_bad_attention_option_names_the_key():
    with pytest.raises(AttentionConfigError, match="kernel_size"):
        build_attention("location", 8, 8, kernel_size=4)
    with pytest.raises(AttentionConfigError, match="attention.mode"):
        build_attention("monotonic_luong", 8, 8, mode="fast")


def test_cli_reports_impossible_sizes(tmp_path):
    res = subprocess.run([sys.executable, "-m", "nmt.cli.train", "attention=luong_dot",
                          "model.enc_hidden_size=256", "data.root=/nonexistent",
                          "data.download=false"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 2
    assert "error:" in res.stderr and "Traceback" not in res.stderr


def test_a_sweep_of_bad_jobs_reports_each_in_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "nmt.cli.train", "-m",
                          "attention.heads=3,5", "attention=multihead", "data.root=/nonexistent",
                          "data.download=false", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.count("error: attention") == 2   # each job's own line; the sweep goes on
    assert "attention.heads=3" in res.stderr and "attention.heads=5" in res.stderr


def test_non_finite_losses_stop_training_and_keep_last_good_checkpoint(corpus, tmp_path):
    trainer = Trainer(tiny_config(corpus, tmp_path / "cache"), tmp_path / "run")
    real_loss = trainer.model.loss
    calls = {"n": 0}

    def loss(*args, **kw):
        calls["n"] += 1
        out, nll = real_loss(*args, **kw)
        return (out * float("nan"), nll) if calls["n"] > 2 else (out, nll)

    trainer.model.loss = loss
    progress = trainer.fit()
    assert progress.finished == "non_finite_loss"
    assert progress.step == 5 and progress.skipped_steps == 3
    saved = checkpoint.load(tmp_path / "run" / "checkpoints" / "best.pt")
    assert all(torch.isfinite(t).all() for t in saved["model"].values())


def test_resume_with_another_vocabulary_is_refused(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "cache")
    Trainer(cfg, tmp_path / "run").fit()
    other = replace(cfg, data=replace(cfg.data, vocab_size=300))
    trainer = Trainer(other, tmp_path / "run")
    with pytest.raises(checkpoint.CheckpointError, match="another vocabulary"):
        trainer.resume(tmp_path / "run" / "checkpoints" / "last.pt")


def test_a_checkpoint_of_the_unfused_optimizer_resumes_fused(corpus, tmp_path):
    """Checkpoints written before Adam became fused (or on a device without the fused kernel)
    resume with this machine's fused Adam, its moments and step counts intact."""
    cfg = tiny_config(corpus, tmp_path / "cache")
    trainer = Trainer(cfg, tmp_path / "run")
    assert all(g["fused"] for g in trainer.opt.param_groups)
    trainer.fit()
    path = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(path)
    for g in ckpt["optimizer"]["param_groups"]:
        g["fused"] = None
    checkpoint.save(ckpt, path)
    resumed = Trainer(cfg, tmp_path / "run")
    resumed.resume(path)
    assert all(g["fused"] for g in resumed.opt.param_groups)
    now = resumed.opt.state_dict()["state"]
    for i, saved in ckpt["optimizer"]["state"].items():
        torch.testing.assert_close(now[i]["exp_avg_sq"].cpu(), saved["exp_avg_sq"])
        assert float(now[i]["step"]) == float(saved["step"]) > 0
    loss, tokens = resumed.train_step(token_batches(resumed.data.train, 500, 1, 0)[0])
    assert tokens > 0 and loss == loss   # the fused step runs on the loaded state


def test_ctrl_c_saves_and_resume_finishes(corpus, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "nmt.cli.train", "model=small", f"data.root={corpus}",
           "data.download=false", f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=400",
           "data.test=[]", "train.max_steps=400", "train.valid_every=2",
           "train.batch_tokens=500", "train.heatmap_sentences=0", "threads=1",
           f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "metrics.jsonl").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == STOPPED, err[-2000:]
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert last["progress"]["finished"] == "interrupted"
    assert 2 <= last["progress"]["step"] < 400
    res = subprocess.run([sys.executable, "-m", "nmt.cli.train", f"resume={run_dir}", "threads=1",
                          "train.max_steps=8", f"hydra.run.dir={tmp_path / 'log'}"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    resumed = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]
    assert resumed["finished"] == "max_steps" and resumed["step"] > last["progress"]["step"]
    # What the weights are made of cannot change on resume: refused before the data is read.
    other = subprocess.run([sys.executable, "-m", "nmt.cli.train", f"resume={run_dir}",
                            "model.hidden_size=64", f"hydra.run.dir={tmp_path / 'log2'}"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert other.returncode == 2 and "model.hidden_size=64: the run's weights" in other.stderr


def test_the_same_command_again_continues_a_run_and_never_trains_over_it(corpus, tmp_path):
    """A requeued job re-runs its command into the same hydra.run.dir: the interrupted run goes
    on, a finished one is left as it is, and other settings are refused before anything is
    written over."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "nmt.cli.train", f"data.root={corpus}", "data.download=false",
           f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=400", "data.test=[]",
           "model.emb_size=16", "model.hidden_size=32", "train.max_steps=40",
           "train.patience=100", "train.valid_every=2", "train.batch_tokens=500",
           "train.heatmap_sentences=0", "threads=1", f"hydra.run.dir={run_dir}"]
    stop_early(cmd, run_dir / "metrics.jsonl", tmp_path)
    stopped = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]["step"]
    assert stopped < 40

    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from its last checkpoint" in again.stderr + again.stdout
    done = checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]
    assert done["finished"] == "max_steps" and done["step"] == 40
    steps = [int(line.split('"step": ')[1].split(",")[0])
             for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(2, 41, 2))   # the first validations kept, none repeated

    kept = {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()}
    record = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
    # Where the files are is not a setting of the run.
    moved = [*cmd[:-1], f"data.cache_dir={tmp_path / 'cache2'}", cmd[-1]]
    finished = subprocess.run(moved, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "already finished (max_steps)" in finished.stderr + finished.stdout
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == record
    other = subprocess.run([*cmd, "attention=location"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert other.returncode == 2
    assert "already holds a run with other settings (attention.name: 'bahdanau' there, " \
           "'location' here" in other.stderr
    assert f"resume={run_dir}" in other.stderr
    assert {p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()} == kept
    # Hydra wrote the refused command's .hydra/ there; the run's own is put back.
    assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == record
    assert "attention: bahdanau" in (run_dir / ".hydra" / "hydra.yaml").read_text()

    # Extended with resume= and stopped again: the first end's summary.json is gone (the run
    # is under way again), and the job's command (now with the new budget) goes on training.
    longer = [*cmd[:-1], "train.max_steps=60", cmd[-1]]
    stop_early([sys.executable, "-m", "nmt.cli.train", f"resume={run_dir}", "threads=1",
                "train.max_steps=60", f"hydra.run.dir={tmp_path / 'log'}"],
               run_dir / "valid" / "step42.hyp", tmp_path)
    assert not (run_dir / "summary.json").exists()
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]["step"] < 60
    res = subprocess.run(longer, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]["step"] == 60

    # Its checkpoints deleted, a finished run still is not trained over by another command.
    shutil.rmtree(run_dir / "checkpoints")
    res = subprocess.run([*longer, "attention=location"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 2 and "its .hydra/config.yaml" in res.stderr
    assert not (run_dir / "checkpoints").exists()


def stop_early(cmd: list[str], first_file: Path, cwd: Path) -> None:
    """Run `cmd`, stop it with Ctrl-C once `first_file` appears; it must save and exit 3."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not first_file.is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == STOPPED, err[-2000:]


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300))
def test_reader_never_crashes_or_miscounts(raw):
    try:
        lines = decode_lines(raw, "f.txt")
    except CorpusError as err:
        assert str(err).startswith("f.txt:")
        return
    body = raw.removeprefix(b"\xef\xbb\xbf")   # a byte-order mark is not text
    expected = body.count(b"\n") + (0 if body.endswith(b"\n") or not body else 1)
    assert len(lines) == expected


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tok = train_or_load(SRC + TGT, "h", tmp_path_factory.mktemp("spm"), vocab_size=120)
    torch.manual_seed(0)
    model = Seq2Seq(ModelSpec(vocab_size=len(tok), emb_size=8, hidden_size=8, dropout=0.0),
                    "monotonic_bahdanau")
    return model.eval(), tok


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                        max_size=30), max_size=6))
def test_translator_gives_one_line_per_input(toy, lines):
    model, tok = toy
    out = translate(model, tok, lines, SearchOptions(beam_size=2, max_len_offset=3),
                    torch.device("cpu"))
    assert len(out) == len(lines)
    for line, r in zip(lines, out, strict=True):
        assert "\n" not in r.text
        if not line.strip():
            assert r.text == ""


def test_checkpoint_of_another_architecture_is_a_clear_error(corpus, tmp_path):
    from nmt.api import load_model

    cfg = tiny_config(corpus, tmp_path / "cache")
    Trainer(cfg, tmp_path / "run").fit()
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    ckpt = checkpoint.load(path)
    ckpt["config"]["model"]["hidden_size"] = 64
    checkpoint.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(checkpoint.CheckpointError, match="edited.pt"):
        load_model(tmp_path / "edited.pt", torch.device("cpu"))
