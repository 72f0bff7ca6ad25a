"""The strongest system of benchmarks/RESULTS.md, end to end: several seeds of experiment=best,
the best single model and the ensemble of all of them, chosen and tuned on the validation set
only; each test set is decoded once per system.

    NMT_DATA=../shared/data/multi30k python scripts/best_system.py [--seeds 5] \
        [--alphas 0.4,0.6,0.8,1.0] [nmt-train overrides, e.g. hydra/launcher=parallel]

Run it again after an interruption: the training sweep resumes and keeps finished seeds.
Writes system.json and the ensemble's translations (ensemble/) into the sweep folder,
multirun/best_system unless --sweep says otherwise. The single model is decoded by its own
run at its end (train.test_alpha); the ensemble's length penalty is tuned on validation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TESTS = ("test_2016_flickr", "test_2017_flickr")


def train(seeds: int, overrides: list[str], data: Path | None, sweep: Path) -> None:
    local = [f"data.root={data}", "data.download=false"] if data else []
    seed_list = ",".join(str(s) for s in range(1, seeds + 1))
    cmd = [sys.executable, "-m", "nmt.cli.train", "-m", "experiment=best", f"seed={seed_list}",
           *local, *overrides, f"hydra.sweep.dir={sweep}"]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        code = proc.wait()
    except KeyboardInterrupt:   # the sweep got Ctrl-C too: let it save last.pt and stop
        code = proc.wait()
    if code:
        raise SystemExit(code if code > 0 else 128 - code)   # killed by signal -code


def seed_runs(sweep: Path, seeds: int) -> list[Path]:
    """The finished run of each seed 1..seeds in `sweep`, all of one config but for the seed;
    an error names what is missing or mixed up (other seeds' runs are left out)."""
    runs: dict[int, list[Path]] = {}
    configs = {}
    for path in sorted(sweep.glob("*/.hydra/config.yaml")):
        cfg = yaml.safe_load(path.read_text())
        seed = cfg.pop("seed")
        if 1 <= seed <= seeds:
            run = path.parent.parent
            runs.setdefault(seed, []).append(run)
            configs[run] = cfg
    missing = [s for s in range(1, seeds + 1) if not any(
        (r / "summary.json").is_file() and (r / "checkpoints" / "best.pt").is_file()
        for r in runs.get(s, []))]
    if missing:
        raise SystemExit(f"{sweep}: seed(s) {missing} not finished; run the same command again "
                         "to train (or resume) them")
    twice = {s: [r.name for r in rs] for s, rs in runs.items() if len(rs) > 1}
    chosen = [rs[0] for _, rs in sorted(runs.items())]
    if twice or any(configs[r] != configs[chosen[0]] for r in chosen):
        raise SystemExit(f"{sweep} holds runs of different configs ({twice or 'settings differ'}); "
                         "give this system a sweep folder of its own (--sweep)")
    return chosen


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
    ap.add_argument("--sweep", type=Path, default=ROOT / "multirun" / "best_system")
    ap.add_argument("--no-train", action="store_true", help="use the runs already finished")
    a, overrides = ap.parse_known_args()
    if a.seeds < 1:
        ap.error("--seeds: at least 1")
    try:   # checked before hours of training, not after
        alphas = [float(x) for x in a.alphas.split(",")]
    except ValueError:
        ap.error(f"--alphas {a.alphas}: numbers separated by commas, e.g. 0.4,0.6")
    env = os.environ.get("NMT_DATA")   # a local Multi30k; unset: downloaded to data/
    data = Path(env).resolve() if env else None
    roots = [o.split("=", 1)[1] for o in overrides if o.startswith("data.root=")]
    if roots:   # the ensemble is tuned and tested on the corpus the seeds trained on
        data = Path(roots[-1]).resolve()
    sweep = a.sweep.resolve()
    if not a.no_train:
        train(a.seeds, overrides, data, sweep)
    runs = seed_runs(sweep, a.seeds)
    single = best_single(runs)
    system = {
        # decoded once by its own run at its end (train.test_alpha, not tuned)
        "single": {"run": str(single), "valid_bleu": valid_bleu(single),
                   "test": json.loads((single / "summary.json").read_text()).get("test", {})},
        "ensemble": ensemble_system(runs, data or ROOT / "data" / "multi30k",
                                    alphas, sweep / "ensemble"),
    }
    (sweep / "system.json").write_text(json.dumps(system, indent=1))
    for name in TESTS:
        one = system["single"]["test"].get(name, {}).get("bleu", float("nan"))
        ens = system["ensemble"]["test"][name]["bleu"]
        print(f"{name}: best single (by validation) {one:.2f}, ensemble of {len(runs)} "
              f"{ens:.2f} (alpha {system['ensemble']['alpha']})")


if __name__ == "__main__":
    main()
