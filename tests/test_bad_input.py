"""Bad input of many kinds: one clear line naming the key, file or item, never a traceback or
a silently wrong result."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import nmt
from nmt import checkpoint
from nmt.checks import check_config
from nmt.compare import load_run
from nmt.config import TrainConfig, TranslateConfig
from nmt.device import find_device
from tests.test_end_to_end import small_corpus

TINY = ["model=small", "model.emb_size=16", "model.hidden_size=16", "attention.units=16",
        "data.download=false", "data.vocab_size=400", "data.test=[]", "threads=1",
        "train.batch_tokens=500", "train.valid_every=2", "train.heatmap_sentences=0"]


NO_DATA = ["data.root=/nonexistent", "data.download=false"]


def cli(module, *args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", f"nmt.cli.{module}", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, **kw)


def one_line_error(res, *words):
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    error = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and all(w in error[0] for w in words), res.stderr[-3000:]


@pytest.fixture(scope="module")
def corpus(multi30k, tmp_path_factory):
    return small_corpus(multi30k, tmp_path_factory.mktemp("c") / "corpus")


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    """A 4-step run (data.root relative to where it was trained from), kept as made."""
    home = tmp_path_factory.mktemp("home")
    shutil.copytree(corpus, home / "corpus")
    res = cli("train", *TINY, "data.root=corpus", f"data.cache_dir={home / 'cache'}",
              "train.max_steps=4", f"hydra.run.dir={home / 'run'}", cwd=home)
    assert res.returncode == 0, res.stderr[-3000:]
    return home / "run"


@pytest.fixture()
def copy(run, tmp_path):
    """A copy of the run to change (resumes write into it)."""
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "corpus").symlink_to(run.parent / "corpus")   # its data.root is relative
    return tmp_path / "run"


def resume(run_dir, *args):
    folder = run_dir if run_dir.is_dir() else run_dir.parent.parent
    return cli("train", f"resume={run_dir}", *args, cwd=folder.parent)


# --- keys and values ------------------------------------------------------------------------

@pytest.mark.parametrize("module, args, key", [
    ("train", ["+train.max_step=1", *NO_DATA], "train.max_step"),
    ("train", ["+nonsense=3", *NO_DATA], "nonsense"),
    ("translate", ["checkpoint=missing.pt", "+search.beam_szie=1"], "search.beam_szie"),
])
def test_a_key_added_with_plus_must_be_a_setting(tmp_path, module, args, key):
    """Hydra's `+key=value` adds any key, and the dataclass would drop it without a word."""
    one_line_error(cli(module, *args, cwd=tmp_path), f"{key}: no such setting")


@pytest.mark.parametrize("module, args, key", [
    ("train", ["resume=", *NO_DATA], "resume="),
    ("train", ["data.train_src=", *NO_DATA], "data.train_src="),
    ("translate", ["checkpoint=missing.pt", "input="], "input="),
    ("translate", ["checkpoint=[missing.pt,'']"], "checkpoint="),
    ("compare", ["runs="], "runs="),
])
def test_an_empty_value_is_refused_not_taken_as_unset(tmp_path, module, args, key):
    """`resume=$RUN` with RUN unset must not start a new run from scratch."""
    one_line_error(cli(module, *args, cwd=tmp_path), key)


@pytest.mark.parametrize("section, key, value", [
    (None, "seed", 10**20), (None, "seed", -1), ("data", "vocab_size", 10**10)])
def test_numbers_out_of_range_name_their_key(section, key, value):
    cfg = TrainConfig()
    setattr(getattr(cfg, section) if section else cfg, key, value)
    name = f"{section}.{key}" if section else key
    with pytest.raises(ValueError, match=f"^{name}={value}: must be"):
        check_config(cfg)


def test_an_empty_item_of_a_list_is_refused():
    with pytest.raises(ValueError, match=r"^checkpoint=\['a.pt', ''\] has an empty item"):
        check_config(TranslateConfig(checkpoint=["a.pt", ""]))


# --- resuming -------------------------------------------------------------------------------

