"""What an ensemble costs: beam-5 decoding of test_2016_flickr with 1, 2 and 3 models.

    python benchmarks/ensemble_cost.py CHECKPOINT [CHECKPOINT ...] [--sizes 1,2,3]

Ensembles of N models are the first N checkpoints given, repeating the list when there are fewer
(the cost of a step does not depend on the weights, only on the model's shape and the output
lengths, which are printed). Each size is decoded in its own process after a warm-up, with the
threads and allocator of nmt-translate. Prints sentences/s and time per sentence against N times
one model, and writes benchmarks/results/ensemble_cost.json (or --out).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from provenance import code_version

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("NMT_DATA", ROOT.parent / "shared" / "data" / "multi30k"))


def measure(paths: list[str], beam: int, threads: int) -> dict:
    import nmt
    from nmt.device import setup_device

    setup_device("cpu", threads)
    with gzip.open(DATA / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as f:
        src = f.read().split("\n")[:-1]
    translator = nmt.load(paths)
    translator.translate(src[:50], beam_size=beam)   # warm-up
    start = time.perf_counter()
    out = translator.translate(src, beam_size=beam)
    seconds = time.perf_counter() - start
    return {"models": len(paths), "sentences": len(out), "seconds": seconds,
            "sentences_per_s": len(out) / seconds,
            "output_words": sum(len(t.text.split()) for t in out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--sizes", default="1,2,3")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ensemble_cost.json"))
    a = ap.parse_args()
    commit = code_version()   # before anything runs
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        paths = [a.checkpoints[i % len(a.checkpoints)] for i in range(n)]
        out = subprocess.run([sys.executable, __file__, "_measure", json.dumps(paths),
                              str(a.beam), str(a.threads)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        one = rows[0]["seconds"] / rows[0]["models"]
        r = rows[-1]
        print(f"{n} model(s): {r['sentences_per_s']:.1f} sent/s, {r['seconds']:.1f} s "
              f"({r['seconds'] / (n * one):.2f}x of {n} x one model), "
              f"{r['output_words']} output words", flush=True)
    Path(a.out).write_text(json.dumps({"commit": commit, "date": time.strftime("%Y-%m-%d"),
                                       "beam": a.beam, "threads": a.threads,
                                       "checkpoints": a.checkpoints, "rows": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        print(json.dumps(measure(json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
    else:
        main()
