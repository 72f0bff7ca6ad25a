"""Every registered mechanism in both decoders on a slice of Multi30k: a few training steps with
validation (greedy) and heatmaps, beam-5 decoding of a test set, the decoder recorded in the
checkpoint, and a resume that continues the run (spec part 2 section 16, test 7)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt import checkpoint
from nmt.attention import REGISTRY
from nmt.config import AttentionConfig, TrainConfig
from nmt.train import run
from tests.conftest import REPO
from tests.test_end_to_end import small_corpus

ATTENTION_YAMLS = sorted((REPO / "configs" / "attention").glob("*.yaml"))


@pytest.fixture(scope="module")
def corpus(multi30k, tmp_path_factory):
    return small_corpus(multi30k, tmp_path_factory.mktemp("every") / "corpus")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(corpus: Path, yaml: Path, decoder: str) -> TrainConfig:
    cfg = TrainConfig()
    attention = OmegaConf.merge(OmegaConf.structured(AttentionConfig), OmegaConf.load(yaml))
    cfg.attention = OmegaConf.to_object(attention)
    cfg.attention.units = min(cfg.attention.units, 16)   # keep gmm's MLP and location small
    cfg.decoder.name = decoder
    cfg.model.emb_size, cfg.model.hidden_size, cfg.model.dropout = 16, 16, 0.1
    d = cfg.data
    d.root, d.download, d.cache_dir, d.vocab_size = str(corpus), False, str(corpus.parent /
                                                                          "cache"), 300
    d.test, d.valid_limit = ["test_2016_flickr"], 6
    t = cfg.train
    t.max_steps, t.valid_every, t.batch_tokens, t.heatmap_sentences = 2, 2, 300, 1
    t.test_beam, t.log_every = 5, 1
    return cfg


def test_every_registered_mechanism_has_a_config_file():
    assert {yaml.stem for yaml in ATTENTION_YAMLS} >= set(REGISTRY)


@pytest.mark.parametrize("decoder", ["luong", "bahdanau"])
@pytest.mark.parametrize("yaml", ATTENTION_YAMLS, ids=[y.stem for y in ATTENTION_YAMLS])
def test_trains_decodes_and_resumes(corpus, tmp_path, yaml, decoder):
    cfg = config(corpus, yaml, decoder)
    summary = run(cfg, tmp_path)
    assert summary["progress"]["finished"] == "max_steps"
    assert (tmp_path / "heatmaps" / "step2" / "0.png").is_file()
    hyps = (tmp_path / "test" / "test_2016_flickr.de").read_text().splitlines()
    assert len(hyps) == 12 and summary["test"]["test_2016_flickr"]["beam"] == 5
    stored = checkpoint.load(tmp_path / "checkpoints" / "best.pt")["config"]
    assert stored["decoder"]["name"] == decoder
    assert stored["attention"]["name"] == cfg.attention.name

    if yaml.stem == "multihead":   # each head's alignments drawn when asked
        translate_with_heads(tmp_path, corpus)

    cfg.resume, cfg.train.max_steps = str(tmp_path), 3
    cfg.train.valid_every = 3
    resumed = run(cfg, tmp_path)
    assert resumed["progress"]["step"] == 3
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 3]


def translate_with_heads(run_dir: Path, corpus: Path) -> None:
    out = run_dir / "translate"
    res = subprocess.run(
        [sys.executable, "-m", "nmt.cli.translate", f"checkpoint={run_dir}/checkpoints/best.pt",
         f"input={corpus}/val.en", f"output={out}/val.hyp", "heatmaps=true", "heatmap_heads=true",
         "max_heatmaps=2", f"heatmap_dir={out}/maps", "search.beam_size=2",
         f"hydra.run.dir={out}"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (out / "maps").glob("*.png")) == [
        "1.heads.png", "1.png", "2.heads.png", "2.png"]
