"""The converged comparison published in benchmarks/RESULTS.md, stage by stage; run it again
after any interruption and it goes on where it stopped (each stage is a resumable sweep).

    NMT_DATA=../shared/data/multi30k python scripts/compare_converged.py [--until STAGE]

Stages (`experiment=compare`, model=small unless said otherwise):
  1. seeds  every mechanism of the Luong decoder, seeds 1 and 2;
  2. bdec   bahdanau and luong_general in the Bahdanau decoder, seeds 1 and 2;
  3. seed3  a third seed for the five variants with the best mean *validation* BLEU, and for
            bahdanau (the baseline of the significance tests) if it is not among them
            (luong_concat, the same computation as bahdanau, is never chosen: SAME_AS);
  4. base   model=base for the three best variants and bahdanau (Luong decoder), seeds 1, 2,
            in bf16 mixed precision (1.5x faster here; it kept bahdanau's BLEU, RESULTS.md);
  5. table  nmt-compare over everything finished (small and base in separate tables).
The selections read validation BLEU only; the test sets are decoded once per run, at its end.
Each finished run's light files (summary, metrics, test outputs and alignments, Hydra config) are
kept in benchmarks/results/compare_converged/sweeps/ after every stage and with --collect; a
sweep folder lost with its machine is refilled from there, so only unfinished runs train again.
`--status` lists every run of the plan: finished (best validation, test BLEU/chrF) or under way.
Other arguments are nmt-train overrides for every run; with --tag the same plan runs as a second
comparison (its own sweeps and tables), e.g. on one GPU, 14 runs at once (README):

    python scripts/compare_converged.py --tag gpu --base-seeds 1,2,3 \
        hydra/launcher=parallel hydra.launcher.n_jobs=14 threads=1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
from pathlib import Path

import yaml

from nmt.compare import DONE, job_order
from nmt.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parent.parent
SWEEPS = ROOT / "multirun"
KEPT = ROOT / "benchmarks" / "results" / "compare_converged" / "sweeps"
# No checkpoints (20-400 MB each). summary.json last: a copy cut short never looks finished.
LIGHT = ("metrics.jsonl", "test", ".hydra", "summary.json")
MECHANISMS = ("bahdanau,location,luong_general,normed_bahdanau,scaled_dot,local_p,local_m,"
              "multihead,gmm,location_smooth,monotonic_bahdanau,monotonic_luong,luong_dot,"
              "scaled_luong,luong_concat")   # this order: job numbers of the running sweep
# Mechanisms that compute exactly what another does (attention-spec: Luong's concat score is
# Bahdanau's additive score, so the same seed trains the same run). They stay in the tables but
# are never chosen for a third seed or base size: the other, bahdanau, trains those anyway.
SAME_AS = {"luong_concat": "bahdanau"}
STAGES = ("seeds", "bdec", "seed3", "base", "table")
PLAN_KEYS = ("seed", "attention", "decoder", "model", "experiment", "precision",
             "hydra.sweep.dir")


EXTRA: list[str] = []   # nmt-train overrides given on this script's command line


def copy_light(src: Path, dst: Path, first_record: bool = False) -> None:
    """With first_record, the files of a .hydra/ already in dst are kept (only those it lacks,
    as after a copy cut short, are copied): Hydra rewrites a run's .hydra/ whenever its sweep
    runs again, even when the run is skipped."""
    for name in LIGHT:
        if first_record and name == ".hydra" and (dst / name).is_dir():
            for f in (src / name).iterdir():
                if f.is_file() and not (dst / name / f.name).exists():
                    shutil.copy2(f, dst / name / f.name)
            continue
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True)
        elif (src / name).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)


def collect() -> list[Path]:
    """Keep the light files of every finished run of every sweep in KEPT (same layout); a run
    kept already with the same summary is not copied again."""
    kept = []
    for run in sorted(SWEEPS.glob("compare_converged*/*/summary.json")):
        dst = KEPT / run.parent.parent.name / run.parent.name
        if not (dst / "summary.json").is_file() or \
                (dst / "summary.json").read_bytes() != run.read_bytes():
            copy_light(run.parent, dst, first_record=True)
        kept.append(dst)
    return kept


def restore(sweep: str) -> list[Path]:
    """Refill a sweep folder with the kept finished runs it lacks (a new machine, a lost disk);
    the sweep then skips them. A run folder that already holds files is left alone."""
    restored = []
    for kept in sorted((KEPT / sweep).glob("*/summary.json")):
        dst = SWEEPS / sweep / kept.parent.name
        if dst.exists() and any(dst.iterdir()):
            continue
        copy_light(kept.parent, dst)
        restored.append(dst)
    if restored:
        print(f"{sweep}: {len(restored)} finished runs restored from {KEPT / sweep}", flush=True)
    return restored


def train(sweep: str, *overrides: str) -> None:
    stopped = []   # a stop asked for: the plan ends after this sweep, whatever its status
    child: list[subprocess.Popen] = []

    def forward(signum: int, frame: object) -> None:
        stopped.append(signum)
        for proc in child:   # none yet: it is stopped as soon as it has started
            try:   # a hangup asks the sweep to stop as SIGTERM does (it saves last.pt)
                os.killpg(proc.pid, signal.SIGTERM if signum == signal.SIGHUP else signum)
            except ProcessLookupError:   # it has ended already
                pass

    # Handled before the sweep starts, so that no signal can end this script and leave the
    # sweep, in a session of its own, training alone. SIGHUP and SIGINT not where they are
    # ignored already (nohup, a background job): that caller wants the plan to go on.
    wanted = [signal.SIGTERM] + [sig for sig in (signal.SIGHUP, signal.SIGINT)
                                 if signal.getsignal(sig) != signal.SIG_IGN]
    before = {sig: signal.signal(sig, forward) for sig in wanted}
    try:
        restore(sweep)
        data = os.environ.get("NMT_DATA")   # a local Multi30k; unset: downloaded to data/
        local = [f"data.root={data}", "data.download=false"] if data else []
        cmd = ["nmt-train", "-m", "experiment=compare", *local, *overrides, *EXTRA,
               f"hydra.sweep.dir={SWEEPS / sweep}"]
        if stopped:
            raise SystemExit(f"stop requested before {cmd[0]} started")
        print("+", " ".join(cmd), flush=True)
        # Its own process group, which gets this script's Ctrl-C and SIGTERM: killing the
        # script alone no longer leaves a sweep training on (a second invocation would train
        # the same runs).
        child.append(subprocess.Popen(cmd, cwd=ROOT, start_new_session=True))
        if stopped:   # asked for while it started
            forward(stopped[-1], None)
        while True:
            try:   # Ctrl-C may come at any point of the loop, collect() included
                try:
                    code = child[0].wait(timeout=60)
                    break
                except subprocess.TimeoutExpired:
                    try:   # every finished run is kept within a minute, not at the end
                        collect()
                    except Exception as err:   # noqa: BLE001 (never leave the sweep alone)
                        print(f"keeping finished runs failed, retried in a minute: {err!r}",
                              flush=True)
            except KeyboardInterrupt:   # the sweep saves last.pt and stops
                forward(signal.SIGINT, None)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    collect()
    if code or stopped:   # 3: stopped by Ctrl-C or SIGTERM, last.pt saved; else a run failed
        raise SystemExit(f"{cmd[0]} stopped or failed (exit status {code}"
                         + (", stop requested" if stopped else "") + "); see its log, then "
                         "run this script again to go on")


def complete(sweep: str, expected: int, before: str = "the selection") -> None:
    """Stop unless all `expected` runs of `sweep` finished: a selection must read whole stages
    (with the parallel launcher a run stopped by a signal can leave its sweep with status 0)."""
    folders = [d for d in (SWEEPS / sweep).glob("*") if d.is_dir() and d.name[0].isdigit()]
    done = [d for d in folders if (d / "summary.json").is_file()]
    if len(done) < expected:
        waiting = sorted(d.name for d in folders if d not in done)
        raise SystemExit(f"{sweep}: {len(done)} of {expected} runs finished"
                         + (f" ({', '.join(waiting)} not)" if waiting else "")
                         + f"; run this script again to finish them before {before}")


def selection(stage: str, chosen: list[str]) -> list[str]:
    """The variants a stage trains: chosen once, from whole stages, and kept beside the runs
    (benchmarks/results/compare_converged/sweeps/selection.json), so that a second invocation
    trains the same ones in the same order (job numbers name the run folders)."""
    path = KEPT / "selection.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if stage in saved:
        if saved[stage] != chosen:
            print(f"{stage}: keeping the selection made first ({', '.join(saved[stage])}); "
                  f"the runs now rank {', '.join(chosen)}", flush=True)
        return saved[stage]
    saved[stage] = chosen
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    return chosen


def finished_runs(*sweeps: str) -> list[Path]:
    return sorted(p.parent for s in sweeps for p in (SWEEPS / s).glob("*/summary.json"))


def variant(run: Path) -> str:
    """The config choices a run was trained with, as nmt-compare labels it ("location_smooth"
    is a config of the mechanism named location: the choice, not the name, is the variant)."""
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    name, decoder = cfg["attention"]["name"], cfg.get("decoder", {}).get("name", "luong")
    record = run / ".hydra" / "hydra.yaml"
    if record.is_file():
        choices = yaml.safe_load(record.read_text())["hydra"]["runtime"]["choices"]
        name, decoder = choices.get("attention", name), choices.get("decoder", decoder)
    return name if decoder == "luong" else f"{name}/bahdanau-dec"


def ranked_by_validation(*sweeps: str) -> list[str]:
    """Variants by their mean best validation BLEU over seeds, best first; a run that ended
    otherwise than by its budget or early stopping (diverged) is left out, as nmt-compare
    counts it failed."""
    scores: dict[str, list[float]] = {}
    for run in finished_runs(*sweeps):
        progress = json.loads((run / "summary.json").read_text())["progress"]
        if progress.get("finished", "early_stopping") not in DONE:
            continue
        scores.setdefault(variant(run), []).append(progress["best_bleu"])
    return sorted(scores, key=lambda v: -statistics.mean(scores[v]))


def by_decoder(variants: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in variants:
        name, _, dec = v.partition("/")
        out.setdefault("bahdanau" if dec else "luong", []).append(name)
    return out


def run_line(run: Path) -> str:
    """One run's state: finished (how, best validation, test BLEU/chrF) or its last validation."""
    rows = read_metrics(run / "metrics.jsonl")
    if (run / "summary.json").is_file():
        s = json.loads((run / "summary.json").read_text())
        p = s["progress"]
        tests = "  ".join(f"{name} {t['bleu']:.2f}/{t['chrf']:.2f}"
                          for name, t in s.get("test", {}).items())
        return (f"{run.name}: {p['finished']} at step {p['step']}, best val {p['best_bleu']:.2f} "
                f"at {p['best_step']}, {p['elapsed'] / 60:.1f} min  {tests}")
    if not rows:
        return f"{run.name}: started, not yet validated"
    last = rows[-1]
    best = max(rows, key=lambda r: r["bleu"])
    return (f"{run.name}: training, validated at step {last['step']} (val {last['bleu']:.2f}; "
            f"best {best['bleu']:.2f} at {best['step']}), {last['elapsed'] / 60:.1f} min")


