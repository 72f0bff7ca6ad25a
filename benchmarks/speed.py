"""Training and decoding speed, ours against Joey NMT 2.3.0 on the same model and machine.

    python benchmarks/speed.py                      # everything (about 45 minutes on 2 cores)
    python benchmarks/speed.py --parts train --variants bahdanau --rounds 1

Model: `model=base` (embedding 256, bidirectional GRU encoder 2x256, GRU decoder 512 with input
feeding, Bahdanau attention), Multi30k en->de, our joint SentencePiece 8k vocabulary for both
systems, batches of `--batch-tokens` padded tokens (both count max(source, target) length x
sentences). Joey runs in its own virtual environment (created here under benchmarks/work/) with
its own training loop (`TrainManager.train_and_validate`) and search (`predict`).

- training: target tokens/s (real tokens, EOS included) over `--steps` full steps (forward,
  backward, clipping, Adam) after `--warmup` steps, for each thread setting; Joey and we
  alternate, `--rounds` times, and the ratio is taken per round.
- decoding: test_2016_flickr (1,000 sentences), greedy and beam 5, sentences/s. Both systems
  decode with the same weights: a model of ours trained for `--decode-model-minutes` (cached),
  ported to Joey's parameter names, so both produce (nearly) the same hypotheses.
- peak resident memory of every measured process; model FLOPs per target token counted by
  torch's FlopCounterMode on real batches; achieved GFLOP/s against a plain matmul.

Writes benchmarks/results/speed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from provenance import code_version

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "speed"
JOEY_VENV = ROOT / "benchmarks" / "work" / "joey-venv"
DATA = Path(os.environ.get("NMT_DATA", ROOT.parent / "shared" / "data" / "multi30k"))
DECODE_BATCH = 4000   # tokens per decoding batch, both systems (our default)
VARIANTS = ["bahdanau", "normed_bahdanau", "luong_dot", "luong_general", "luong_concat",
            "scaled_luong", "scaled_dot", "monotonic_bahdanau", "monotonic_luong", "location",
            "location_smooth", "local_m", "local_p", "multihead", "gmm"]
# ATTENTION@DECODER measures a mechanism in another decoder, e.g. bahdanau@bahdanau.
BAHDANAU_DECODER = [f"{v}@bahdanau" for v in VARIANTS]


# ---- helpers run in subprocesses (one measurement per process) ------------------------------

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_config(variant: str, batch_tokens: int, threads: int, extra: list[str] | None = None):
    """The resolved nmt-train config (model=base) for a variant, as nmt-train would build it."""
    from hydra import compose, initialize_config_module

    from nmt.cli.common import register_schemas, to_object
    from nmt.config import TrainConfig

    register_schemas()
    attention, _, decoder = variant.partition("@")
    overrides = [f"attention={attention}", f"decoder={decoder or 'luong'}", "model=base",
                 f"data.root={DATA}", "data.download=false", "data.test=[]",
                 f"data.cache_dir={WORK / 'cache'}", f"threads={threads}",
                 f"train.batch_tokens={batch_tokens}", "device=cpu", *(extra or [])]
    with initialize_config_module("nmt.configs", version_base=None):
        cfg = compose("train", overrides=overrides)
    return to_object(cfg, TrainConfig)


def measure_ours_train(variant: str, threads: int, warmup: int, steps: int,
                       batch_tokens: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nmt.data.dataset import make_batch, token_batches
    from nmt.train import Trainer

    cfg = train_config(variant, batch_tokens, threads)
    trainer = Trainer(cfg, WORK / "scratch")
    batches = token_batches(trainer.data.train, batch_tokens, cfg.seed, 0)
    for idx in batches[:warmup]:
        trainer.train_step(idx)
    tokens, start = 0, time.perf_counter()
    for idx in batches[warmup:warmup + steps]:
        tokens += trainer.train_step(idx)[1]
    seconds = time.perf_counter() - start
    # FLOPs of forward + backward on a few real batches (matmuls, convolutions).
    flops, flop_tokens = 0, 0
    for idx in batches[warmup + steps:warmup + steps + 5]:
        b = make_batch(trainer.data.train, idx)
        with FlopCounterMode(display=False) as counter:
            loss, _ = trainer.model.loss(b.src, b.src_len, b.tgt_in, b.tgt_out, 0.1)
            loss.backward()
        trainer.model.zero_grad(set_to_none=True)
        flops += counter.get_total_flops()
        flop_tokens += b.n_tokens
    real = sum(int(trainer.data.train.tgt_lens[idx].sum()) + len(idx)
               for idx in batches[warmup:warmup + steps])
    padded = sum(len(idx) * (int(trainer.data.train.tgt_lens[idx].max()) + 1)
                 for idx in batches[warmup:warmup + steps])
    return {"steps": steps, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "flops_per_token": flops / flop_tokens, "target_padding": 1 - real / padded,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "torch_threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb()}


def measure_ours_ddp(variant: str, warmup: int, steps: int, batch_tokens: int) -> dict:
    """Started by torchrun: data-parallel ranks of one thread each, `batch_tokens` per rank."""
    import torch

    from nmt.data.dataset import token_batches
    from nmt.distributed import init_from_env
    from nmt.train import Trainer

    cfg = train_config(variant, batch_tokens, 1)
    dist = init_from_env(torch.device("cpu"))
    trainer = Trainer(cfg, WORK / "scratch", dist=dist)
    batches = token_batches(trainer.data.train, batch_tokens, cfg.seed, 0)
    world, rank = dist.world_size, dist.rank
    for k in range(warmup):
        trainer.train_step(batches[k * world + rank])
    tokens, start = 0, time.perf_counter()
    for k in range(warmup, warmup + steps):
        tokens += trainer.train_step(batches[k * world + rank])[1]
    seconds = time.perf_counter() - start
    rss = sum(dist.gather(peak_rss_mb()))
    dist.close()
    if rank:
        sys.exit(0)
    return {"steps": steps, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds,
            "processes": world, "batch_tokens_per_process": batch_tokens, "peak_rss_mb": rss,
            "peak_rss_note": "sum over the processes"}


def measure_ours_decode(checkpoint: str, beam: int, threads: int) -> dict:
    import torch

    from nmt import checkpoint as ckpt_io
    from nmt.data.tokenizer import Tokenizer
    from nmt.device import setup_device
    from nmt.evaluate import score
    from nmt.model.seq2seq import build_model
    from nmt.translate import SearchOptions, translate

    setup_device("cpu", threads)   # as nmt-translate does (threads, allocator)
    ckpt = ckpt_io.load(checkpoint)
    tok = Tokenizer(bytes(ckpt["tokenizer"].tolist()))
    model = build_model(ckpt["config"]["model"], ckpt["config"]["attention"], len(tok),
                        ckpt["config"].get("decoder"))
    model.load_state_dict(ckpt["model"])
    src = read_lines(DATA / "test_2016_flickr.en.gz")
    ref = read_lines(DATA / "test_2016_flickr.de.gz")
    opts = SearchOptions(beam_size=beam, max_len_ratio=1.5, max_len_offset=0,
                         batch_tokens=DECODE_BATCH)
    translate(model, tok, src[:50], opts, torch.device("cpu"))  # warm-up
    start = time.perf_counter()
    hyps = translate(model, tok, src, opts, torch.device("cpu"))
    seconds = time.perf_counter() - start
    pieces = sum(len(h.tgt_pieces) for h in hyps)
    return {"sentences": len(hyps), "seconds": seconds, "sentences_per_s": len(hyps) / seconds,
            "output_pieces": pieces, "bleu": score([h.text for h in hyps], ref).bleu,
            "peak_rss_mb": peak_rss_mb()}


def count_ours_decode_flops(checkpoint: str, beam: int) -> dict:
    """Model FLOPs of decoding test_2016_flickr (counted once, untimed: the counter is slow)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from nmt import checkpoint as ckpt_io
    from nmt.data.tokenizer import Tokenizer
    from nmt.model.seq2seq import build_model
    from nmt.translate import SearchOptions, translate

    torch.set_num_threads(1)
    ckpt = ckpt_io.load(checkpoint)
    tok = Tokenizer(bytes(ckpt["tokenizer"].tolist()))
    model = build_model(ckpt["config"]["model"], ckpt["config"]["attention"], len(tok),
                        ckpt["config"].get("decoder"))
    model.load_state_dict(ckpt["model"])
    opts = SearchOptions(beam_size=beam, max_len_ratio=1.5, max_len_offset=0,
                         batch_tokens=DECODE_BATCH)
    with FlopCounterMode(display=False) as counter:
        translate(model, tok, read_lines(DATA / "test_2016_flickr.en.gz"), opts,
                  torch.device("cpu"))
    return {"beam": beam, "flops": counter.get_total_flops()}


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def matmul_gflops(threads: int, shape=(150, 768, 1536), seconds: float = 3.0) -> float:
    import torch

    torch.set_num_threads(threads)
    m, k, n = shape
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(20):
        a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            a @ b
        count += 20
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


