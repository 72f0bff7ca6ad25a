"""Streaming translation: peak memory of nmt-translate on a million input lines.

    python benchmarks/stream.py                      # 1,000,000 lines, stdin -> stdout
    python benchmarks/stream.py --lines 20000        # a quick look

1. A tiny model (emb 32, hidden 32, a 1,000-piece vocabulary) is trained for a few steps on
   Multi30k ($NMT_DATA, default ../shared/data/multi30k), one thread: the figure is about memory,
   not quality, and an untrained model decodes every line to its length limit, the worst case.
2. --lines short lines (the first 3-6 words of Multi30k validation sentences, in turn) are
   written to benchmarks/work/stream/input.en.
3. `nmt-translate checkpoint=... < input.en > output.de`, greedy, one thread, in its own process:
   wall time and peak RSS (the child's ru_maxrss from os.wait4); the output must have one line
   per input line.

Prints the figures and writes benchmarks/results/stream.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from provenance import code_version

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work" / "stream"
DATA = Path(os.environ.get("NMT_DATA", ROOT.parent / "shared" / "data" / "multi30k"))


def train_tiny(steps: int) -> Path:
    best = WORK / "run" / "checkpoints" / "best.pt"
    if best.is_file():
        return best
    cmd = [sys.executable, "-m", "nmt.cli.train", f"data.root={DATA}", "data.download=false",
           f"data.cache_dir={WORK / 'cache'}", "data.vocab_size=1000", "data.test=[]",
           "data.valid_limit=50", "model.emb_size=32", "model.hidden_size=32",
           f"train.max_steps={steps}", f"train.valid_every={steps}", "train.batch_tokens=1000",
           "train.heatmap_sentences=0", "train.test_beam=0", "threads=1",
           f"hydra.run.dir={WORK / 'run'}"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"training the model failed:\n{res.stderr[-2000:]}")
    return best


def write_input(path: Path, lines: int) -> None:
    from nmt.data.corpus import read_lines

    sentences = read_lines(DATA / "val.en.gz")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            words = sentences[i % len(sentences)].split()
            f.write(" ".join(words[:3 + i % 4]) + "\n")


def translate(best: Path, source: Path, target: Path, chunk_lines: int) -> dict:
    cmd = [sys.executable, "-m", "nmt.cli.translate", f"checkpoint={best}",
           "search.beam_size=1", "threads=1", f"chunk_lines={chunk_lines}",
           f"hydra.run.dir={WORK / 'translate'}"]
    start = time.time()
    with open(source, "rb") as stdin, open(target, "wb") as stdout, \
            open(WORK / "translate.log", "wb") as stderr:
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=stdout, stderr=stderr, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.time() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"nmt-translate failed; see {WORK / 'translate.log'}")
    return {"command": " ".join(cmd[1:]) + f" < {source.name} > {target.name}",
            "seconds": round(seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=30, help="training steps of the model")
    parser.add_argument("--chunk-lines", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" /
                        "stream.json")
    args = parser.parse_args()
    commit = code_version()   # before anything runs
    WORK.mkdir(parents=True, exist_ok=True)
    best = train_tiny(args.steps)
    source, target = WORK / "input.en", WORK / "output.de"
    write_input(source, args.lines)
    result = translate(best, source, target, args.chunk_lines)
    out_lines = count_lines(target)
    if out_lines != args.lines:
        sys.exit(f"{out_lines} output lines for {args.lines} input lines")
    result.update(lines=args.lines, input_mib=round(source.stat().st_size / 2**20, 1),
                  output_mib=round(target.stat().st_size / 2**20, 1),
                  lines_per_s=round(args.lines / result["seconds"]), commit=commit)
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
