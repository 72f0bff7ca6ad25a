"""fp32 against bf16 mixed precision (`precision=bf16`): training and decoding speed on this
machine, and what bf16 does to the decoded output.

    python benchmarks/precision.py --checkpoint RUN/checkpoints/best.pt      # about 15 minutes
    python benchmarks/precision.py --parts train --models small --threads 1 --rounds 1

- training: target tokens/s over `--steps` full steps (forward, backward, clipping, Adam) after
  `--warmup`, bahdanau attention, Luong decoder, `--models` sizes, batches of 2,000 tokens; each
  measurement in a fresh process, fp32 and bf16 alternating, `--rounds` times; the ratio is
  taken per round.
- the ceiling: a plain [1700 x 256] x [256 x 8000] matmul (the output layer of model=small, the
  largest product of a step) in each precision.
- decoding (with `--checkpoint`): test_2016_flickr, greedy and beam 5, sentences/s and BLEU in
  each precision, and how many of the 1,000 outputs differ.

Writes benchmarks/results/precision.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from provenance import code_version
from speed import DATA, DECODE_BATCH, ROOT, peak_rss_mb, read_lines, run_json, train_config

PRECISIONS = ("fp32", "bf16")


def measure_train(model: str, precision: str, threads: int, warmup: int, steps: int) -> dict:
    from nmt.data.dataset import token_batches
    from nmt.train import Trainer

    cfg = train_config("bahdanau", 2000, threads, [f"model={model}", f"precision={precision}"])
    trainer = Trainer(cfg, ROOT / "benchmarks" / "work" / "precision")
    batches = token_batches(trainer.data.train, 2000, cfg.seed, 0)
    for idx in batches[:warmup]:
        trainer.train_step(idx)
    tokens, start = 0, time.perf_counter()
    for idx in batches[warmup:warmup + steps]:
        tokens += trainer.train_step(idx)[1]
    seconds = time.perf_counter() - start
    return {"tokens_per_s": tokens / seconds, "steps": steps, "seconds": seconds,
            "peak_rss_mb": peak_rss_mb()}


def measure_matmul(precision: str, threads: int, seconds: float = 3.0) -> dict:
    import torch

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(1700, 256, dtype=dtype), torch.randn(256, 8000, dtype=dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return {"gflops": n * 2 * 1700 * 256 * 8000 / (time.perf_counter() - start) / 1e9}


def measure_decode(checkpoint: str, precision: str, beam: int, threads: int) -> dict:
    import torch

    import nmt
    from nmt.device import setup_device
    from nmt.evaluate import score
    from nmt.translate import SearchOptions

    setup_device("cpu", threads)
    t = nmt.load(checkpoint, "cpu", precision)
    src = read_lines(DATA / "test_2016_flickr.en.gz")
    ref = read_lines(DATA / "test_2016_flickr.de.gz")
    opts = SearchOptions(beam_size=beam, batch_tokens=DECODE_BATCH)
    t.translate_with(src[:50], opts)   # warm-up
    start = time.perf_counter()
    with torch.inference_mode():
        hyps = [h.text for h in t.translate_with(src, opts)]
    seconds = time.perf_counter() - start
    return {"sentences_per_s": len(src) / seconds, "seconds": seconds,
            "bleu": score(hyps, ref).bleu, "hypotheses": hyps, "peak_rss_mb": peak_rss_mb()}


def self_cmd(*args: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *map(str, args)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="train,decode")
    ap.add_argument("--models", default="small,base")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--checkpoint", help="a trained model to decode (the decode part)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "precision.json"))
    a = ap.parse_args()
    parts = a.parts.split(",")
    if not set(parts) <= {"train", "decode"}:
        ap.error(f"--parts {a.parts}: choose from train, decode")
    if "decode" in parts and not (a.checkpoint and Path(a.checkpoint).is_file()):
        ap.error(f"--checkpoint {a.checkpoint}: the decode part needs a trained checkpoint")
    try:
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        ap.error(f"--threads {a.threads}: numbers, e.g. 1,2")
    result: dict = {"commit": code_version(), "date": time.strftime("%Y-%m-%d"),
                    "machine": f"{os.cpu_count()} CPUs, "
                               f"{platform.processor() or platform.machine()}",
                    "matmul": [], "train": [], "decode": [], "checkpoint": a.checkpoint}
    for t in threads:
        for p in PRECISIONS:
            res = run_json(self_cmd("_matmul", p, t))
            result["matmul"].append({"precision": p, "threads": t, **res})
            print(f"matmul 1700x256x8000 {p} threads={t}: {res['gflops']:.1f} GFLOP/s",
                  flush=True)
    if "train" in parts:
        for r in range(a.rounds):
            for model in a.models.split(","):
                for t in threads:
                    for p in PRECISIONS if r % 2 == 0 else PRECISIONS[::-1]:
                        res = run_json(self_cmd("_train", model, p, t, a.warmup, a.steps))
                        result["train"].append({"model": model, "precision": p, "threads": t,
                                                "round": r, **res})
                        print(f"train {model} {p} threads={t} round {r}: "
                              f"{res['tokens_per_s']:.0f} tok/s", flush=True)
    if "decode" in parts:
        for beam in (1, 5):
            t = max(threads)
            outs = {}
            for p in PRECISIONS:
                res = run_json(self_cmd("_decode", a.checkpoint, p, beam, t))
                outs[p] = res.pop("hypotheses")
                result["decode"].append({"precision": p, "beam": beam, "threads": t, **res})
                print(f"decode beam {beam} {p} threads={t}: {res['sentences_per_s']:.1f} "
                      f"sent/s, BLEU {res['bleu']:.2f}", flush=True)
            result["decode"][-1]["differing_outputs"] = sum(
                x != y for x, y in zip(outs["fp32"], outs["bf16"], strict=True))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(report(result))


def report(res: dict) -> str:
    lines = [f"commit {res['commit']}, {res['date']}, {res['machine']}", "",
             "| measurement | threads | fp32 | bf16 | bf16 / fp32 |", "|---|---|---|---|---|"]
    for t in sorted({m["threads"] for m in res["matmul"]}):
        g = {m["precision"]: m["gflops"] for m in res["matmul"] if m["threads"] == t}
        lines.append(f"| matmul 1700x256x8000 GFLOP/s | {t} | {g['fp32']:.0f} | {g['bf16']:.0f} "
                     f"| {g['bf16'] / g['fp32']:.2f}x |")
    keys = sorted({(r["model"], r["threads"]) for r in res["train"]})
    for model, t in keys:
        rows = [r for r in res["train"] if r["model"] == model and r["threads"] == t]
        by = {p: {r["round"]: r["tokens_per_s"] for r in rows if r["precision"] == p}
              for p in PRECISIONS}
        ratios = [by["bf16"][k] / by["fp32"][k] for k in by["fp32"] if k in by["bf16"]]
        lines.append(f"| training tok/s, model={model} | {t} | "
                     f"{statistics.median(by['fp32'].values()):.0f} | "
                     f"{statistics.median(by['bf16'].values()):.0f} | "
                     f"{statistics.median(ratios):.2f}x |")
    for beam in (1, 5):
        d = {r["precision"]: r for r in res["decode"] if r["beam"] == beam}
        if len(d) == 2:
            name = "greedy" if beam == 1 else f"beam {beam}"
            lines.append(f"| decoding sent/s, {name} (BLEU) | {d['fp32']['threads']} | "
                         f"{d['fp32']['sentences_per_s']:.1f} ({d['fp32']['bleu']:.2f}) | "
                         f"{d['bf16']['sentences_per_s']:.1f} ({d['bf16']['bleu']:.2f}) | "
                         f"{d['bf16']['sentences_per_s'] / d['fp32']['sentences_per_s']:.2f}x; "
                         f"{d['bf16']['differing_outputs']} of 1,000 outputs differ |")
    return "\n".join(lines)


def subcommand(argv: list[str]) -> None:
    what, args = argv[0], argv[1:]
    if what == "_matmul":
        res = measure_matmul(args[0], int(args[1]))
    elif what == "_train":
        res = measure_train(args[0], args[1], int(args[2]), int(args[3]), int(args[4]))
    elif what == "_decode":
        res = measure_decode(args[0], args[1], int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown subcommand {what}")
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        subcommand(sys.argv[1:])
    else:
        main()
