"""A run killed with SIGKILL and resumed gives the same metrics as the run left alone."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nmt import checkpoint
from tests.test_end_to_end import small_corpus


def train_cmd(corpus, cache, run_dir, *extra):
    return [sys.executable, "-m", "nmt.cli.train", "model=small", f"data.root={corpus}",
            "data.download=false", f"data.cache_dir={cache}", "data.vocab_size=400",
            "data.test=[]", "threads=1", "model.dropout=0.3", "train.max_steps=12",
            "train.valid_every=3", "train.batch_tokens=500", "train.heatmap_sentences=0",
            "attention=monotonic_bahdanau",  # uses the RNG in training (noise) as well as dropout
            f"hydra.run.dir={run_dir}", *extra]


def metrics(run_dir):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["epoch"], r["train_loss"], r["val_loss"], r["bleu"]) for r in rows]


@pytest.fixture(scope="module")
def corpus(multi30k, tmp_path_factory):
    return small_corpus(multi30k, tmp_path_factory.mktemp("c") / "corpus")


def test_kill_and_resume_equals_uninterrupted(corpus, tmp_path):
    cache = tmp_path / "cache"
    alone = tmp_path / "alone"
    subprocess.run(train_cmd(corpus, cache, alone), check=True, capture_output=True,
                   cwd=tmp_path, timeout=600)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cmd(corpus, cache, killed), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        m = killed / "metrics.jsonl"
        if m.is_file() and len(m.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len((killed / "metrics.jsonl").read_text().splitlines())
    assert done < 4, "the run finished before it could be killed"

    res = subprocess.run([sys.executable, "-m", "nmt.cli.train", f"resume={killed}",
                          "threads=1", f"hydra.run.dir={tmp_path / 'resume_log'}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert metrics(killed) == metrics(alone)


def test_checkpoint_load_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "x": Payload()}, path)
    with pytest.raises(checkpoint.CheckpointError, match="evil.pt: refused to load") as err:
        checkpoint.load(path)
    assert not marker.exists()
    assert "system" in str(err.value) and "weights_only" not in str(err.value)   # no unsafe advice


@pytest.mark.parametrize("keep", [0.5, 4, 0])
def test_truncated_checkpoint_is_a_clear_error(tmp_path, keep):
    path = tmp_path / "c.pt"
    checkpoint.save({"model": {"w": torch.ones(1000)}, "config": {}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])   # half, 4 bytes, none
    with pytest.raises(checkpoint.CheckpointError, match="c.pt"):
        checkpoint.load(path)


@pytest.mark.parametrize("where", [0.3, 0.5, 0.7])
def test_a_flipped_byte_inside_the_weights_is_caught(tmp_path, where):
    # torch.load itself reads such a file without a word and returns other weights
    path = tmp_path / "c.pt"
    checkpoint.save({"model": {"w": torch.ones(10_000)}, "config": {}}, path)
    data = bytearray(path.read_bytes())
    data[int(len(data) * where)] ^= 0x40
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=True)["model"]["w"], torch.ones(10_000))
    with pytest.raises(checkpoint.CheckpointError, match=r"c.pt: corrupted checkpoint .*CRC-32"):
        checkpoint.load(path)


def test_a_checkpoint_written_without_crcs_still_loads(tmp_path):
    # torch.serialization.set_crc32_options(False) stores 0 for every record: nothing to check
    path = tmp_path / "c.pt"
    torch.serialization.set_crc32_options(False)
    try:
        checkpoint.save({"model": {"w": torch.arange(100.0)}, "config": {}}, path)
    finally:
        torch.serialization.set_crc32_options(True)
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.arange(100.0))


def test_a_damaged_zip_header_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save({"model": {"w": torch.ones(100)}, "config": {}}, path)
    data = bytearray(path.read_bytes())
    data[26] ^= 0x80    # the first record's name length, in its local header
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="c.pt: .*corrupted checkpoint"):
        checkpoint.load(path)


def test_an_intact_checkpoint_passes_the_crc_check(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save({"model": {"w": torch.arange(10_000.0)}, "config": {"v": 1}}, path)
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.arange(10_000.0))


@pytest.mark.parametrize("junk", [b"junk", b"\x80\x02", b"not a checkpoint at all\n" * 10])
def test_a_file_that_is_no_checkpoint_is_a_clear_error(tmp_path, junk):
    path = tmp_path / "c.pt"
    path.write_bytes(junk)
    with pytest.raises(checkpoint.CheckpointError, match="c.pt") as err:
        checkpoint.load(path)
    if not junk.startswith(b"\x80"):
        assert "not a PyTorch checkpoint" in str(err.value)


def test_killed_writer_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"model": {"w": torch.zeros(3)}, "config": {"v": 1}}, path)
    script = (
        "import os, torch, nmt.checkpoint as c\n"
        "real = torch.save\n"
        "def slow(obj, f):\n"
        "    real(obj, f); f.flush(); os.kill(os.getpid(), 9)\n"
        "torch.save = slow\n"
        f"c.save({{'model': {{'w': torch.ones(3)}}, 'config': {{'v': 2}}}}, {str(path)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert checkpoint.load(path)["config"] == {"v": 1}


def test_an_interrupted_sweep_run_again_skips_finished_runs_and_resumes_the_rest(corpus,
                                                                                 tmp_path):
    cache, sweep = tmp_path / "cache", tmp_path / "sweep"
    base = train_cmd(corpus, cache, tmp_path / "unused")[:-1]
    cmd = [*base[:3], "-m", *base[3:], "seed=1,2", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    second = None
    while time.time() < deadline and proc.poll() is None:
        second = next(sweep.glob("1_*"), None) if sweep.is_dir() else None
        m = second / "metrics.jsonl" if second else None
        if m and m.is_file() and len(m.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = next(sweep.glob("0_*"))
    assert (first / "summary.json").is_file() and not (second / "summary.json").exists()
    finished_at = (first / "summary.json").stat().st_mtime_ns
    first_metrics = metrics(first)

    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (first / "summary.json").stat().st_mtime_ns == finished_at, "finished run retrained"
    assert metrics(first) == first_metrics
    assert (second / "summary.json").is_file()
    assert "interrupted: resuming" in (second / "train.log").read_text()
    alone = tmp_path / "alone"
    subprocess.run([*train_cmd(corpus, cache, alone), "seed=2"], check=True,
                   capture_output=True, cwd=tmp_path, timeout=600)
    assert metrics(second) == metrics(alone)
