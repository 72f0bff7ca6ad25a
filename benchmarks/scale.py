"""Large corpora: preprocessing and training start-up on a synthetic corpus of millions of pairs.

    python benchmarks/scale.py                       # 5,000,000 pairs (generated once)
    python benchmarks/scale.py --pairs 50000         # a quick look

The corpus is generated under benchmarks/work/scale/ (about --words words a side: Zipf-
distributed words of a synthetic vocabulary, and a target that is a word-by-word mapping of the
source with some neighbours swapped), then each stage runs in its own process:

1. preprocess: `nmt-preprocess` from an empty cache: validation, SentencePiece (8k, on its
   sample), encoding into memory-mapped arrays; wall time, peak RSS, size on disk.
2. start-up: what nmt-train does before its first step, on the built cache (tokenizer and
   memory-mapped pairs, model, optimizer, the first epoch's batches, the first batch); wall
   time, peak RSS, and the bytes read after the imports (the training text is not read again;
   the validation text is).
3. train: `nmt-train model=small` for --steps steps and one validation; wall time, peak RSS.

Peak RSS is the child's ru_maxrss (os.wait4), which counts the pages of the memory-mapped arrays
that the process touched as well as its own memory. Prints a table and writes
benchmarks/results/scale.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from provenance import code_version

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "scale"
VALID_PAIRS = 500
GIB = 2**30


def synthetic_vocabulary(n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct made-up words of 1-4 syllables."""
    consonants, vowels = list("bcdfghklmnprstvwz"), list("aeiou")
    syllables = np.array([c + v for c in consonants for v in vowels]
                         + [c + v + "n" for c in consonants for v in vowels])
    words: set[str] = set()
    while len(words) < n:
        k = rng.integers(1, 5)
        words.add("".join(rng.choice(syllables, k)))
    return np.array(sorted(words))


def generate(folder: Path, pairs: int, words: int, seed: int = 1, chunk: int = 100_000) -> None:
    """train.{src,tgt} and val.{src,tgt} in `folder`; skipped when already complete."""
    done = folder / "complete"
    if done.is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = 20_000
    src_words = synthetic_vocabulary(vocab, rng)
    tgt_words = synthetic_vocabulary(vocab, rng)
    translation = rng.permutation(vocab)           # source word i -> target word translation[i]
    cdf = np.cumsum(1.0 / np.arange(1, vocab + 1))  # Zipf: frequency ~ 1 / rank
    cdf /= cdf[-1]
    start = time.time()
    for split, n in (("train", pairs), ("val", VALID_PAIRS)):
        with open(folder / f"{split}.src", "w") as fs, open(folder / f"{split}.tgt", "w") as ft:
            for first in range(0, n, chunk):
                m = min(chunk, n - first)
                lengths = rng.integers(words // 2, words * 3 // 2 + 1, m)  # mean `words`
                ids = np.searchsorted(cdf, rng.random(int(lengths.sum())))
                tgt_ids = translation[ids]
                # Swap some neighbours so that the alignment is not the identity.
                swap = np.flatnonzero(rng.random(len(ids) - 1) < 0.1)
                tgt_ids[swap], tgt_ids[swap + 1] = tgt_ids[swap + 1], tgt_ids[swap].copy()
                bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
                for out, table, seq in ((fs, src_words, ids), (ft, tgt_words, tgt_ids)):
                    tokens = table[seq].tolist()
                    out.write("".join(" ".join(tokens[a:b]) + "\n"
                                      for a, b in zip(bounds[:-1], bounds[1:], strict=True)))
    done.write_text(json.dumps({"pairs": pairs, "words": words, "seed": seed,
                                "seconds": round(time.time() - start, 1)}))


def measure(cmd: list[str], log: Path, env: dict | None = None) -> dict:
    """Run `cmd`; its wall time and peak RSS (its own, not this process's)."""
    start = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env or os.environ.copy())
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.time() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed ({code}); see {log}")
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def data_overrides(corpus: Path, cache: Path) -> list[str]:
    return [f"data.train_src={corpus / 'train.src'}", f"data.train_tgt={corpus / 'train.tgt'}",
            f"data.valid_src={corpus / 'val.src'}", f"data.valid_tgt={corpus / 'val.tgt'}",
            "data.test=[]", "data.download=false", f"data.cache_dir={cache}",
            "data.src_lang=src", "data.tgt_lang=tgt"]


