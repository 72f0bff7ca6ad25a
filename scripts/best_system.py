"""The strongest system of benchmarks/RESULTS.md, end to end: several seeds of experiment=best,
the best single model and the ensemble of all of them, chosen and tuned on the validation set
only; each test set is decoded once per system.

    NMT_DATA=../shared/data/multi30k python scripts/best_system.py [--seeds 5] \
        [--alphas 0.4,0.6,0.8,1.0] [nmt-train overrides, e.g. hydra/launcher=parallel]

Run it again after an interruption: the training sweep resumes and keeps finished seeds.
Writes system.json and the ensemble's translations into multirun/best_system/ensemble/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "multirun" / "best_system"
TESTS = ("test_2016_flickr", "test_2017_flickr")


def train(seeds: int, overrides: list[str]) -> None:
    data = os.environ.get("NMT_DATA")   # a local Multi30k; unset: downloaded to data/
    local = [f"data.root={data}", "data.download=false"] if data else []
    seed_list = ",".join(str(s) for s in range(1, seeds + 1))
    cmd = ["nmt-train", "-m", "experiment=best", f"seed={seed_list}", *local, *overrides,
           f"hydra.sweep.dir={SWEEP}"]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def finished_runs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.glob("*/summary.json")
                  if (p.parent / "checkpoints" / "best.pt").is_file())


def valid_bleu(run: Path) -> float:
    return json.loads((run / "summary.json").read_text())["progress"]["best_bleu"]


def best_single(runs: list[Path]) -> Path:
    """The run with the highest validation BLEU (the test scores are never looked at)."""
    return max(runs, key=valid_bleu)


def pick_alpha(scores: dict[float, float]) -> float:
    """The length penalty with the best validation BLEU; ties go to the smaller alpha."""
    return max(sorted(scores), key=lambda a: scores[a])


def corpus(root: Path, split: str) -> tuple[list[str], list[str]]:
    from nmt.data.corpus import find_file, read_lines
    return read_lines(find_file(root, split, "en")), read_lines(find_file(root, split, "de"))


def ensemble_system(runs: list[Path], data: Path, alphas: list[float], out: Path,
                    device: str = "auto", valid: str = "val", tests: tuple[str, ...] = TESTS
                    ) -> dict:
    """Tune the ensemble's length penalty on `valid`, then decode each test set once with it."""
    import nmt
    from nmt.device import setup_device
    from nmt.evaluate import score

    translator = nmt.load([r / "checkpoints" / "best.pt" for r in runs], setup_device(device))
    src, ref = corpus(data, valid)
    tuned = {a: score([t.text for t in translator.translate(src, beam_size=5, alpha=a)],
                      ref).bleu for a in alphas}
    alpha = pick_alpha(tuned)
    out.mkdir(parents=True, exist_ok=True)
    test = {}
    for name in tests:
        src, ref = corpus(data, name)
        hyps = [t.text for t in translator.translate(src, beam_size=5, alpha=alpha)]
        (out / f"{name}.de").write_text("".join(h + "\n" for h in hyps), encoding="utf-8")
        s = score(hyps, ref)
        test[name] = {"bleu": s.bleu, "chrf": s.chrf, "bleu_signature": s.bleu_signature}
    return {"runs": [str(r) for r in runs], "valid_bleu_by_alpha": tuned, "alpha": alpha,
            "beam": 5, "test": test}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--alphas", default="0.4,0.6,0.8,1.0")
    ap.add_argument("--no-train", action="store_true", help="use the runs already finished")
    a, overrides = ap.parse_known_args()
    if not a.no_train:
        train(a.seeds, overrides)
    runs = finished_runs(SWEEP)
    if not runs:
        raise SystemExit(f"no finished run in {SWEEP}")
    single = best_single(runs)
    data = Path(os.environ.get("NMT_DATA", ROOT / "data" / "multi30k"))
    system = {
        "single": {"run": str(single), "valid_bleu": valid_bleu(single),
                   "test": json.loads((single / "summary.json").read_text()).get("test", {})},
        "ensemble": ensemble_system(runs, data, [float(x) for x in a.alphas.split(",")],
                                    SWEEP / "ensemble"),
    }
    (SWEEP / "system.json").write_text(json.dumps(system, indent=1))
    for name in TESTS:
        one = system["single"]["test"].get(name, {}).get("bleu", float("nan"))
        ens = system["ensemble"]["test"][name]["bleu"]
        print(f"{name}: best single (by validation) {one:.2f}, ensemble of {len(runs)} "
              f"{ens:.2f} (alpha {system['ensemble']['alpha']})")


if __name__ == "__main__":
    main()
