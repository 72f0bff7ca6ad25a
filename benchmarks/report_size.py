"""How big is report.html for many sentences and variants, and does it still open?

Synthetic outputs on real text: the sources and references are Multi30k's test_2016_flickr
(1,000 sentences); each variant's translation is its reference with random word drops,
replacements and swaps; pieces come from a joint SentencePiece unigram model of 8,000 pieces
trained on Multi30k's training set (as nmt-train does); each alignment row is a softmax of a
Gaussian bump around the diagonal (variant-specific width and drift) with noise, mixed with a
small random floor, so that its 8-bit values are about as compressible as real ones (about 38%
zeros and 16% ones, 0.53 compressed bytes per cell, in the alignments of trained Bahdanau and
location models on test_2016_flickr). Only the size and the browser's load are measured here.

    python benchmarks/report_size.py [--sentences 1000] [--variants 17]
    python benchmarks/report_size.py --stats outputs/compare/.../report.html   # a real report

Prints the figures and writes benchmarks/results/report_size.json (--stats: only prints the
alignment statistics of an existing report).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
from provenance import code_version

from nmt.data.corpus import read_lines
from nmt.data.tokenizer import EOS, Tokenizer, train_or_load
from nmt.report import read_report, write_report
from nmt.translate import Translation

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NMT_DATA", ROOT.parent / "shared" / "data" / "multi30k"))
WORK = ROOT / "benchmarks" / "work" / "report_size"


def perturb(words: list[str], pool: list[str], rng: np.random.Generator) -> list[str]:
    out = []
    for w in words:
        r = rng.random()
        if r < 0.1:
            continue                                    # dropped
        out.append(pool[rng.integers(len(pool))] if r < 0.2 else w)
    for i in range(len(out) - 1):
        if rng.random() < 0.05:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out or words[:1]


def alignment(rows: int, cols: int, width: float, drift: float, rng: np.random.Generator
              ) -> torch.Tensor:
    centre = (np.arange(rows) + 0.5) * cols / rows - 0.5 + rng.normal(0, drift, rows)
    logits = -((np.arange(cols)[None, :] - centre[:, None]) ** 2) / (2 * width ** 2)
    logits += rng.normal(0, 0.5, (rows, cols))
    w = np.exp(logits - logits.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    # Trained attention leaves a little weight everywhere: many 1s and 2s after quantization.
    floor = rng.dirichlet(np.full(cols, 0.5), rows)
    return torch.from_numpy(0.96 * w + 0.04 * floor).float()


def outputs(sources: list[str], refs: list[str], variants: int, tok: Tokenizer, seed: int = 0
            ) -> dict[str, list[Translation]]:
    rng = np.random.default_rng(seed)
    pool = sorted({w for r in refs for w in r.split()})
    src_pieces = [tok.pieces(ids) + ["</s>"] for ids in tok.encode(sources)]
    result = {}
    for k in range(variants):
        width, drift = 0.5 + 2.0 * k / max(variants - 1, 1), 0.3 + 0.05 * k
        hyps = [" ".join(perturb(r.split(), pool, rng)) for r in refs]
        out = []
        for src, hyp, ids in zip(src_pieces, hyps, tok.encode(hyps), strict=True):
            tgt = tok.pieces([i for i in ids if i > EOS]) + ["</s>"]
            out.append(Translation(hyp, [(hyp, 0.0)], src, tgt,
                                   alignment(len(tgt), len(src), width, drift, rng)))
        result[f"variant_{k + 1:02d}"] = out
    return result


def alignment_stats(page: Path) -> dict:
    meta, matrices = read_report(page)
    cells = np.frombuffer(matrices, np.uint8)
    return {"sentences": len(meta["sentences"]), "variants": len(meta["variants"]),
            "bytes": page.stat().st_size, "alignment_cells": len(cells),
            "zero_share": round(float((cells == 0).mean()), 3),
            "one_share": round(float((cells == 1).mean()), 3),
            "compressed_bytes_per_cell": round(len(zlib.compress(matrices, 9)) / len(cells), 3)}


def open_in_chromium(page: Path) -> dict:
    """Wall time of headless Chromium loading the page until it dumps its DOM, and the state
    the page recorded (ready, errors, rows listed, heatmaps drawn)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return {}
    with tempfile.TemporaryDirectory() as profile:
        start = time.time()
        res = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             "--virtual-time-budget=30000", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=600)
        seconds = time.time() - start
    body = res.stdout[res.stdout.find("<body"):]
    body = body[:body.find(">")]
    state = dict(part.split("=", 1) for part in body.replace('"', "").split()[1:] if "=" in part)
    return {"seconds": round(seconds, 2), "state": state}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--variants", type=int, default=17)
    ap.add_argument("--stats", type=Path, help="only print an existing report's statistics")
    args = ap.parse_args()
    commit = code_version()   # before anything runs
    if args.stats:
        print(json.dumps(alignment_stats(args.stats), indent=1))
        return
    sources = read_lines(DATA / "test_2016_flickr.en.gz")[:args.sentences]
    refs = read_lines(DATA / "test_2016_flickr.de.gz")[:args.sentences]
    train = read_lines(DATA / "train.en.gz") + read_lines(DATA / "train.de.gz")
    tok = train_or_load(train, "report-size", WORK, vocab_size=8000)
    outs = outputs(sources, refs, args.variants, tok)
    page = WORK / "report.html"
    start = time.time()
    size = write_report(page, sources, outs, refs, title="synthetic report")
    build = time.time() - start
    small = WORK / "small.html"
    write_report(small, sources[:5], {k: v[:5] for k, v in list(outs.items())[:2]}, refs[:5])
    row = {"sentences": len(sources), "variants": args.variants, "bytes": size,
           "MB": round(size / 1e6, 2),
           "bytes_per_sentence_variant": round(size / (len(sources) * args.variants)),
           "build_seconds": round(build, 1), "alignments": alignment_stats(page),
           "chromium": open_in_chromium(page), "chromium_5_sentences": open_in_chromium(small),
           "machine": platform.machine(), "commit": commit}
    print(json.dumps(row, indent=1))
    out = ROOT / "benchmarks" / "results" / "report_size.json"
    out.write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