def test_resume_takes_plus_forms_of_a_key_and_refuses_unknown_ones(copy):
    res = resume(copy, "++train.max_steps=6", "++threads=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert checkpoint.load(copy / "checkpoints" / "last.pt")["progress"]["step"] == 6
    one_line_error(resume(copy, "+train.max_stepz=8"), "train.max_stepz")


def test_resume_refuses_another_seed(copy):
    """The seed made the initial weights; the run must not be relabelled with another."""
    one_line_error(resume(copy, "seed=5", "train.max_steps=6"), "seed=5", "made with 1")
    assert checkpoint.load(copy / "checkpoints" / "last.pt")["config"]["seed"] == 1
    res = resume(copy, "seed=1", "train.max_steps=6")   # its own seed, said again: fine
    assert res.returncode == 0, res.stderr[-3000:]


def test_resume_names_a_checkpoint_file_given_for_the_folder(copy):
    one_line_error(resume(copy / "checkpoints" / "last.pt"), "a file; give the run folder")


def test_resume_in_the_run_folder_itself_keeps_its_record_and_log(copy):
    """`resume=RUN hydra.run.dir=RUN` (a job script with a fixed folder): the run's .hydra/
    still says how it began (nmt-compare reads its variant there) and each log line is
    written once."""
    record = {f.name: f.read_bytes() for f in (copy / ".hydra").iterdir()}
    lines = (copy / "train.log").read_text().count("\n")
    res = resume(copy, "train.max_steps=6", f"hydra.run.dir={copy}")
    assert res.returncode == 0, res.stderr[-3000:]
    assert {f.name: f.read_bytes() for f in (copy / ".hydra").iterdir()} == record
    log = (copy / "train.log").read_text()
    assert log.count("resumed from") == 1
    new = log.splitlines()[lines:]
    assert len(new) == len(set(new)) > 0


def test_a_refused_resume_in_the_run_folder_itself_keeps_its_record(copy):
    record = {f.name: f.read_bytes() for f in (copy / ".hydra").iterdir()}
    one_line_error(resume(copy, "seed=5", f"hydra.run.dir={copy}"), "seed=5")
    one_line_error(resume(copy, "+train.max_stepz=6", f"hydra.run.dir={copy}"), "max_stepz")
    assert {f.name: f.read_bytes() for f in (copy / ".hydra").iterdir()} == record


def test_a_run_that_stored_empty_values_still_resumes(copy):
    """Runs started before empty values were refused hold "" where a key was meant unset."""
    path = copy / "checkpoints" / "last.pt"
    ckpt = checkpoint.load(path)
    ckpt["config"]["resume"] = ""
    ckpt["config"]["data"]["valid_src"] = ckpt["config"]["data"]["valid_tgt"] = ""
    checkpoint.save(ckpt, path)
    res = resume(copy, "train.max_steps=6")
    assert res.returncode == 0, res.stderr[-3000:]
    assert checkpoint.load(path)["progress"]["step"] == 6


def test_a_last_pt_without_training_state_is_named_on_resume(copy):
    shutil.copy(copy / "checkpoints" / "best.pt", copy / "checkpoints" / "last.pt")
    one_line_error(resume(copy, "train.max_steps=6"), "last.pt", "without the training state")


def test_nmt_average_does_not_write_over_the_runs_own_checkpoints(copy):
    for name in ("last.pt", "best.pt", "step4.pt"):
        target = copy / "checkpoints" / name
        res = cli("average", f"checkpoints=[{copy / 'checkpoints' / 'best.pt'}]",
                  f"output={target}", cwd=copy)
        one_line_error(res, f"output={target}", "a file of the run's own")
    res = cli("average", f"checkpoints=[{copy / 'checkpoints' / 'best.pt'}]",
              f"output={copy / 'checkpoints' / 'averaged.pt'}", cwd=copy)
    assert res.returncode == 0, res.stderr[-3000:]


# --- translating ----------------------------------------------------------------------------

def test_an_output_whose_part_file_is_the_input_is_refused(run, tmp_path):
    src = tmp_path / "in.en.part"
    src.write_text("A dog.\n")
    res = cli("translate", f"checkpoint={run / 'checkpoints' / 'best.pt'}", f"input={src}",
              f"output={tmp_path / 'in.en'}", cwd=tmp_path)
    one_line_error(res, "written first, is the input file")
    assert src.read_text() == "A dog.\n"


def test_a_piped_reference_is_read_once_for_score_and_report(run, corpus, tmp_path):
    """The report used to read the reference again after scoring had emptied the pipe."""
    fifo = tmp_path / "ref.fifo"
    os.mkfifo(fifo)
    ref = (corpus / "val.de").read_text()

    def feed():
        with open(fifo, "w") as f:
            f.write(ref)
    writer = threading.Thread(target=feed, daemon=True)   # never holds up pytest
    writer.start()
    res = cli("translate", f"checkpoint={run / 'checkpoints' / 'best.pt'}",
              f"input={corpus / 'val.en'}", f"reference={fifo}", "heatmaps=true",
              f"heatmap_dir={tmp_path / 'maps'}", f"output={tmp_path / 'out.de'}", cwd=tmp_path)
    writer.join(timeout=10)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "BLEU" in res.stderr and (tmp_path / "maps" / "report.html").is_file()


def test_ctrl_c_keeps_what_was_translated_without_a_traceback(run, tmp_path):
    src = tmp_path / "in.en"
    src.write_text("A man rides a bike down the street.\n" * 20000)
    out = tmp_path / "out.de"
    # As from a terminal: SIGINT raises KeyboardInterrupt even where pytest was started
    # with SIGINT ignored (a background job).
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmt.cli.translate", f"checkpoint={run / 'checkpoints' / 'best.pt'}",
         f"input={src}", f"output={out}", "chunk_lines=20", "search.beam_size=1", "threads=1"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    part = Path(f"{out}.part")
    deadline = time.time() + 300
    while (not part.is_file() or part.stat().st_size == 0) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "interrupted after" in err
    kept = part.read_text().splitlines()
    assert 0 < len(kept) < 20000 and f"{len(kept)} lines translated before it stopped" in err
    assert not out.exists()


# --- checkpoints ----------------------------------------------------------------------------

def test_a_folder_given_as_checkpoint_names_the_file_wanted(run):
    with pytest.raises(checkpoint.CheckpointError, match="a folder; give a checkpoint file"):
        nmt.load(run)


def test_a_damaged_tokenizer_or_config_names_the_checkpoint(run, tmp_path):
    ckpt = checkpoint.load(run / "checkpoints" / "best.pt")
    damaged = dict(ckpt, tokenizer=torch.tensor(list(b"not a sentencepiece model"),
                                                dtype=torch.uint8))
    checkpoint.save(damaged, tmp_path / "tok.pt")
    with pytest.raises(checkpoint.CheckpointError, match="tok.pt: no usable tokenizer"):
        nmt.load(tmp_path / "tok.pt")
    later = dict(ckpt, config={**ckpt["config"], "attention": {"name": "fancy"}})
    checkpoint.save(later, tmp_path / "later.pt")
    with pytest.raises(checkpoint.CheckpointError, match="later.pt: its config cannot be built"):
        nmt.load(tmp_path / "later.pt")
    weights = dict(ckpt["model"])
    weights.pop(next(iter(weights)))
    checkpoint.save(dict(ckpt, model=weights), tmp_path / "w.pt")
    with pytest.raises(checkpoint.CheckpointError, match="w.pt: weights do not match .*Missing"):
        nmt.load(tmp_path / "w.pt")


# --- the Python API -------------------------------------------------------------------------

@pytest.mark.parametrize("lines, message", [
    (["A dog.", None], r"lines\[1\]: None is a NoneType"),
    (["A dog.", float("nan")], r"lines\[1\]: nan is a float"),
    (b"A dog.", "not bytes"),
    ({"A dog.": 1}, "not dict"),
])
def test_the_api_names_a_line_that_is_not_a_string(run, lines, message):
    t = nmt.load(run / "checkpoints" / "best.pt")
    with pytest.raises(TypeError, match=message):
        t.translate(lines)


@pytest.mark.parametrize("name, message", [
    ("gpu", "not a device"), ("meta", "not a device to compute on"),
    ("xpu", "not usable with this PyTorch")])
def test_devices_that_cannot_compute_here_are_named(name, message):
    if name == "xpu" and hasattr(torch, "xpu") and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    with pytest.raises(ValueError, match=f"device={name}: {message}"):
        find_device(name)


# --- nmt-compare ----------------------------------------------------------------------------

def test_compare_finds_a_relative_data_root_from_another_folder(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = Path(load_run(run).config["data"]["root"])
    assert root.is_absolute() and (root / "val.en").is_file()


@pytest.mark.parametrize("choices", ["", "hydra:\n", "hydra:\n  runtime:\n"])
def test_damaged_hydra_records_are_named_not_a_traceback(run, tmp_path, caplog, choices):
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "run" / ".hydra" / "hydra.yaml").write_text(choices)
    (tmp_path / "run" / ".hydra" / "config.yaml").write_text("data: [unclosed\n")
    found = load_run(tmp_path / "run")
    assert found.label == "bahdanau" and found.status == "finished"   # from best.pt
    assert "config.yaml: unreadable" in caplog.text


# --- one process per run folder -------------------------------------------------------------

def test_a_run_folder_in_use_is_refused_until_its_process_ends(copy, corpus):
    """The same command started twice (or a job requeued while the first still runs) must not
    have two processes writing one last.pt."""
    from nmt import run_lock
    lock = run_lock.hold(copy)   # as the process training there holds it
    try:
        first = (copy / ".hydra" / "config.yaml").read_bytes()
        res = cli("train", *TINY, f"data.root={corpus}", "train.max_steps=6",
                  f"hydra.run.dir={copy}", cwd=copy.parent)
        one_line_error(res, f"{copy} is being trained by another process")
        assert (copy / ".hydra" / "config.yaml").read_bytes() == first   # its record kept
        one_line_error(resume(copy, "train.max_steps=6"), "being trained by another process")
        assert checkpoint.load(copy / "checkpoints" / "last.pt")["progress"]["step"] == 4
    finally:
        run_lock.release(lock)
    res = resume(copy, "train.max_steps=6")
    assert res.returncode == 0, res.stderr[-3000:]
    assert checkpoint.load(copy / "checkpoints" / "last.pt")["progress"]["step"] == 6
