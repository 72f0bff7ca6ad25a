"""nmt-translate as a stream: chunks in order, a terminal answered line by line, and lines too
long for the model cut with a warning instead of hanging."""

import os
import pty
import select
import subprocess
import sys
import time

import pytest
import torch

import nmt
from nmt import checkpoint
from nmt.data.tokenizer import EOS, train_or_load
from nmt.model.seq2seq import ModelSpec, Seq2Seq
from nmt.report import read_report
from tests.test_dataset import SRC, TGT

MODEL = {"emb_size": 16, "hidden_size": 16, "dropout": 0.0}


def tiny_checkpoint(folder):
    """An untrained tiny bahdanau model as a self-contained checkpoint in `folder`."""
    tok = train_or_load(SRC + TGT, "t", folder, vocab_size=120)
    torch.manual_seed(0)
    model = Seq2Seq(ModelSpec(vocab_size=len(tok), **MODEL), "bahdanau")
    path = folder / "model.pt"
    checkpoint.save({"model": model.state_dict(), "tokenizer": torch.frombuffer(
        bytearray(tok.proto), dtype=torch.uint8), "config": {
        "model": MODEL, "attention": {"name": "bahdanau"}, "decoder": {"name": "luong"},
        "data": {"max_len": 50}}}, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Untrained, it babbles up to the length limit, which is what the caps are for."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def cli(ckpt, tmp_path, *args, **kw):
    return subprocess.run([sys.executable, "-m", "nmt.cli.translate", f"checkpoint={ckpt}",
                           f"hydra.run.dir={tmp_path / 'run'}", *args], capture_output=True,
                          text=kw.pop("text", True), cwd=tmp_path, timeout=kw.pop("timeout", 300),
                          **kw)


def test_chunks_give_the_lines_in_order(ckpt, tmp_path):
    lines = SRC[:7] + ["", "  "] + SRC[7:12]
    (tmp_path / "in.txt").write_text("".join(x + "\n" for x in lines))
    outs = []
    for chunk in (1, 3, 1000):
        res = cli(ckpt, tmp_path, f"input={tmp_path / 'in.txt'}", f"chunk_lines={chunk}",
                  "search.beam_size=2", "heatmaps=true", "max_heatmaps=2", "length_buckets=[3,6]",
                  f"heatmap_dir={tmp_path / f'maps{chunk}'}")
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(res.stdout.split("\n")[:-1])
        rows = (tmp_path / f"maps{chunk}" / "alignments.jsonl").read_text().splitlines()
        assert len(rows) == len(lines)
        assert sorted(p.name for p in (tmp_path / f"maps{chunk}").glob("*.png")) == \
            ["1.png", "2.png"]
    assert len(outs[0]) == len(lines) and outs[0] == outs[1] == outs[2]
    assert outs[0][7] == outs[0][8] == ""
    meta, _ = read_report(tmp_path / "maps3" / "report.html")   # the report's length buckets
    assert meta["buckets"] == ["1-3", "4-6", "7+"] and len(meta["sentences"]) == len(lines)


def test_a_terminal_gets_each_translation_as_its_line_is_typed(ckpt, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "nmt.cli.translate", f"checkpoint={ckpt}",
                             f"hydra.run.dir={tmp_path / 'run'}"], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path)
    os.close(slave)
    try:
        os.write(master, (SRC[0] + "\n").encode())
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        assert ready, "no translation before the end of input"
        first = proc.stdout.readline()
        assert first.endswith(b"\n") and proc.poll() is None, "answered before end of input"
        os.write(master, (SRC[1] + "\n").encode() + b"\x04")   # a second line, then Ctrl-D
        rest = proc.stdout.read()
        assert proc.wait(timeout=120) == 0
        assert rest.count(b"\n") == 1
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("line", [(" ".join(SRC) * 200)[:100_000], " ".join(["word"] * 20_000)],
                         ids=["100k-characters", "20k-words"])
