"""Preemption: SIGTERM stops like Ctrl-C, last.pt is also written on a timer, and a job of
Hydra's submitit launcher warned by SIGUSR2 saves, is requeued and resumes (submitit's local
executor stands in for Slurm: the same signal and requeue code, with processes on this machine)."""

import json
import math
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from nmt import checkpoint
from nmt import train as train_module
from nmt.cli.train import STOPPED, folder_decision
from nmt.data.dataset import token_batches
from nmt.train import Trainer
from tests.test_end_to_end import small_corpus
from tests.test_reliability import tiny_config


def metrics(run_dir: Path, *keys: str) -> list[tuple]:
    """A run's metrics.jsonl, each row as its values of `keys`; read strictly, as a damaged
    line here is a bug."""
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [tuple(json.loads(x)[k] for k in keys) for x in lines]


@pytest.fixture(scope="module")
def corpus(multi30k, tmp_path_factory):
    return small_corpus(multi30k, tmp_path_factory.mktemp("c") / "corpus")


def sweep_cmd(corpus, tmp_path, *extra, seeds="1,2"):
    return [sys.executable, "-m", "nmt.cli.train", "-m", "model=small", f"data.root={corpus}",
            "data.download=false", f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=400",
            "data.test=[]", "train.valid_every=2", "train.batch_tokens=500",
            "train.heatmap_sentences=0", "threads=1", f"seed={seeds}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}", *extra]


