"""Data-parallel training: 2 gloo processes under torchrun equal one process on the union of
their batches, only rank 0 writes, and a distributed run resumes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nmt import checkpoint
from nmt.cli.common import to_object
from nmt.config import TrainConfig
from nmt.data.dataset import token_batches
from nmt.distributed import Dist, init_from_env
from nmt.train import Trainer
from tests.conftest import write
from tests.test_dataset import SRC, TGT


def torchrun(tmp_path, *args):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "nmt.cli.train", "device=cpu", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def corpus_args(tmp_path):
    lines = lambda xs: "".join(x + "\n" for x in xs)  # noqa: E731
    folder = tmp_path / "corpus"
    folder.mkdir()
    files = {"train_src": lines(SRC), "train_tgt": lines(TGT), "valid_src": lines(SRC[:6]),
             "valid_tgt": lines(TGT[:6])}
    return [f"data.{k}={write(folder / k, v)}" for k, v in files.items()] + [
        "data.download=false", "data.test=[]", f"data.cache_dir={tmp_path / 'cache'}",
        "data.vocab_size=120"]


def union_reference(cfg: TrainConfig, steps: int, tmp_path) -> tuple[Trainer, list[float]]:
    """One process that trains each step on both ranks' batches at once."""
    trainer = Trainer(cfg, tmp_path / "reference")
    batches = token_batches(trainer.data.train, cfg.train.batch_tokens, cfg.seed, 0)
    losses = []
    for k in range(steps):
        loss, tokens = trainer.train_step(np.concatenate(batches[2 * k:2 * k + 2]))
        losses.append((loss, tokens))
    return trainer, losses


@pytest.mark.parametrize("attention, decoder", [("bahdanau", "luong"), ("location", "bahdanau")])
def test_two_ranks_equal_one_process_on_the_union_batch(tmp_path, attention, decoder):
    model = ["model.emb_size=16", "model.hidden_size=32", "model.dropout=0.0", "threads=1",
             "train.batch_tokens=300", "train.valid_every=2", "train.heatmap_sentences=1",
             f"attention={attention}", f"decoder={decoder}"]
    torchrun(tmp_path, *corpus_args(tmp_path), *model, "train.max_steps=2")
    run_dir, = (tmp_path / "outputs").glob("*/*")  # one run folder, chosen by rank 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "corpus", "outputs"]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".hydra", "checkpoints", "heatmaps", "metrics.jsonl", "summary.json", "train.log",
        "valid"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1  # not once per rank
    assert "(2 processes)" in (run_dir / "train.log").read_text()

    # Resume the distributed run to step 4.
    torchrun(tmp_path, f"resume={run_dir}", "train.max_steps=4", "threads=1",
             f"hydra.run.dir={tmp_path / 'resume_log'}")
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert last["progress"]["step"] == 4 and len(last["rng_ranks"]) == 2
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4]

    cfg = to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), last["config"]),
                    TrainConfig)
    assert cfg.threads == 1 and cfg.decoder.name == decoder
    reference, losses = union_reference(cfg, 4, tmp_path)
    # Float noise between the two is ~4e-7 here; a gradient off by the world size (averaged
    # instead of normalised by the global token count) moves the weights by ~4e-4.
    for name, value in reference.model.state_dict().items():
        torch.testing.assert_close(last["model"][name], value, rtol=0, atol=1e-5, msg=name)
    for m, pair in zip(metrics, (losses[:2], losses[2:]), strict=True):
        assert m["train_loss"] == pytest.approx(sum(x for x, _ in pair) / sum(n for _, n in pair),
                                                rel=1e-5)


def test_single_process_is_the_default():
    d = Dist()
    assert not d.enabled and d.is_main
    assert d.broadcast("x") == "x" and d.gather(3) == [3] and d.agree("max_steps") == "max_steps"
    assert d.main_first(lambda: 5) == 5
    assert d.sum_step(torch.tensor(2.5), 7) == (2.5, 7)


@pytest.mark.parametrize("local_rank", ["0", "1"])
def test_more_processes_than_gpus_is_refused_by_every_rank(monkeypatch, local_rank):
    """Not "invalid device ordinal" from the extra rank while the others hang in the group."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: pytest.fail("set_device was called"))
    for key, value in {"WORLD_SIZE": "2", "RANK": local_rank, "LOCAL_RANK": local_rank,
                       "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="2 processes on this node but 1 GPU.*device=cpu"):
        init_from_env(torch.device("cuda"))