def test_a_pathological_line_is_cut_with_a_warning_and_translates_quickly(ckpt, tmp_path,
                                                                           line):
    (tmp_path / "in.txt").write_text(SRC[0] + "\n" + line + "\n" + SRC[1] + "\n")
    start = time.time()
    res = cli(ckpt, tmp_path, f"input={tmp_path / 'in.txt'}", "search.beam_size=5",
              timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert time.time() - start < 120
    assert len(res.stdout.split("\n")[:-1]) == 3
    assert "in.txt:2:" in res.stderr and "cut to the first 50" in res.stderr


def test_outputs_are_capped_and_the_cut_is_configurable(ckpt):
    t = nmt.load(ckpt)
    long_line = " ".join(SRC[:20])
    [r] = t.translate([long_line], beam_size=1, max_out_len=7)
    assert len(r.tgt_pieces) <= 7
    [cut] = t.translate([long_line], beam_size=1, max_src_len=5, alignments=True)
    assert len(cut.src_pieces) == 6   # five pieces and </s>
    assert t.max_src_len == 50


def test_beam_search_alignments_when_the_end_comes_first(ckpt):
    t = nmt.load(ckpt)
    vocab = [m for m in t.model.modules() if isinstance(m, torch.nn.Linear)
             and m.out_features == len(t.tokenizer) and m.bias is not None]
    with torch.no_grad():
        vocab[-1].bias[EOS] = 100.0   # </s> is the best first word
    [r] = t.translate(["the red dog"], beam_size=3, alignments=True)
    assert r.text == "" and r.tgt_pieces == ["</s>"]
    assert r.alignment.shape == (1, len(r.src_pieces))


def test_paths_are_checked_before_anything_is_written(ckpt, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(x + "\n" for x in SRC[:3]))
    original = src.read_bytes()
    res = cli(ckpt, tmp_path, f"input={src}", f"output={src}")   # would empty the input
    assert res.returncode == 2 and f"output={src} is the input file" in res.stderr
    assert src.read_bytes() == original
    for args, message in (
            ([f"reference={tmp_path / 'ref.typo'}"], "reference="),
            ([f"output={tmp_path / 'no' / 'out.txt'}"], "does not exist"),
            ([f"output={tmp_path}"], "a folder, not a file"),
            (["heatmaps=true", f"heatmap_dir={src}"], "heatmap_dir="),
            (["heatmaps=true", f"heatmap_dir={src}/maps"], "cannot create it")):
        res = cli(ckpt, tmp_path, f"input={src}", *args)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_a_reference_of_another_length_is_refused_before_translating(ckpt, tmp_path):
    src, ref, out = tmp_path / "in.txt", tmp_path / "ref.txt", tmp_path / "out.txt"
    src.write_text("".join(x + "\n" for x in SRC[:4]))
    ref.write_text("".join(x + "\n" for x in TGT[:3]))
    res = cli(ckpt, tmp_path, f"input={src}", f"reference={ref}", f"output={out}")
    assert res.returncode == 2 and "has 3 lines but the input" in res.stderr
    assert not out.exists() and not (tmp_path / "out.txt.part").exists()


def test_an_error_midway_leaves_no_short_file_under_the_output_name(ckpt, tmp_path):
    src = tmp_path / "in.txt"
    out = tmp_path / "out.txt"
    res = cli(ckpt, tmp_path, f"output={out}", "chunk_lines=2", text=False,
              input=b"".join(x.encode() + b"\n" for x in SRC[:5]) + b"caf\xe9\n")
    res.stderr = res.stderr.decode()
    assert res.returncode == 2 and "<stdin>:6" in res.stderr   # read line by line
    assert not out.exists()
    assert len((tmp_path / "out.txt.part").read_text().splitlines()) == 4
    assert "out.txt.part" in res.stderr
    src.write_text("".join(x + "\n" for x in SRC[:5]))
    assert cli(ckpt, tmp_path, f"input={src}", f"output={out}").returncode == 0
    assert len(out.read_text().splitlines()) == 5 and not (tmp_path / "out.txt.part").exists()


def test_an_empty_input_with_its_empty_reference(ckpt, tmp_path):
    (tmp_path / "in.txt").write_text("")
    (tmp_path / "ref.txt").write_text("")
    res = cli(ckpt, tmp_path, f"input={tmp_path / 'in.txt'}", f"reference={tmp_path / 'ref.txt'}")
    assert res.returncode == 0 and res.stdout == "" and "nothing to score" in res.stderr


def test_a_pipe_as_input_and_a_reader_that_stops_early(ckpt, tmp_path):
    text = "".join(x + "\n" for x in SRC[:6])
    cmd = [sys.executable, "-m", "nmt.cli.translate", f"checkpoint={ckpt}",
           f"hydra.run.dir={tmp_path / 'run'}"]
    piped = subprocess.run(["bash", "-c", " ".join([*cmd, "input=/dev/stdin"])], input=text,
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert piped.returncode == 0, piped.stderr[-2000:]
    assert len(piped.stdout.splitlines()) == 6
    device = subprocess.run([*cmd, "output=/dev/stdout"], input=text, capture_output=True,
                            text=True, cwd=tmp_path, timeout=300)   # a pipe: written in place
    assert device.returncode == 0 and device.stdout == piped.stdout
    head = subprocess.run(["bash", "-c", " ".join([*cmd, "chunk_lines=1", "| head -1"])],
                          input=text * 50, capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert len(head.stdout.splitlines()) == 1 and "Traceback" not in head.stderr


def test_heatmaps_of_very_long_sentences_are_drawn_within_bounds(tmp_path):
    """Unbounded, these figures would pass matplotlib's 2^16 pixels a side and stop a run."""
    import matplotlib.image

    from nmt.plots import MAX_INCHES, head_grid, heatmap
    heatmap(torch.full((3, 1900), 1 / 1900), ["x"] * 1900, ["y"] * 3, tmp_path / "a.png")
    head_grid(torch.full((3, 8, 380), 1 / 380), ["x"] * 380, ["y"] * 3, tmp_path / "h.png")
    for name in ("a.png", "h.png"):
        assert max(matplotlib.image.imread(tmp_path / name).shape[:2]) <= MAX_INCHES * 100