# ---- orchestration -----------------------------------------------------------------------

def run_json(cmd: list[str], env: dict | None = None) -> dict:
    """Run a measurement process; its last 'RESULT {json}' line is the result."""
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise RuntimeError(f"measurement failed: {' '.join(cmd)}")
    return json.loads(lines[-1][len("RESULT "):])


def self_cmd(*args: object) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *map(str, args)]


def ensure_joey() -> Path:
    python = JOEY_VENV / "bin" / "python"
    if not python.is_file():
        print("creating Joey NMT's virtual environment in", JOEY_VENV, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(JOEY_VENV)], check=True)
        # The CPU build of torch first, so that joeynmt's requirement does not pull another.
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "joeynmt==2.3.0",
                        # importlib-metadata: imported by joeynmt, undeclared; sentencepiece
                        # 0.2.1+ dropped the SetVocabulary that joeynmt calls.
                        "importlib-metadata", "sentencepiece==0.2.0"], check=True)
    return python


def prepare_joey_files(batch_tokens: int) -> Path:
    """Plain-text splits, our SentencePiece model, a Joey vocabulary file and config."""
    from nmt.data.prepare import prepare_data

    cfg = train_config("bahdanau", batch_tokens, 1)
    data = prepare_data(cfg.data)
    d = WORK / "joey"
    (d / "data").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de"):
            out = d / "data" / f"{split}.{lang}"
            if not out.is_file():
                out.write_text("\n".join(read_lines(DATA / f"{split}.{lang}.gz")) + "\n",
                               encoding="utf-8")
    tok = data.tokenizer
    (d / "spm.model").write_bytes(tok.proto)
    # Joey puts <unk> <pad> <s> </s> first (ids 0-3), then the file's pieces: ours from id 4 on,
    # so ids >= 4 agree and the weight port swaps rows 0 and 1 (our pad=0, unk=1).
    (d / "vocab.txt").write_text("\n".join(tok.pieces(list(range(4, len(tok))))) + "\n",
                                 encoding="utf-8")
    m = cfg.model
    side = {"level": "bpe", "voc_file": str(d / "vocab.txt"), "tokenizer_type": "sentencepiece",
            "tokenizer_cfg": {"model_file": str(d / "spm.model")},
            "max_length": cfg.data.max_len}
    joey_cfg = {
        "name": "speed",
        "data": {"train": str(d / "data" / "train"), "dev": str(d / "data" / "val"),
                 "test": str(d / "data" / "test_2016_flickr"), "dataset_type": "plain",
                 "src": {"lang": "en", **side}, "trg": {"lang": "de", **side}},
        "testing": {"n_best": 1, "beam_size": 1, "beam_alpha": 0.6, "batch_size": 2000,
                    "batch_type": "token", "max_output_length": -1,
                    "eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"}},
        "training": {"random_seed": 1, "optimizer": "adam", "learning_rate": cfg.optim.lr,
                     "clip_grad_norm": cfg.optim.clip_norm, "label_smoothing": 0.1,
                     "batch_size": batch_tokens, "batch_type": "token", "epochs": 100,
                     # Not "plateau": Joey passes `verbose` to ReduceLROnPlateau, which this
                     # torch no longer takes. A per-epoch schedule costs nothing per step.
                     "scheduling": "decaying", "decaying_step_size": 1000,
                     "normalization": "tokens", "model_dir": str(d / "model"),
                     "overwrite": True, "shuffle": True, "use_cuda": False,
                     "early_stopping_metric": "bleu", "keep_best_ckpts": 1,
                     "eval_metrics": ["bleu"]},
        "model": {
            "initializer": "xavier_uniform", "embed_initializer": "normal",
            "encoder": {"type": "recurrent", "rnn_type": "gru", "hidden_size": m.hidden_size // 2,
                        "bidirectional": m.bidirectional, "num_layers": m.enc_layers,
                        "dropout": m.dropout, "embeddings": {"embedding_dim": m.emb_size}},
            "decoder": {"type": "recurrent", "rnn_type": "gru", "hidden_size": m.hidden_size,
                        "num_layers": m.dec_layers, "dropout": m.dropout,
                        "hidden_dropout": m.dropout, "attention": "bahdanau",
                        "input_feeding": True, "init_hidden": "bridge",
                        "embeddings": {"embedding_dim": m.emb_size}},
        },
    }
    path = d / "config.yaml"
    path.write_text(json.dumps(joey_cfg, indent=1))  # JSON is YAML
    return path