def test_sigterm_saves_stops_the_sweep_and_the_same_command_resumes(corpus, tmp_path):
    proc = subprocess.Popen(sweep_cmd(corpus, tmp_path, "train.max_steps=400"), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = tmp_path / "sweep" / "0_bahdanau_luong_seed1"
    deadline = time.time() + 300
    while time.time() < deadline and not (first / "metrics.jsonl").is_file():
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == STOPPED, err[-2000:]   # not done: `&& next-step` must not run
    assert "SIGTERM: finishing this step" in err and "Traceback" not in err
    last = checkpoint.load(first / "checkpoints" / "last.pt")["progress"]
    assert last["finished"] == "interrupted" and 2 <= last["step"] < 400
    assert not (tmp_path / "sweep" / "1_bahdanau_luong_seed2").exists()  # the sweep stopped

    res = subprocess.run(sweep_cmd(corpus, tmp_path, "train.max_steps=8"), cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for run in ("0_bahdanau_luong_seed1", "1_bahdanau_luong_seed2"):
        done = json.loads((tmp_path / "sweep" / run / "summary.json").read_text())
        assert done["progress"]["finished"] == "max_steps"
    resumed = json.loads((first / "summary.json").read_text())["progress"]
    assert resumed["step"] == max(8, last["step"])   # a budget already spent: no more steps


def holder_of(path: Path) -> int | None:
    """The process that has `path` open (a joblib worker writing its run's train.log)."""
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if fd.resolve() == path:
                return int(fd.parts[2])
        except OSError:
            continue
    return None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the workers in /proc")
def test_stopped_joblib_workers_save_start_no_other_job_and_fail_the_sweep(corpus, tmp_path):
    # A joblib worker runs job after job: after SIGTERM it must not go on with the next one.
    cmd = sweep_cmd(corpus, tmp_path, "hydra/launcher=parallel", "hydra.launcher.n_jobs=2",
                    seeds="1,2,3")
    proc = subprocess.Popen([*cmd, "train.max_steps=400"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs = [tmp_path / "sweep" / f"{i}_bahdanau_luong_seed{i + 1}" for i in range(3)]
    deadline, workers = time.time() + 300, {}
    while time.time() < deadline and len(workers) < 2:
        for run in runs[:2]:
            if run not in workers and (run / "metrics.jsonl").is_file():
                pid = holder_of((run / "train.log").resolve())
                if pid and pid != proc.pid:
                    workers[run] = pid
        time.sleep(0.05)
    assert len(workers) == 2
    for pid in workers.values():   # the workers alone, not the sweep's main process
        subprocess.run(["kill", "-TERM", str(pid)], check=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, err[-2000:]   # not done
    assert "stopped, last.pt saved" in err and "Traceback" not in err
    for run in runs[:2]:
        last = checkpoint.load(run / "checkpoints" / "last.pt")["progress"]
        assert last["finished"] == "interrupted"
    assert not (runs[2] / "checkpoints").exists()   # the third job trained nothing

    res = subprocess.run([*cmd, "train.max_steps=8"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    for run in runs:
        done = json.loads((run / "summary.json").read_text())["progress"]
        assert done["finished"] == "max_steps"


class Killed(Exception):
    """Stands in for SIGKILL right after a checkpoint."""


def test_timer_checkpoints_resume_exactly_like_the_run_left_alone(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "cache")
    cfg.train = replace(cfg.train, max_steps=6, valid_every=6, save_every_minutes=0)
    alone = Trainer(cfg, tmp_path / "alone")
    alone.fit()

    timed = replace(cfg, train=replace(cfg.train, save_every_minutes=1e-9))  # every step
    trainer = Trainer(timed, tmp_path / "killed")
    saves = []
    real_save = trainer.save

    def save(best, validated=False):
        real_save(best, validated)
        saves.append((trainer.progress.step, validated))
        if trainer.progress.step == 4:
            raise Killed

    trainer.save = save
    with pytest.raises(Killed):
        trainer.fit()
    assert saves == [(1, False), (2, False), (3, False), (4, False)]
    assert not (tmp_path / "killed" / "metrics.jsonl").exists()

    resumed = Trainer(timed, tmp_path / "killed")
    resumed.resume(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert resumed.progress.step == 4 and resumed.progress.window_tokens > 0
    resumed.fit()

    keys = ("step", "epoch", "train_loss", "val_loss", "bleu", "chrf")
    assert metrics(tmp_path / "killed", *keys) == metrics(tmp_path / "alone", *keys)


def test_a_submitit_job_warned_by_sigusr2_saves_is_requeued_and_resumes(corpus, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    # The local executor sends SIGUSR2 30 s before timeout_min; 45 s of training cannot fit
    # into one job, however fast the machine.
    cmd = sweep_cmd(corpus, tmp_path, "hydra/launcher=submitit_local",
                    "hydra.launcher.timeout_min=1", "+hydra.launcher.max_num_timeout=8",
                    "train.max_minutes=0.75", "train.valid_every=50")
    cmd.remove("seed=1,2")
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "sweep" / "0_bahdanau_luong_seed1"
    log = (run / "train.log").read_text()
    assert "SIGUSR2: finishing this step" in log and "Requeued job" in log
    assert "was interrupted: resuming from its last checkpoint" in log
    progress = json.loads((run / "summary.json").read_text())["progress"]
    assert progress["finished"] == "max_minutes"


def test_a_stop_at_a_validation_step_validates_it_on_resume(corpus, tmp_path):
    """Ctrl-C during the step before a validation saves without validating; the resumed run
    must still validate that step, or its metrics lose a row for good."""
    cfg = tiny_config(corpus, tmp_path / "cache")
    cfg.train = replace(cfg.train, max_steps=6, valid_every=2)
    Trainer(cfg, tmp_path / "alone").fit()

    trainer = Trainer(cfg, tmp_path / "stopped")
    real_step = trainer.train_step

    def train_step(idx):
        out = real_step(idx)
        if trainer.progress.step == 3:       # this is step 4, due for validation
            trainer.signals.received = signal.SIGINT
        return out

    trainer.train_step = train_step
    assert trainer.fit().finished == "interrupted"
    last = checkpoint.load(tmp_path / "stopped" / "checkpoints" / "last.pt")["progress"]
    assert last["step"] == 4

    resumed = Trainer(cfg, tmp_path / "stopped")
    resumed.resume(tmp_path / "stopped" / "checkpoints" / "last.pt")
    resumed.progress.finished = ""
    assert resumed.fit().finished == "max_steps"

    keys = ("step", "epoch", "train_loss", "val_loss", "bleu", "chrf")
    assert [r[0] for r in metrics(tmp_path / "stopped", *keys)] == [2, 4, 6]
    assert metrics(tmp_path / "stopped", *keys) == metrics(tmp_path / "alone", *keys)


def test_the_epoch_budget_ending_on_a_validation_step_validates_once(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "cache")
    trainer = Trainer(cfg, tmp_path / "run")
    per_epoch = len(token_batches(trainer.data.train, cfg.train.batch_tokens, cfg.seed, 0))
    trainer.cfg = replace(cfg, train=replace(cfg.train, max_steps=0, max_epochs=1,
                                             valid_every=per_epoch))
    assert trainer.fit().finished == "max_epochs"
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [per_epoch]
    assert checkpoint.load(tmp_path / "run" / "checkpoints" / "last.pt")["progress"][
        "finished"] == "max_epochs"


def test_an_infinite_gradient_with_a_finite_loss_leaves_the_weights_alone(corpus, tmp_path):
    trainer = Trainer(tiny_config(corpus, tmp_path / "cache"), tmp_path / "run")
    batch = token_batches(trainer.data.train, 500, 1, 0)[0]
    weight = trainer.model.decoder.w_hh
    hook = weight.register_hook(lambda g: g * float("inf"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    loss, tokens = trainer.train_step(batch)
    assert math.isnan(loss) and tokens > 0   # counted as a skipped step
    assert all(torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())
    hook.remove()
    loss, _ = trainer.train_step(batch)
    assert math.isfinite(loss) and not torch.equal(weight, before["decoder.w_hh"])


def test_a_finished_run_resumed_with_its_own_budget_trains_no_further(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "cache")
    run_dir = tmp_path / "run"
    assert train_module.run(cfg, run_dir)["progress"]["step"] == 6
    rows = (run_dir / "metrics.jsonl").read_text()
    # resume= extends a finished run, here under the same budget
    again = train_module.run(replace(cfg, resume=str(run_dir)), run_dir)
    assert again["progress"]["step"] == 6 and again["progress"]["finished"] == "max_steps"
    assert (run_dir / "metrics.jsonl").read_text() == rows
    longer = replace(cfg, resume=str(run_dir), train=replace(cfg.train, max_steps=8))
    assert train_module.run(longer, run_dir)["progress"]["step"] == 8


def test_a_run_stopped_between_validations_and_extended_goes_on_as_if_never_stopped(
        corpus, tmp_path, monkeypatch):
    """A cap between two validations (time, steps, epochs) validates there, so that best.pt
    can have the last weights; extended afterwards, that off-grid validation must not count
    toward patience or the learning-rate schedule, or the run would stop elsewhere than the run
    never capped."""
    at = {}
    real_validate = Trainer.validate

    def validate(self, *args):
        at["step"] = self.progress.step
        return real_validate(self, *args)

    # The off-grid validation (step 5) is the best of all; step 6 is the grid's best.
    bleu = {5: 5.0, 6: 3.0}
    monkeypatch.setattr(Trainer, "validate", validate)
    monkeypatch.setattr(train_module, "score", lambda hyps, refs: SimpleNamespace(
        bleu=bleu.get(at["step"], 1.0), chrf=0.0))
    cfg = tiny_config(corpus, tmp_path / "cache")
    cfg.train = replace(cfg.train, max_steps=14, valid_every=2, patience=3)
    cfg.optim = replace(cfg.optim, lr_patience=0)   # every validation without gain halves lr
    alone = train_module.run(cfg, tmp_path / "alone")["progress"]
    assert alone["finished"] == "early_stopping" and alone["step"] == 12
    assert alone["best_step"] == 6

    capped = tmp_path / "capped"
    first = train_module.run(replace(cfg, train=replace(cfg.train, max_steps=5)), capped)
    assert first["progress"]["finished"] == "max_steps" and first["progress"]["step"] == 5
    assert (first["progress"]["best_step"], first["progress"]["grid_best_bleu"]) == (5, 1.0)
    extended = train_module.run(replace(cfg, resume=str(capped)), capped)["progress"]
    assert extended["finished"] == "early_stopping" and extended["step"] == 12
    assert extended["bad_validations"] == alone["bad_validations"] == 3
    # best.pt keeps the capped step's weights: the one thing that differs from the run alone
    assert (extended["best_bleu"], extended["best_step"]) == (5.0, 5)
    assert checkpoint.load(capped / "checkpoints" / "best.pt")["progress"]["step"] == 5

    keys = ("step", "val_loss", "bleu", "lr")
    assert [r for r in metrics(capped, *keys) if r[0] != 5] == metrics(tmp_path / "alone", *keys)
    assert [r[0] for r in metrics(capped, *keys)] == [2, 4, 5, 6, 8, 10, 12]


def test_a_checkpoint_saved_before_the_grid_best_field_resumes_with_its_best(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "cache")
    run_dir = tmp_path / "run"
    Trainer(replace(cfg, train=replace(cfg.train, max_steps=4)), run_dir).fit()
    last = run_dir / "checkpoints" / "last.pt"
    old = checkpoint.load(last)
    del old["progress"]["grid_best_bleu"]
    checkpoint.save(old, last)
    resumed = Trainer(cfg, run_dir)
    resumed.resume(last)
    assert resumed.progress.grid_best_bleu == old["progress"]["best_bleu"] >= 0


def test_a_kill_after_last_pt_never_leaves_best_pt_behind(corpus, tmp_path, monkeypatch):
    """best.pt (and step<k>.pt) are written before last.pt: a kill between the writes must not
    leave a last.pt whose best step names weights that were never saved."""
    cfg = tiny_config(corpus, tmp_path / "cache")
    cfg.train = replace(cfg.train, keep_last=2)
    bleu = iter(range(1, 100))   # every validation better than the one before
    monkeypatch.setattr(train_module, "score", lambda hyps, refs: SimpleNamespace(
        bleu=float(next(bleu)), chrf=0.0))
    trainer = Trainer(cfg, tmp_path / "run")
    real_save = train_module.checkpoint.save

    def save(obj, path):
        real_save(obj, path)
        if Path(path).name == "last.pt" and obj["progress"]["step"] == 4:
            raise Killed

    monkeypatch.setattr(train_module.checkpoint, "save", save)
    with pytest.raises(Killed):
        trainer.fit()
    ckpts = tmp_path / "run" / "checkpoints"
    last = checkpoint.load(ckpts / "last.pt")["progress"]
    assert last["best_step"] == 4
    assert checkpoint.load(ckpts / "best.pt")["progress"]["step"] == 4
    assert (ckpts / "step4.pt").is_file()


def test_a_damaged_metrics_line_does_not_block_the_resume(corpus, tmp_path):
    cfg = tiny_config(corpus, tmp_path / "cache")
    run_dir = tmp_path / "run"
    Trainer(replace(cfg, train=replace(cfg.train, max_steps=4)), run_dir).fit()
    metrics = run_dir / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'{"step": 6, "epo\x00\x00')   # a crash mid-write
    resumed = Trainer(cfg, run_dir)
    resumed.resume(run_dir / "checkpoints" / "last.pt")
    resumed.progress.finished = ""
    resumed.fit()
    assert [json.loads(x)["step"] for x in metrics.read_text().splitlines()] == [2, 4, 6]


def test_a_stop_on_the_last_step_stops_and_the_same_command_completes(corpus, tmp_path,
                                                                      monkeypatch):
    """Ctrl-C or SIGTERM on the step that ends the budget: last.pt is saved and the test sets
    wait (a job system's grace period is short); rerun without extending, the run completes."""
    cfg = tiny_config(corpus, tmp_path / "cache")
    run_dir = tmp_path / "run"
    real_step = Trainer.train_step

    def train_step(self, idx):
        out = real_step(self, idx)
        if self.progress.step == 5:   # step 6 of 6
            self.signals.received = signal.SIGTERM
        return out

    monkeypatch.setattr(Trainer, "train_step", train_step)
    out = train_module.run(cfg, run_dir)
    assert out["stopped"] and not (run_dir / "summary.json").exists()
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["progress"]["finished"] == \
        "max_steps"
    monkeypatch.setattr(Trainer, "train_step", real_step)
    done = train_module.run(replace(cfg, resume=str(run_dir)), run_dir, extend=False)
    assert "stopped" not in done and done["progress"]["step"] == 6
    assert json.loads((run_dir / "summary.json").read_text())["progress"]["step"] == 6


def test_a_summary_of_an_earlier_end_does_not_mark_an_extended_run_done(corpus, tmp_path):
    """Extended, then killed while decoding the test sets: last.pt says finished at the new
    step, summary.json is the earlier end's; the same command must complete the run."""
    cfg = tiny_config(corpus, tmp_path / "cache")
    run_dir = tmp_path / "run"
    train_module.run(cfg, run_dir)
    assert folder_decision(run_dir, cfg, check=False)[0] == "done"
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["progress"]["step"] = 4
    (run_dir / "summary.json").write_text(json.dumps(summary))
    assert folder_decision(run_dir, cfg, check=False) == ("resume", None)
