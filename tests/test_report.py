"""report.html: the data it carries, and that it renders in a real browser (headless Chromium)."""

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from sacrebleu import sentence_bleu

from nmt.analysis import buckets_from_bounds
from nmt.report import ReportLines, read_report, write_report
from nmt.translate import Translation
from tests.test_dataset import SRC, TGT
from tests.test_translate_cli import tiny_checkpoint

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not found: the report is not checked in a browser "
    "(Debian: apt-get install -y chromium)")

SOURCES = ["A man rides a horse .", "Two dogs play in the snow near a red fence .",
           "A <b>woman</b> & a child read \"books\" .", "",
           "A group of people stand in front of an old building waiting for a bus to arrive ."]
REFS = ["Ein Mann reitet ein Pferd .", "Zwei Hunde spielen im Schnee .",
        "Eine Frau und ein Kind lesen Bücher .", "",
        "Eine Gruppe Menschen wartet vor einem alten Gebäude auf einen Bus ."]
HYPS = {"bahdanau": ["Ein Mann reitet ein Pferd .", "Hunde im Schnee .",
                     "Eine Frau liest .", "", "Menschen warten auf einen Bus ."],
        "luong_general": ["Ein Mann reitet .", "Zwei Hunde spielen im Schnee .",
                          "Eine Frau und ein Kind lesen Bücher .", "",
                          "Eine Gruppe Menschen wartet auf einen Bus ."],
        "location/bahdanau-dec": ["Ein Pferd .", "Zwei Hunde .", "Eine Frau .", "", "Ein Bus ."]}


def translation(src: str, hyp: str, seed: int, with_alignment: bool = True) -> Translation:
    if not src or not with_alignment:
        return Translation(hyp, [(hyp, 0.0)], [], [], None)
    s = ["▁" + w for w in src.split()] + ["</s>"]
    t = ["▁" + w for w in hyp.split()] + ["</s>"]
    torch.manual_seed(seed)
    return Translation(hyp, [(hyp, 0.0)], s, t, torch.softmax(3 * torch.randn(len(t), len(s)), 1))


def outputs(repeat: int = 1) -> dict[str, list[Translation]]:
    """Three variants; the last without alignments (a run kept without its weights)."""
    return {label: [translation(s, h, 10 * k + i, label != "location/bahdanau-dec")
                    for i, (s, h) in enumerate(zip(SOURCES * repeat, hyps * repeat, strict=True))]
            for k, (label, hyps) in enumerate(HYPS.items())}


class Body(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "body" and not self.attrs:
            self.attrs = {k: v or "" for k, v in attrs}


def render(page: Path, profile: Path, fragment: str = "") -> dict[str, str]:
    """Load the page in headless Chromium (offline) and return its <body> data attributes,
    where the page records its errors, the rows listed and the heatmaps drawn."""
    res = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri() + fragment],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    body = Body()
    body.feed(res.stdout)
    assert body.attrs, f"no page came back: {res.stderr[-2000:]}"
    return body.attrs


def test_the_report_holds_sentences_bleu_and_8_bit_alignments(tmp_path):
    out = outputs()
    size = write_report(tmp_path / "r.html", SOURCES, out, REFS, table=[["variant"], ["x"]])
    assert size == (tmp_path / "r.html").stat().st_size
    meta, matrices = read_report(tmp_path / "r.html")
    assert meta["variants"] == list(HYPS)
    assert [s["src"] for s in meta["sentences"]] == SOURCES
    first = meta["sentences"][1]
    assert first["bucket"] == "11-15" and first["ref"] == REFS[1]   # 11 words
    for v, label in enumerate(HYPS):
        item = first["out"][v]
        assert item["hyp"] == HYPS[label][1]
        assert item["bleu"] == round(sentence_bleu(HYPS[label][1], [REFS[1]]).score, 1)
    offset, rows, cols = first["out"][0]["a"]
    a = out["bahdanau"][1].alignment.numpy()
    stored = np.frombuffer(matrices[offset:offset + rows * cols], np.uint8).reshape(rows, cols)
    assert stored.shape == a.shape and np.abs(stored / 255 - a).max() <= 0.5 / 255 + 1e-6
    assert first["out"][0]["t"] == out["bahdanau"][1].tgt_pieces
    assert first["s"] == out["bahdanau"][1].src_pieces
    assert "a" not in first["out"][2]                   # no alignment: text and BLEU only
    assert set(meta["by_length"]) == set(HYPS)          # computed over the listed sentences
    # Offline: the only address in the page is the SVG namespace name, never fetched.
    page = (tmp_path / "r.html").read_text()
    assert set(re.findall(r"https?://[^\s\"'`]+", page)) == {"http://www.w3.org/2000/svg"}
    assert "<script src" not in page and "<link" not in page