def decode_model(minutes: float, batch_tokens: int) -> Path:
    """A base bahdanau model of ours, trained once for `minutes` and cached."""
    run = WORK / f"decode_model_{minutes:g}min"
    best = run / "checkpoints" / "best.pt"
    if not best.is_file():
        print(f"training the decoding model for {minutes:g} minutes", flush=True)
        subprocess.run(["nmt-train", "model=base", "attention=bahdanau", f"data.root={DATA}",
                        "data.download=false", "data.test=[]", f"data.cache_dir={WORK / 'cache'}",
                        f"train.max_minutes={minutes}", "train.valid_every=100000",
                        f"train.batch_tokens={batch_tokens}", "train.heatmap_sentences=0",
                        f"hydra.run.dir={run}"], check=True, cwd=ROOT)
    return best


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="train,decode", help="train,decode")
    ap.add_argument("--variants", default=",".join(VARIANTS + BAHDANAU_DECODER),
                    help="attention names; NAME@bahdanau for the Bahdanau decoder")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-tokens", type=int, default=2000)
    ap.add_argument("--decode-model-minutes", type=float, default=6)   # as published
    ap.add_argument("--no-joey", action="store_true")
    ap.add_argument("--joey-bucketed", action="store_true",
                    help="also train Joey with batches cut from length-sorted pools, as ours "
                         "(like for like; Joey 2.3 does not bucket)")
    ap.add_argument("--ddp", type=int, default=2,
                    help="also train with this many one-thread processes (torchrun); 0: skip")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.json"))
    a = ap.parse_args()
    parts = a.parts.split(",")
    if not set(parts) <= {"train", "decode"}:   # a typo would write an empty results file
        ap.error(f"--parts {a.parts}: choose from train, decode")
    try:
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        ap.error(f"--threads {a.threads}: numbers, e.g. 1,2")
    commit = code_version()   # before anything runs
    variants = a.variants.split(",")
    WORK.mkdir(parents=True, exist_ok=True)
    joey = None if a.no_joey else ensure_joey()
    joey_cfg = prepare_joey_files(a.batch_tokens)
    result: dict = {"commit": commit, "date": time.strftime("%Y-%m-%d"),
                    "machine": f"{os.cpu_count()} CPUs, "
                               f"{platform.processor() or platform.machine()}",
                    "batch_tokens": a.batch_tokens, "matmul_gflops": {}, "train": [], "decode": []}
    for t in threads:
        result["matmul_gflops"][t] = run_json(self_cmd("_matmul", t))["gflops"]
        print(f"matmul 150x768x1536, {t} thread(s): {result['matmul_gflops'][t]:.1f} GFLOP/s",
              flush=True)

    if "train" in parts:
        for r in range(a.rounds):
            for t in threads:
                systems = ["ours", "joey"] if joey else ["ours"]
                if joey and a.joey_bucketed:
                    systems.append("joey-bucketed")
                for system in systems if r % 2 == 0 else systems[::-1]:
                    if system.startswith("joey"):
                        res = run_json([str(joey), str(ROOT / "benchmarks" / "joey_driver.py"),
                                        "train", str(joey_cfg), "--warmup", str(a.warmup),
                                        "--steps", str(a.steps), "--threads", str(t),
                                        *(["--bucket"] if system == "joey-bucketed" else [])])
                    else:
                        res = run_json(self_cmd("_train", "bahdanau", t, a.warmup, a.steps,
                                                a.batch_tokens))
                    row = {"system": system, "variant": "bahdanau", "threads": t, "round": r,
                           **res}
                    result["train"].append(row)
                    print(f"train {system:5s} bahdanau threads={t} round {r}: "
                          f"{res['tokens_per_s']:.0f} tok/s "
                          f"({res['tokens'] / res['steps']:.0f} target tokens a step), peak "
                          f"RSS {res['peak_rss_mb']:.0f} MB", flush=True)
            if a.ddp > 1:
                # Data-parallel ranks of one thread each; the global batch is the same size.
                res = run_json([sys.executable, "-m", "torch.distributed.run",
                                f"--nproc_per_node={a.ddp}", *self_cmd(
                                    "_train_ddp", "bahdanau", a.warmup, a.steps,
                                    a.batch_tokens // a.ddp)[1:]], env={"OMP_NUM_THREADS": "1"})
                result["train"].append({"system": "ours", "variant": "bahdanau",
                                        "threads": f"{a.ddp}x1", "round": r, **res})
                print(f"train ours  bahdanau {a.ddp} processes x 1 thread round {r}: "
                      f"{res['tokens_per_s']:.0f} tok/s, peak RSS {res['peak_rss_mb']:.0f} MB",
                      flush=True)
        best_t = max(threads, key=lambda t: statistics.median(  # int settings only
            x["tokens_per_s"] for x in result["train"] if x["system"] == "ours"
            and x["threads"] == t))
        result["best_threads_train"] = best_t
        for v in variants:
            if v == "bahdanau":
                continue
            res = run_json(self_cmd("_train", v, best_t, a.warmup, a.steps, a.batch_tokens))
            result["train"].append({"system": "ours", "variant": v, "threads": best_t,
                                    "round": 0, **res})
            print(f"train ours  {v} threads={best_t}: {res['tokens_per_s']:.0f} tok/s", flush=True)

    if "decode" in parts:
        ckpt = decode_model(a.decode_model_minutes, a.batch_tokens)
        result["decode_flops"] = {b: run_json(self_cmd("_decode_flops", ckpt, b))["flops"]
                                  for b in (1, 5)}
        for beam in (1, 5):
            for t in threads:
                systems = ["ours", "joey"] if joey else ["ours"]
                for system in systems if beam == 1 else systems[::-1]:
                    if system == "joey":
                        res = run_json([str(joey), str(ROOT / "benchmarks" / "joey_driver.py"),
                                        "decode", str(joey_cfg), "--weights", str(ckpt),
                                        "--beam", str(beam), "--threads", str(t),
                                        "--batch-size", str(DECODE_BATCH)])
                        res["bleu"] = bleu_of(res.pop("hypotheses"))
                    else:
                        res = run_json(self_cmd("_decode", ckpt, beam, t))
                    result["decode"].append({"system": system, "beam": beam, "threads": t,
                                             **res})
                    print(f"decode {system:5s} beam {beam} threads={t}: "
                          f"{res['sentences_per_s']:.1f} sent/s ({res['seconds']:.1f} s, "
                          f"BLEU {res['bleu']:.2f}, {res['output_pieces']} pieces), peak RSS "
                          f"{res['peak_rss_mb']:.0f} MB", flush=True)

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(report(result))


def bleu_of(hyps: list[str]) -> float:
    from nmt.evaluate import score

    return score(hyps, read_lines(DATA / "test_2016_flickr.de.gz")).bleu


def best(rows: list[dict], key: str, **match: object) -> dict | None:
    """The thread setting with the best median of `key` among rows matching `match`."""
    rows = [r for r in rows if all(r.get(k) == v for k, v in match.items())
            and isinstance(r["threads"], int)]
    if not rows:
        return None
    by_t: dict[int, list[dict]] = {}
    for r in rows:
        by_t.setdefault(r["threads"], []).append(r)
    t = max(by_t, key=lambda t: statistics.median(r[key] for r in by_t[t]))
    vals = [r[key] for r in by_t[t]]
    return {"threads": t, key: statistics.median(vals), "n": len(vals),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in by_t[t]), "rows": by_t[t]}


def report(res: dict) -> str:
    lines = [f"commit {res['commit']}, {res['date']}, {res['machine']}, batches of "
             f"{res['batch_tokens']} tokens", ""]
    lines += ["| measurement | threads | ours | Joey NMT 2.3.0 | ours / Joey |",
              "|---|---|---|---|---|"]
    bahdanau = [r for r in res["train"] if r["variant"] == "bahdanau"]
    joey_best = {}  # round -> Joey's best thread setting in that round
    for r in bahdanau:
        if r["system"] == "joey":
            joey_best[r["round"]] = max(joey_best.get(r["round"], 0), r["tokens_per_s"])
    for t in sorted({r["threads"] for r in bahdanau}, key=str):
        o = [r for r in bahdanau if r["system"] == "ours" and r["threads"] == t]
        j = {r["round"]: r for r in bahdanau if r["system"] == "joey" and r["threads"] == t}
        if isinstance(t, str):  # data-parallel processes: against Joey's best setting
            ratios = [r["tokens_per_s"] / joey_best[r["round"]] for r in o
                      if r["round"] in joey_best]
            j_text = "(its best setting)"
        else:
            ratios = [r["tokens_per_s"] / j[r["round"]]["tokens_per_s"] for r in o
                      if r["round"] in j]
            j_text = (fmt(statistics.median(r["tokens_per_s"] for r in j.values()))
                      if j else "-")
        lines.append(f"| training tok/s (bahdanau) | {t} | "
                     f"{fmt(statistics.median(r['tokens_per_s'] for r in o))} | {j_text} | "
                     + (f"{statistics.median(ratios):.2f}x |" if ratios else "- |"))
    notes: list[str] = []
    for beam in (1, 5):
        for t in sorted({r["threads"] for r in res["decode"]}):
            o = [r for r in res["decode"] if r["system"] == "ours" and r["beam"] == beam
                 and r["threads"] == t]
            j = [r for r in res["decode"] if r["system"] == "joey" and r["beam"] == beam
                 and r["threads"] == t]
            if not o:
                continue
            name = "greedy" if beam == 1 else f"beam {beam}"
            flops = res.get("decode_flops", {})
            flops = flops.get(beam) or flops.get(str(beam))
            if flops:
                peak = res["matmul_gflops"].get(t) or res["matmul_gflops"].get(str(t))
                got = flops / o[0]["seconds"] / 1e9
                notes.append(f"{name}, {t} thread(s): {flops / 1e12:.2f} TFLOP counted, "
                             f"{got:.1f} GFLOP/s ({100 * got / peak:.0f}% of the matmul's "
                             f"{peak:.1f}); at the matmul's rate it would take "
                             f"{flops / peak / 1e9:.1f} s instead of {o[0]['seconds']:.1f} s.")
            ratio = (f"{o[0]['sentences_per_s'] / j[0]['sentences_per_s']:.2f}x" if j else "-")
            lines.append(f"| decoding sent/s, {name} | {t} | {o[0]['sentences_per_s']:.1f} "
                         f"(BLEU {o[0]['bleu']:.1f}) | "
                         + (f"{j[0]['sentences_per_s']:.1f} (BLEU {j[0]['bleu']:.1f})"
                            if j else "-") + f" | {ratio} |")
    if notes:
        lines += ["", "Decoding FLOPs (model arithmetic, counted by FlopCounterMode):"]
        lines += [f"- {n}" for n in notes]
    rss = {}
    for r in res["train"] + res["decode"]:
        key = (r["system"], "train" if "tokens_per_s" in r else f"beam {r['beam']}")
        rss[key] = max(rss.get(key, 0), r["peak_rss_mb"])
    lines += ["", "Peak resident memory (MB): " + ", ".join(
        f"{s} {w} {v:.0f}" for (s, w), v in sorted(rss.items()))]
    ours_b = best(res["train"], "tokens_per_s", system="ours", variant="bahdanau")
    if ours_b:
        row = ours_b["rows"][0]
        achieved = row["flops_per_token"] * ours_b["tokens_per_s"] / 1e9
        peak = res["matmul_gflops"].get(ours_b["threads"]) or res["matmul_gflops"].get(
            str(ours_b["threads"]))
        lines += ["", f"Model FLOPs per target token (forward + backward, counted): "
                  f"{row['flops_per_token'] / 1e6:.1f} M; target padding "
                  f"{100 * row['target_padding']:.0f}%; achieved {achieved:.1f} GFLOP/s at "
                  f"{ours_b['threads']} thread(s) against {peak:.1f} GFLOP/s for a plain "
                  f"150x768x1536 matmul ({100 * achieved / peak:.0f}%)."]
        ddp = [r for r in res["train"] if isinstance(r["threads"], str)]
        peak1 = res["matmul_gflops"].get(1) or res["matmul_gflops"].get("1")
        if ddp and peak1:
            n = ddp[0]["processes"]
            got = row["flops_per_token"] * statistics.median(r["tokens_per_s"] for r in ddp) / 1e9
            lines.append(f"With {n} one-thread processes: {got:.1f} GFLOP/s against {n} x "
                         f"{peak1:.1f} ({100 * got / (n * peak1):.0f}%).")
        variants = [r for r in res["train"] if r["system"] == "ours"
                    and r["threads"] == ours_b["threads"]]
        by_v: dict[str, list[float]] = {}
        for r in variants:
            by_v.setdefault(r["variant"], []).append(r["tokens_per_s"])
        if len(by_v) > 1:
            base = statistics.median(by_v["bahdanau"])
            lines += ["", "| variant | training tok/s | / bahdanau | FLOPs/token (M) |",
                      "|---|---|---|---|"]
            for v, vals in by_v.items():
                f = next(r["flops_per_token"] for r in variants if r["variant"] == v)
                lines.append(f"| {v} | {fmt(statistics.median(vals))} | "
                             f"{statistics.median(vals) / base:.2f} | {f / 1e6:.1f} |")
    return "\n".join(lines)


def subcommand(argv: list[str]) -> None:
    what, args = argv[0], argv[1:]
    if what == "_matmul":
        res = {"gflops": matmul_gflops(int(args[0]))}
    elif what == "_train":
        res = measure_ours_train(args[0], int(args[1]), int(args[2]), int(args[3]), int(args[4]))
    elif what == "_train_ddp":
        res = measure_ours_ddp(args[0], int(args[1]), int(args[2]), int(args[3]))
    elif what == "_decode_flops":
        res = count_ours_decode_flops(args[0], int(args[1]))
    elif what == "_decode":
        res = measure_ours_decode(args[0], int(args[1]), int(args[2]))
    else:
        raise SystemExit(f"unknown subcommand {what}")
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):
        subcommand(sys.argv[1:])
    else:
        main()