def startup(overrides: list[str]) -> None:
    """Child process: what nmt-train does before its first step; prints figures as JSON."""
    t0 = time.time()
    from hydra import compose, initialize_config_module

    import nmt.cli.train  # noqa: F401  (registers the schemas)
    from nmt.cli.common import to_object
    from nmt.config import TrainConfig
    from nmt.data.dataset import make_batch, token_batches
    from nmt.train import Trainer

    def bytes_read() -> int:  # read() and pread() calls of this process so far
        io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
        return int(io["rchar"])

    imported, read_before = time.time(), bytes_read()
    with initialize_config_module("nmt.configs", version_base="1.3"):
        cfg = to_object(compose("train", overrides=overrides), TrainConfig)
    trainer = Trainer(cfg, WORK / "startup_run")
    ready = time.time()
    batches = token_batches(trainer.data.train, cfg.train.batch_tokens, cfg.seed, 0)
    make_batch(trainer.data.train, batches[0])
    done = time.time()
    print(json.dumps({"import_s": round(imported - t0, 2), "data_and_model_s":
                      round(ready - imported, 2), "first_epoch_batches_s": round(done - ready, 2),
                      "batches": len(batches), "pairs": len(trainer.data.train),
                      "read_mib": round((bytes_read() - read_before) / 2**20, 2)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=5_000_000)
    ap.add_argument("--words", type=int, default=25, help="mean words per sentence")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-tokens", type=int, default=2000)
    ap.add_argument("--keep-cache", action="store_true", help="do not rebuild the cache")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    ap.add_argument("--startup", nargs="*", help=argparse.SUPPRESS)  # internal: child stage
    args = ap.parse_args()
    commit = code_version()   # before anything runs
    if args.startup is not None:
        startup(args.startup)
        return

    corpus = WORK / f"corpus-{args.pairs}x{args.words}"
    cache = WORK / f"cache-{args.pairs}x{args.words}"
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"generating {args.pairs} pairs in {corpus} (once)", flush=True)
    generate(corpus, args.pairs, args.words)
    text_bytes = sum((corpus / f"train.{s}").stat().st_size for s in ("src", "tgt"))
    data = data_overrides(corpus, cache)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    results: dict = {"pairs": args.pairs, "mean_words": args.words, "threads": args.threads,
                     "text_mib": round(text_bytes / 2**20, 1)}

    rebuilt = not (args.keep_cache and cache.is_dir())
    if rebuilt:
        shutil.rmtree(cache, ignore_errors=True)
    print("1/3 preprocessing", flush=True)
    results["preprocess"] = measure(
        [sys.executable, "-m", "nmt.cli.preprocess", *data, f"threads={args.threads}",
         f"hydra.run.dir={logs / 'preprocess'}"], logs / "preprocess.txt", env)
    folder, = cache.glob("train-*")
    info = json.loads((folder / "info.json").read_text())
    results["preprocess"].update(
        cache_mib=round(sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**20,
                        1), kept=info["kept"], src_pieces=info["src_tokens"],
        tgt_pieces=info["tgt_tokens"], skipped=info["empty"] + info["too_long"],
        from_cache=not rebuilt)

    train = [*data, "model=small", f"threads={args.threads}",
             f"train.batch_tokens={args.batch_tokens}"]
    print("2/3 training start-up", flush=True)
    startup_log = logs / "startup.txt"
    results["startup"] = measure([sys.executable, __file__, "--startup", *train], startup_log,
                                 env)
    results["startup"].update(json.loads(startup_log.read_text().strip().splitlines()[-1]))

    print(f"3/3 training {args.steps} steps", flush=True)
    run_dir = WORK / "train_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    results["train"] = measure(
        [sys.executable, "-m", "nmt.cli.train", *train, f"train.max_steps={args.steps}",
         f"train.valid_every={args.steps}", "data.valid_limit=100", "train.heatmap_sentences=0",
         "train.test_beam=0", f"hydra.run.dir={run_dir}"], logs / "train.txt", env)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    results["train"].update(steps=metrics[-1]["step"], train_loss=round(metrics[-1]
                            ["train_loss"], 3), tokens_per_s=round(metrics[-1]["tokens_per_s"]))

    peak = max(results[k]["peak_rss_mib"] for k in ("startup", "train")) / 1024
    results["training_peak_rss_under_2gib"] = peak < 2
    results["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "commit": commit}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print(table(results))
    print(f"written: {args.out}")


def table(r: dict) -> str:
    p, s, t = r["preprocess"], r["startup"], r["train"]
    rows = [
        ("preprocess (validate, SentencePiece, encode)", p["seconds"], p["peak_rss_mib"],
         f"{r['text_mib']:.0f} MiB text -> {p['cache_mib']:.0f} MiB cache, {p['kept']} pairs"),
        ("training start-up (cache, model, epoch batches)", s["seconds"], s["peak_rss_mib"],
         f"{s['batches']} batches; {s['read_mib']} MiB read after imports"),
        (f"start-up + {t['steps']} steps + validation", t["seconds"], t["peak_rss_mib"],
         f"{t['tokens_per_s']} target tok/s"),
    ]
    lines = [f"{r['pairs']:,} pairs, about {r['mean_words']} words a side, "
             f"{r['threads']} thread(s)", "", "| stage | seconds | peak RSS MiB | notes |",
             "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
