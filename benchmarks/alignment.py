"""Does each attention variant learn the true alignment of a synthetic task?

Copy and reverse of random token sequences: the source position of target token i is known
(i for copy, n-1-i for reverse). Each variant trains a small model briefly; we report the share
of target positions whose argmax teacher-forced alignment (eval mode) hits the true source
position, and the share of sentences decoded exactly (greedy; hard monotonic for monotonic).

    python benchmarks/alignment.py [--steps 400] [--variants bahdanau,location ...]
                                   [--decoders luong,bahdanau]

Prints a table and writes benchmarks/results/alignment.json (rows of earlier runs for other
variant/task/decoder combinations are kept). The mechanisms run with their class defaults
(OPTIONS below scales location to the tiny model), not the configs/attention/ files.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from provenance import code_version

from nmt.attention import REGISTRY
from nmt.data.dataset import pad_sources
from nmt.data.tokenizer import BOS, EOS, PAD
from nmt.model.seq2seq import ModelSpec, Seq2Seq
from nmt.search import greedy

VARIANTS = {name: {} for name in REGISTRY}
VARIANTS["location_smooth"] = {"smoothing": True}
OPTIONS = {"location": {"units": 64, "filters": 8, "kernel_size": 7}}


def sample(n: int, vocab: int, gen: torch.Generator, lo: int = 5, hi: int = 15) -> list[list[int]]:
    lengths = torch.randint(lo, hi + 1, (n,), generator=gen).tolist()
    return [torch.randint(4, vocab, (k,), generator=gen).tolist() for k in lengths]


def targets(srcs: list[list[int]], task: str) -> list[list[int]]:
    return [s[::-1] if task == "reverse" else list(s) for s in srcs]


def tensors(srcs, tgts):
    src, src_len = pad_sources(srcs)
    T = max(len(t) for t in tgts) + 1
    tgt_in = torch.full((len(tgts), T), PAD)
    tgt_out = torch.full((len(tgts), T), PAD)
    for b, t in enumerate(tgts):
        tgt_in[b, 0] = BOS
        tgt_in[b, 1:len(t) + 1] = torch.tensor(t)
        tgt_out[b, :len(t)] = torch.tensor(t)
        tgt_out[b, len(t)] = EOS
    return src, src_len, tgt_in, tgt_out


def run_variant(label: str, task: str, steps: int, decoder: str = "luong", vocab: int = 24,
                seed: int = 1) -> dict:
    name = "location" if label.startswith("location") else label
    options = {**OPTIONS.get(name, {}), **VARIANTS[label]}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = Seq2Seq(ModelSpec(vocab_size=vocab, emb_size=32, hidden_size=64, dropout=0.0),
                    name, options, decoder={"name": decoder})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.time()
    model.train()
    for _ in range(steps):
        srcs = sample(64, vocab, gen)
        src, src_len, tgt_in, tgt_out = tensors(srcs, targets(srcs, task))
        loss, _ = model.loss(src, src_len, tgt_in, tgt_out)
        opt.zero_grad()
        (loss / (tgt_out != PAD).sum()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    train_s = time.time() - start
    model.eval()
    srcs = sample(200, vocab, torch.Generator().manual_seed(1000 + seed))
    tgts = targets(srcs, task)
    src, src_len, tgt_in, tgt_out = tensors(srcs, tgts)
    with torch.no_grad():
        _, alphas = model(src, src_len, tgt_in)                  # [B, T, S]
    hits = total = 0
    for b, s in enumerate(srcs):
        n = len(s)
        truth = torch.arange(n) if task == "copy" else torch.arange(n - 1, -1, -1)
        hits += int((alphas[b, :n].argmax(-1) == truth).sum())
        total += n
    hyps = greedy(model, src, src_len)
    exact = sum(h[0].tokens == t for h, t in zip(hyps, tgts, strict=True)) / len(tgts)
    return {"variant": label, "task": task, "decoder": decoder, "alignment_accuracy": hits / total,
            "exact_match": exact, "train_seconds": train_s, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--tasks", default="copy,reverse")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--decoders", default="luong")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" /
                                         "alignment.json"))
    args = ap.parse_args()
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    commit = code_version()   # before anything runs
    torch.set_num_threads(args.threads)
    rows = []
    print(f"{'variant':20s} {'decoder':9s} {'task':8s} {'align acc':>9s} {'exact':>6s} "
          f"{'train s':>8s}")
    for decoder in args.decoders.split(","):
        for label in args.variants.split(","):
            for task in args.tasks.split(","):
                r = run_variant(label, task, args.steps, decoder)
                rows.append(r)
                print(f"{label:20s} {decoder:9s} {task:8s} {r['alignment_accuracy']:9.3f} "
                      f"{r['exact_match']:6.2f} {r['train_seconds']:8.1f}", flush=True)
    for r in rows:
        r["commit"] = commit
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.is_file() else {"rows": []}

    def key(r: dict) -> tuple:
        return r["variant"], r["task"], r.get("decoder", "luong")

    new_keys = {key(r) for r in rows}
    for r in old["rows"]:
        r.setdefault("commit", old.get("commit"))   # rows of files written before per-row commits
    kept = [r for r in old["rows"] if key(r) not in new_keys]
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "threads": args.threads, "date": time.strftime("%Y-%m-%d"),
                               "rows": kept + rows}, indent=1))


if __name__ == "__main__":
    main()