def status(tag: str) -> None:
    """Every sweep of the plan: its runs, finished or under way."""
    names = ("", "_bdec", "_seed3_luong", "_seed3_bahdanau", "_base")
    for sweep in (SWEEPS / f"compare_converged{n}{tag}" for n in names):
        if not sweep.is_dir():
            continue
        runs = sorted((d for d in sweep.iterdir() if d.is_dir() and d.name[0].isdigit()),
                      key=job_order)
        done = sum((r / "summary.json").is_file() for r in runs)
        print(f"{sweep.name}: {done} of {len(runs)} started runs finished")
        for run in runs:
            print("  " + run_line(run))


def seed_list(text: str) -> str:
    """Comma-separated seeds (the stage counts its runs by them), as Hydra's sweep takes them."""
    seeds = text.split(",")
    if not all(s.strip().isdigit() for s in seeds) or len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: different whole numbers, comma-separated")
    return ",".join(s.strip() for s in seeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--until", choices=STAGES, default="table")
    ap.add_argument("--tag", default="", help="a second comparison beside the first (e.g. gpu): "
                    "sweep folders and tables get _TAG")
    ap.add_argument("--base-seeds", default="1,2", type=seed_list,
                    help="seeds of the base stage, e.g. 1,2,3")
    ap.add_argument("--collect", action="store_true", help="only copy the finished runs' light "
                    "files into benchmarks/results/compare_converged/sweeps (while a sweep runs)")
    ap.add_argument("--status", action="store_true", help="only list each sweep's runs: "
                    "finished (best validation, test BLEU/chrF) or under way (last validation)")
    a, EXTRA[:] = ap.parse_known_args()
    t = f"_{a.tag}" if a.tag else ""
    if a.status:
        status(t)
        return
    if a.collect:
        print(f"{len(collect())} finished runs kept in {KEPT}")
        return
    planned = [o for o in EXTRA if o.split("=", 1)[0].lstrip("+~") in PLAN_KEYS]
    if planned:
        ap.error(f"{planned[0]}: the plan sets {', '.join(PLAN_KEYS)} itself")
    stages = STAGES[:STAGES.index(a.until) + 1]
    first = (f"compare_converged{t}", f"compare_converged_bdec{t}")   # the selections
    if "seeds" in stages:
        train(first[0], "seed=1,2", f"attention={MECHANISMS}")
    if "bdec" in stages:
        train(first[1], "seed=1,2", "decoder=bahdanau", "attention=bahdanau,luong_general")
    if "seed3" in stages:
        complete(first[0], 2 * len(MECHANISMS.split(",")))
        complete(first[1], 4)
        top5 = [v for v in ranked_by_validation(*first) if v not in SAME_AS][:5]
        # the baseline too: every variant's three seeds then pair with bahdanau's three
        third = selection(f"seed3{t}", top5 + ([] if "bahdanau" in top5 else ["bahdanau"]))
        print("third seeds (the five best by validation BLEU, and bahdanau, the baseline):",
              ", ".join(third), flush=True)
        for decoder, names in sorted(by_decoder(third).items()):
            sweep = f"compare_converged_seed3_{decoder}{t}"
            train(sweep, "seed=3", f"decoder={decoder}", f"attention={','.join(names)}")
            complete(sweep, len(names), "the next stage")
    if "base" in stages:
        complete(first[0], 2 * len(MECHANISMS.split(",")))
        best = [v for v in ranked_by_validation(*first) if "/" not in v and v not in SAME_AS]
        names = selection(f"base{t}", best[:3] + ([] if "bahdanau" in best[:3] else ["bahdanau"]))
        print("base size:", ", ".join(names), flush=True)
        # model=base in bf16 takes 1-1.5 hours a run here on two threads (2-2.5 as one of two
        # one-thread runs at once): the step budget ends it, not the cap
        train(f"compare_converged_base{t}", f"seed={a.base_seeds}", "model=base",
              "precision=bf16", "train.max_minutes=600", f"attention={','.join(names)}")
        complete(f"compare_converged_base{t}", len(names) * len(a.base_seeds.split(",")),
                 "the tables")
    if "table" in stages:
        runs = [str(r) for r in finished_runs(*first, f"compare_converged_seed3_luong{t}",
                                              f"compare_converged_seed3_bahdanau{t}")]
        threads = [o for o in EXTRA if o.startswith("threads=")]
        for name, found, precision in (
                ("small", runs, "fp32"),
                ("base", [str(r) for r in finished_runs(f"compare_converged_base{t}")], "bf16")):
            out = ROOT / "benchmarks" / "results" / "compare_converged" / f"{name}{t}"
            if found:   # the runs' own test outputs, decoded in their training precision
                subprocess.run(["nmt-compare", f"runs=[{','.join(found)}]", f"output_dir={out}",
                                f"precision={precision}", *threads], check=True, cwd=ROOT)


if __name__ == "__main__":
    main()