def test_gmm_weights_above_one_keep_their_size(tmp_path):
    out = outputs()
    r = out["bahdanau"][0]
    big = r.alignment * 2.5   # gmm's unnormalised Gaussians can pass 1
    out["bahdanau"][0] = Translation(r.text, r.nbest, r.src_pieces, r.tgt_pieces, big)
    write_report(tmp_path / "r.html", SOURCES, out, REFS)
    meta, matrices = read_report(tmp_path / "r.html")
    item = meta["sentences"][0]["out"][0]
    offset, rows, cols = item["a"]
    stored = np.frombuffer(matrices[offset:offset + rows * cols], np.uint8).reshape(rows, cols)
    back = stored / 255 * item["k"]
    assert np.abs(back - big.numpy()).max() <= item["k"] * 0.5 / 255 + 1e-6
    assert "k" not in meta["sentences"][1]["out"][0]   # weights up to 1: stored as they are


def test_the_sentence_limit(tmp_path):
    write_report(tmp_path / "r.html", SOURCES * 4, outputs(4), REFS * 4, limit=7)
    meta, _ = read_report(tmp_path / "r.html")
    assert len(meta["sentences"]) == 7
    lines = ReportLines(2)
    for src, r in zip(SOURCES, outputs()["bahdanau"], strict=True):
        lines.add(src, r)
    assert lines.sources == SOURCES[:2]


@needs_chromium
def test_the_report_renders_in_chromium(tmp_path):
    page = tmp_path / "report.html"
    write_report(page, SOURCES * 4, outputs(4), REFS * 4, title="tiny", table=[
        ["variant", "BLEU"], ["bahdanau", "30.1"], ["luong_general", "31.0"]],
        buckets=buckets_from_bounds([10, 20, 30]))
    state = render(page, tmp_path / "profile", "#probe=1")
    assert state["data-errors"] == ""
    assert state["data-ready"] == "1"
    assert state["data-rows"] == "20"
    assert state["data-heatmaps"] == "2"           # the variant without alignments draws none
    # Hovering a cell names its source and target pieces and its weight.
    assert re.fullmatch(r"▁A → ▁Ein\nweight \d\.\d{3} · bahdanau", state["data-tooltip"])
    # Where luong_general beats bahdanau most, among the 11-20-word sentences.
    state = render(page, tmp_path / "profile", "#sort=diff&dir=desc&a=1&b=0&bucket=11-20")
    assert state["data-errors"] == "" and state["data-rows"] == "8"
    meta, _ = read_report(page)
    diffs = {i + 1: s["out"][1]["bleu"] - s["out"][0]["bleu"]
             for i, s in enumerate(meta["sentences"]) if s["bucket"] == "11-20"}
    assert state["data-first"] == str(max(diffs, key=lambda i: (diffs[i], -i)))
    # One variant, no references (nmt-translate without reference=): no BLEU, still drawn.
    write_report(page, SOURCES, {"bahdanau": outputs()["bahdanau"]}, limit=3)
    state = render(page, tmp_path / "profile", "#s=1")
    assert state["data-errors"] == "" and state["data-rows"] == "3"
    assert state["data-selected"] == "2" and state["data-heatmaps"] == "1"
    # A link made for other length buckets lists every sentence, not none.
    state = render(page, tmp_path / "profile", "#bucket=31%2B")
    assert state["data-errors"] == "" and state["data-rows"] == "3"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An untrained tiny model (it translates badly, but it attends)."""
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_translate_writes_a_report(ckpt, tmp_path):
    (tmp_path / "in.txt").write_text("".join(x + "\n" for x in SRC[:6]))
    (tmp_path / "ref.txt").write_text("".join(x + "\n" for x in TGT[:6]))
    res = subprocess.run(
        [sys.executable, "-m", "nmt.cli.translate", f"checkpoint={ckpt}",
         f"input={tmp_path / 'in.txt'}", f"reference={tmp_path / 'ref.txt'}",
         f"output={tmp_path / 'out.txt'}", "heatmaps=true", "max_heatmaps=1",
         "report_sentences=4", "chunk_lines=3", "search.beam_size=2", "search.max_out_len=12",
         f"heatmap_dir={tmp_path / 'maps'}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    meta, _ = read_report(tmp_path / "maps" / "report.html")
    hyps = (tmp_path / "out.txt").read_text().splitlines()
    assert meta["variants"] == ["bahdanau"]
    assert [s["src"] for s in meta["sentences"]] == SRC[:4]
    assert [s["out"][0]["hyp"] for s in meta["sentences"]] == hyps[:4]
    assert all("a" in s["out"][0] and "bleu" in s["out"][0] for s in meta["sentences"])
    if CHROMIUM:
        state = render(tmp_path / "maps" / "report.html", tmp_path / "profile")
        assert state["data-errors"] == "" and state["data-rows"] == "4"
        assert state["data-heatmaps"] == "1"
