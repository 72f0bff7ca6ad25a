"""Train a few steps on a slice of Multi30k through the CLI, then translate with heatmaps."""

import json
import os
import subprocess
import sys
import time

import matplotlib.image

from tests.conftest import REPO


def run(args, **kw):
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, "-m", *args], cwd=kw.pop("cwd"), env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def small_corpus(multi30k, folder):
    """A slice of Multi30k as a user's own corpus: plain files, one gzipped."""
    from nmt.data.corpus import read_lines
    folder.mkdir()
    for split, n in (("train", 600), ("val", 20), ("test_2016_flickr", 12)):
        for lang in ("en", "de"):
            lines = read_lines(multi30k / f"{split}.{lang}.gz")[:n]
            (folder / f"{split}.{lang}").write_text("".join(x + "\n" for x in lines))
    return folder


def test_train_then_translate(multi30k, tmp_path):
    run_dir = tmp_path / "run"
    corpus = small_corpus(multi30k, tmp_path / "corpus")
    start = time.time()
    train = run(["nmt.cli.train", "model=small", f"data.root={corpus}", "data.download=false",
                 f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=500",
                 "data.test=[test_2016_flickr]",
                 "train.max_steps=6", "train.valid_every=3", "train.batch_tokens=600",
                 "train.test_beam=2", "train.heatmap_sentences=2", f"hydra.run.dir={run_dir}"],
                cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [3, 6]
    assert 0 < metrics[0]["elapsed"] < metrics[1]["elapsed"] < time.time() - start
    for key in ("train_loss", "val_loss", "val_ppl", "bleu", "chrf", "elapsed", "tokens_per_s"):
        assert key in metrics[0]
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert matplotlib.image.imread(run_dir / "heatmaps" / "step3" / "0.png").ndim == 3
    assert (run_dir / "test" / "test_2016_flickr.de").read_text().count("\n") == 12
    assert "test_2016_flickr" in json.loads((run_dir / "test" / "scores.json").read_text())

    src = tmp_path / "in.en"
    src.write_text("A dog runs.\n\n   \nTwo men are playing soccer in a park.\n")
    ref = tmp_path / "ref.de"
    ref.write_text("Ein Hund rennt.\n\n\nZwei Männer spielen Fußball in einem Park.\n")
    out = tmp_path / "out.de"
    tr = run(["nmt.cli.translate", f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
              f"input={src}", f"output={out}", f"reference={ref}", "heatmaps=true",
              "search.beam_size=3", f"hydra.run.dir={tmp_path / 'tr'}"], cwd=tmp_path)
    assert tr.returncode == 0, tr.stderr[-3000:]
    assert out.read_text(encoding="utf-8").count("\n") == 4
    assert "BLEU = " in tr.stderr and "chrF" in tr.stderr
    heat = tmp_path / "tr" / "heatmaps"
    assert matplotlib.image.imread(heat / "1.png").ndim == 3
    records = [json.loads(x) for x in (heat / "alignments.jsonl").read_text().splitlines()]
    first = records[0]   # one row per target piece; </s>, when emitted, is the last one
    assert len(records) == 4 and len(first["alignment"]) == len(first["tgt"]) > 0
    assert len(first["alignment"][0]) == len(first["src"]) and "</s>" not in first["tgt"][:-1]

    # stdin -> stdout, greedy
    tr = run(["nmt.cli.translate", f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
              "search.beam_size=1", f"hydra.run.dir={tmp_path / 'tr2'}"], cwd=tmp_path,
             input="A cat.\n\nA man.")
    assert tr.returncode == 0, tr.stderr[-3000:]
    assert tr.stdout.count("\n") == 3 and tr.stdout.split("\n")[1] == ""


def test_config_errors_are_clear(tmp_path):
    bad = run(["nmt.cli.train", "attention=nonsense"], cwd=tmp_path)
    assert bad.returncode != 0 and "attention" in bad.stderr and "bahdanau" in bad.stderr
    typo = run(["nmt.cli.train", "train.max_stepz=3"], cwd=tmp_path)
    assert typo.returncode != 0 and "max_stepz" in typo.stderr
    wrong = run(["nmt.cli.train", "train.max_steps=many"], cwd=tmp_path)
    assert wrong.returncode != 0 and "max_steps" in wrong.stderr


def test_configs_are_packaged():
    from importlib.resources import files
    root = files("nmt.configs")
    assert root.joinpath("train.yaml").is_file()
    assert root.joinpath("attention", "bahdanau.yaml").is_file()
    assert (REPO / "configs" / "train.yaml").is_file()
