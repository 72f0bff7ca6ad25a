"""The Python API (nmt.load) and the layering it relies on."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nmt
from nmt import checkpoint
from nmt.ensemble import Ensemble
from tests.conftest import REPO
from tests.test_end_to_end import small_corpus
from tests.test_every_mechanism import config


@pytest.fixture(scope="module")
def trained(multi30k, tmp_path_factory):
    """Two tiny models of one vocabulary (seeds 1 and 2)."""
    root = tmp_path_factory.mktemp("api")
    corpus = small_corpus(multi30k, root / "corpus")
    paths = []
    for seed in (1, 2):
        cfg = config(corpus, REPO / "configs" / "attention" / "bahdanau.yaml", "luong")
        cfg.seed, cfg.train.test_beam, cfg.train.heatmap_sentences = seed, 0, 0
        from nmt.train import run
        run(cfg, root / f"run{seed}")
        paths.append(root / f"run{seed}" / "checkpoints" / "best.pt")
    return corpus, paths


def test_load_and_translate_gives_one_result_per_line(trained):
    corpus, (path, _) = trained
    t = nmt.load(path, device="cpu")
    lines = ["A dog runs in the snow.", "", "Two men are talking."]
    out = t.translate(lines, beam_size=3, alpha=0.6, nbest=2, alignments=True)
    assert len(out) == 3 and out[1].text == ""
    for r in (out[0], out[2]):
        assert isinstance(r.text, str) and len(r.nbest) == 2 and r.score == r.nbest[0][1]
        assert r.src_pieces[-1] == "</s>"
        assert r.alignment.shape == (len(r.tgt_pieces), len(r.src_pieces))
    assert t.translate("A dog runs in the snow.", beam_size=3)[0].text == out[0].text
    assert t.config["attention"]["name"] == "bahdanau"


def test_an_ensemble_of_one_checkpoint_twice_translates_as_the_checkpoint(trained):
    _, (path, other) = trained
    lines = ["A dog runs in the snow.", "A woman reads a book on a bench."]
    single = nmt.load(path).translate(lines, beam_size=4)
    twice = nmt.load([path, path])
    assert isinstance(twice.model, Ensemble)
    assert [r.text for r in twice.translate(lines, beam_size=4)] == [r.text for r in single]
    both = nmt.load([path, other]).translate(lines, beam_size=4, alignments=True)
    assert len(both) == 2 and both[0].alignment is not None


def test_ensemble_of_two_vocabularies_is_refused_naming_the_file(trained, tmp_path):
    from nmt.data.tokenizer import Tokenizer, train_or_load
    corpus, (path, _) = trained
    ckpt = checkpoint.load(path)
    size = len(Tokenizer(bytes(ckpt["tokenizer"].tolist())))
    # The same number of pieces, learnt from other text: the weights fit, the vocabulary differs.
    text = (corpus / "train.de").read_text().splitlines()
    other = train_or_load(iter(text), "other", tmp_path, size)
    ckpt["tokenizer"] = torch.frombuffer(bytearray(other.proto), dtype=torch.uint8)
    checkpoint.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(checkpoint.CheckpointError, match="other.pt: trained with another vocab"):
        nmt.load([path, tmp_path / "other.pt"])


def test_an_ensemble_of_two_directions_is_refused(trained, tmp_path):
    """A de->en model may share the joint tokenizer of an en->de one: the weights fit, the
    languages do not."""
    _, (path, _) = trained
    ckpt = checkpoint.load(path)
    ckpt["config"]["data"].update(src_lang="de", tgt_lang="en")
    checkpoint.save(ckpt, tmp_path / "de_en.pt")
    with pytest.raises(checkpoint.CheckpointError, match="de_en.pt: translates de->en"):
        nmt.load([path, tmp_path / "de_en.pt"])


def test_nmt_translate_takes_a_list_of_checkpoints(trained, tmp_path):
    corpus, (a, b) = trained
    out = tmp_path / "out.de"
    res = subprocess.run([sys.executable, "-m", "nmt.cli.translate", f"checkpoint=[{a},{b}]",
                          f"input={corpus}/val.en", f"output={out}", "search.beam_size=2",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(out.read_text().splitlines()) == len((corpus / "val.en").read_text().splitlines())


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_the_library_never_imports_the_command_line_layer():
    for path in (REPO / "nmt").rglob("*.py"):
        if "cli" in path.relative_to(REPO / "nmt").parts:
            continue
        assert not any(m.startswith("nmt.cli") for m in imports(path)), path


def test_config_imports_nothing_of_the_package():
    assert not any(m.startswith("nmt") for m in imports(REPO / "nmt" / "config.py"))


def test_search_options_of_the_wrong_type_are_named(trained):
    t = nmt.load(trained[1][0])
    for kw, message in (({"beam_size": 2.5}, "beam_size=2.5: must be a whole number"),
                        ({"beam_size": "5"}, "beam_size='5': must be a whole number"),
                        ({"alpha": "0.6"}, "alpha='0.6': must be a number")):
        with pytest.raises(ValueError, match=message):
            t.translate(["a dog"], **kw)
