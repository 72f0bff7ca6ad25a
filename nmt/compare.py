"""Compare trained runs (e.g. a sweep over attention variants) by BLEU and chrF on test sets.

One row per variant (seeds aggregated as mean +- std), a bootstrap 95% confidence interval, a
paired approximate-randomization test against a baseline variant, size, speed and training
facts; failed or unfinished runs are listed with their status.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nmt import checkpoint
from nmt.alignment_file import read_alignments
from nmt.analysis import (
    LENGTH_BUCKETS,
    Buckets,
    bleu_by_length,
    convergence,
    time_to_fraction,
    training_speed,
)
from nmt.api import load
from nmt.config import SearchOptions
from nmt.data.corpus import find_file, read_lines
from nmt.evaluate import (
    RESAMPLING_SEED,
    bootstrap_ci,
    paired_randomization,
    score,
    score_from_stats,
    sentence_stats,
)
from nmt.metrics_log import read_metrics

log = logging.getLogger(__name__)

DONE = {"max_steps", "max_minutes", "early_stopping", "max_epochs"}


@dataclass
class Run:
    path: Path
    label: str
    seed: int
    status: str                      # finished | failed | unfinished
    reason: str = ""
    config: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    hyps: dict[str, list[str]] = field(default_factory=dict)       # test set -> outputs
    decode_speed: dict[str, float] = field(default_factory=dict)   # test set -> sentences/s
    params: int = 0
    aligned: list = field(default_factory=list)  # first test set's first sentences, with
    #                                              alignments (Translation), for the report


def job_order(path: Path) -> tuple[int, str]:
    """A sweep's run folders in job order (`10_...` after `9_...`), so that the table lists
    the variants in the order the sweep was given them; other names after, by name."""
    number = path.name.split("_", 1)[0]
    return (int(number), path.name) if number.isdigit() else (1 << 62, path.name)


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run folders: each path is a run folder or a folder (e.g. a multirun) holding some."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p}: no such run folder")
        if (p / ".hydra").is_dir() or (p / "metrics.jsonl").is_file():
            found.append(p)
        else:
            subs = sorted((q for q in p.iterdir() if q.is_dir() and (q / ".hydra").is_dir()),
                          key=job_order)
            if not subs:
                raise FileNotFoundError(f"{p}: holds no run folders (no .hydra/ inside)")
            found.extend(subs)
    return found


def read_record(path: Path, resolve: bool = False) -> dict:
    """A .hydra/ file of a run; {} when missing or damaged (with a warning)."""
    if not path.is_file():
        return {}
    try:
        record = OmegaConf.to_container(OmegaConf.load(path), resolve=resolve)
    except (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException) as err:
        log.warning("%s: unreadable (%s); ignored", path, str(err).splitlines()[0])
        return {}
    return record if isinstance(record, dict) else {}


def section(record: dict, *keys: str) -> dict:
    """record[k1][k2]..., {} where a level is missing or not a mapping (a file cut short)."""
    for k in keys:
        record = record.get(k) if isinstance(record, dict) else None
    return record if isinstance(record, dict) else {}


def load_run(path: Path) -> Run:
    config = read_record(path / ".hydra" / "config.yaml", resolve=True)   # data.root
    best = path / "checkpoints" / "best.pt"
    if best.is_file():
        config = checkpoint.load(best)["config"]  # resolved, as trained
    label = section(config, "attention").get("name", path.name)
    decoder = section(config, "decoder").get("name", "luong")
    runtime = section(read_record(path / ".hydra" / "hydra.yaml"), "hydra", "runtime")
    picked = section(runtime, "choices")
    label, decoder = picked.get("attention", label), picked.get("decoder", decoder)
    root = section(config, "data").get("root")
    if root and runtime.get("cwd") and not Path(root).is_absolute():
        # where training ran from, not where nmt-compare runs
        config["data"]["root"] = str(Path(runtime["cwd"]) / root)
    if decoder != "luong":  # the default decoder keeps the plain names (and baselines)
        label = f"{label}/{decoder}-dec"
    run = Run(path, str(label), int(config.get("seed") or 0), "unfinished", config=config)
    run.metrics = read_metrics(path / "metrics.jsonl")
    if (path / "summary.json").is_file():
        try:
            run.summary = json.loads((path / "summary.json").read_text())
            run.reason = run.summary["progress"]["finished"]
        except (ValueError, KeyError, TypeError) as err:
            log.warning("%s: unreadable (%s); the run counts as failed", path / "summary.json",
                        err)
            run.summary, run.status, run.reason = {}, "failed", "unreadable summary.json"
            return run
        run.status = "finished" if run.reason in DONE else "failed"
    elif not best.is_file():
        run.status, run.reason = "failed", "no checkpoint"
    else:
        run.reason = "no summary (killed or still running)"
    if run.status == "finished" and not best.is_file() and not run.summary.get("test"):
        run.status, run.reason = "failed", "no best.pt"
    return run


def test_files(cfg: dict, name: str) -> tuple[Path, Path]:
    data = cfg["data"]
    return find_file(data["root"], name, data["src_lang"]), find_file(data["root"], name,
                                                                      data["tgt_lang"])


def decode_run(run: Run, test_sets: list[str], opts: SearchOptions, device: torch.device,
               align: int = 0, precision: str = "fp32") -> None:
    """Fill run.hyps: reuse the run's own test outputs when they used the same search and
    precision. With
    align > 0, also fill run.aligned: the first `align` sentences of test_sets[0] with their
    alignments, from those training kept (same search) or else from best.pt (part of the same
    decoding when that set is decoded here); a run with neither has none."""

    best = run.path / "checkpoints" / "best.pt"
    translator = None
    stored = run.summary.get("test", {})
    for k, name in enumerate(test_sets):
        want = align if k == 0 and best.is_file() else 0
        out = run.path / "test" / f"{name}.{run.config['data']['tgt_lang']}"
        same = (name in stored and stored[name].get("beam") == opts.beam_size
                and abs(stored[name].get("alpha", -1) - opts.alpha) < 1e-9
                and stored[name].get("precision", "fp32") == precision)
        if same and out.is_file():
            run.hyps[name] = read_lines(out)
            run.decode_speed[name] = stored[name].get("sentences_per_s", float("nan"))
            if k > 0 or not align:
                continue
            kept = kept_alignments(run, name, opts)
            if len(kept) >= min(align, len(run.hyps[name])) or not want:   # kept is enough
                run.aligned = kept[:align]
            else:
                translator = translator or load(best, device, precision)
                src = read_lines(test_files(run.config, name)[0])[:want]
                run.aligned = translator.translate_with(src, opts, alignments=True)
            continue
        if translator is None:
            if not best.is_file():
                raise FileNotFoundError(
                    f"{best}: missing, and the run's own {name} outputs were made with another "
                    "search; compare with the run's settings (search.beam_size, search.alpha, "
                    "precision)")
            translator = load(best, device, precision)
        src = read_lines(test_files(run.config, name)[0])
        start = time.time()
        # Only the report's sentences pay for recording alignments.
        head = translator.translate_with(src[:want], opts, alignments=True) if want else []
        rest = translator.translate_with(src[len(head):], opts) if len(src) > len(head) else []
        run.hyps[name] = [t.text for t in head + rest]
        run.decode_speed[name] = len(src) / max(time.time() - start, 1e-9)
        run.aligned = head or run.aligned
    run.params = run.summary.get("parameters", 0)
    if not run.params:
        ckpt = checkpoint.load(run.path / "checkpoints" / "best.pt")
        run.params = sum(t.numel() for t in ckpt["model"].values())


def kept_alignments(run: Run, test_set: str, opts: SearchOptions) -> list:
    """The alignments training kept (test/alignments.json) for a run without its weights, if
    they were made with the same search on the same test set."""
    path = run.path / "test" / "alignments.json"
    if not path.is_file():
        return []
    try:
        settings, translations = read_alignments(path)
    except ValueError as e:   # best.pt, if any, can still decode them
        log.warning("%s; its alignments are not used", e)
        return []
    if (settings["test_set"] != test_set or settings["beam"] != opts.beam_size
            or abs(settings["alpha"] - opts.alpha) > 1e-9):
        return []
    if [t.text for t in translations] != run.hyps.get(test_set, [])[:len(translations)]:
        log.warning("%s: its translations are not the run's %s outputs; not used", path, test_set)
        return []
    return translations


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(runs: list[Run], test_sets: list[str], baseline: str, samples: int = 10000,
            buckets: Buckets = LENGTH_BUCKETS) -> tuple[list[dict], dict]:
    """One row per variant (BLEU by source length in `buckets`); returns the rows and the
    metric signatures."""
    refs, sources, files = {}, {}, {}
    for r in runs:
        if r.status == "finished":
            for name in test_sets:
                src, ref = test_files(r.config, name)
                first = files.setdefault(name, (src, ref, r.path))
                these = (read_lines(src), read_lines(ref))   # the text: .gz or not is the same
                if (sources.setdefault(name, these[0]), refs.setdefault(name, these[1])) != these:
                    raise ValueError(f"{name}: {r.path} was tested on {src} / {ref}, {first[2]} "
                                     f"on {first[0]} / {first[1]}, which differ")
    labels = list(dict.fromkeys(r.label for r in runs))
    base_runs: dict[int, Run] = {}
    for r in runs:
        if r.label == baseline and r.status == "finished":
            if r.seed in base_runs:
                log.warning("%s: two %s runs of seed %d (%s and %s); the test against it pairs "
                            "the second", baseline, baseline, r.seed, base_runs[r.seed].path,
                            r.path)
            base_runs[r.seed] = r
    rows, signatures = [], {}
    for label in labels:
        group = sorted((r for r in runs if r.label == label), key=lambda r: r.seed)
        ok = [r for r in group if r.status == "finished"]
        seeds = [r.seed for r in ok]
        for seed in sorted({s for s in seeds if seeds.count(s) > 1}):
            # e.g. one sweep given twice, or model=small and model=base runs of one mechanism
            log.warning("%s: %d finished runs of seed %d (%s); its row pools them all, and its "
                        "per-seed figures show the last; compare runs of other settings apart",
                        label, seeds.count(seed), seed,
                        ", ".join(str(r.path) for r in ok if r.seed == seed))
        row: dict = {"variant": label, "seeds": ",".join(str(r.seed) for r in ok),
                     "status": "finished" if len(ok) == len(group) else
                     "; ".join(f"seed {r.seed}: {r.status} ({r.reason})" for r in group
                               if r.status != "finished")}
        if ok:
            row["params"] = ok[0].params
            row["train_minutes"] = mean_std([r.metrics[-1]["elapsed"] / 60 for r in ok
                                             if r.metrics])[0]
            row["train_tokens_per_s"] = mean_std([training_speed(r.metrics) for r in ok
                                                  if r.metrics])[0]
            row["best_step"] = mean_std([r.summary["progress"]["best_step"] for r in ok])[0]
            row["finished_by"] = ",".join(sorted({r.reason for r in ok}))
            states = [convergence(r.reason) for r in ok]
            row["convergence"] = ", ".join(f"{state} {states.count(state)}/{len(ok)}"
                                           for state in dict.fromkeys(states))
            reached = [time_to_fraction(r.metrics, 0.95) for r in ok if r.metrics]
            row["minutes_to_95"] = mean_std([m for m, _ in reached])[0]
            row["steps_to_95"] = mean_std([s for _, s in reached])[0]
        for name in test_sets:
            if not ok:
                continue
            for metric in ("bleu", "chrf"):
                stats = [sentence_stats(metric, r.hyps[name], refs[name]) for r in ok]
                values = [score_from_stats(metric, s.sum(0)) for s in stats]
                row[f"{name}.{metric}"], row[f"{name}.{metric}_std"] = mean_std(values)
                row[f"{name}.{metric}_by_seed"] = {r.seed: v for r, v in zip(ok, values,
                                                                              strict=True)}
                if metric == "bleu":
                    row[f"{name}.bleu_ci"] = bootstrap_ci(metric, stats, samples)
                    # Pooled over seeds: the variant's seed-s run against the baseline's, in
                    # seed order (the swaps do not depend on the order runs were given in).
                    pairs = sorted(((r.seed, s, v) for s, r, v in zip(stats, ok, values,
                                                                      strict=True)
                                    if r.seed in base_runs), key=lambda x: x[0])
                    if pairs and label != baseline:
                        base = {seed: sentence_stats(metric, base_runs[seed].hyps[name],
                                                     refs[name]) for seed, _, _ in pairs}
                        a = np.concatenate([s for _, s, _ in pairs])
                        b = np.concatenate([base[seed] for seed, _, _ in pairs])
                        p = paired_randomization(metric, a, b, samples)
                        row[f"{name}.p_vs_{baseline}"] = p
                        # no shuffle as far apart as the real pair: p is only "at most" this
                        row[f"{name}.p_at_floor"] = p <= 1.5 / (samples + 1)
                        row[f"{name}.p_seeds"] = ",".join(str(seed) for seed, _, _ in pairs)
                        row[f"{name}.delta_vs_{baseline}"] = {
                            seed: v - score_from_stats(metric, base[seed].sum(0))
                            for seed, _, v in pairs}
            by_length = [bleu_by_length(sources[name], r.hyps[name], refs[name], buckets)
                         for r in ok]
            row[f"{name}.bleu_by_length"] = {
                bucket: statistics.fmean(b[bucket]["bleu"] for b in by_length)
                for bucket in by_length[0]}
            row[f"{name}.length_sentences"] = {bucket: v["sentences"]
                                               for bucket, v in by_length[0].items()}
            dec = [r.decode_speed.get(name, float("nan")) for r in ok]
            row[f"{name}.decode_sent_per_s"] = statistics.fmean(dec)
            if not signatures:   # the same for every test set and variant
                s = score(ok[0].hyps[name], refs[name])
                signatures = {"BLEU": s.bleu_signature, "chrF": s.chrf_signature}
        rows.append(row)
    return rows, signatures


def by_bleu(rows: list[dict], test_set: str) -> list[dict]:
    """Rows by mean BLEU on `test_set`, best first; rows without it (no finished run) last."""
    return sorted(rows, key=lambda r: -r.get(f"{test_set}.bleu", float("-inf")))


def p_text(p: float | None, at_floor: bool | None = False) -> str:
    """Three decimals; one significant digit under 0.001 (0.0002 is not 0.000); a p that no
    shuffle reached is a bound (e.g. "≤ 0.0001")."""
    if p is None:
        return ""
    if at_floor:   # rounded up, so that the bound holds (1/8001 is "≤ 0.0002", not 0.0001)
        unit = 10.0 ** math.floor(math.log10(p))
        return f"≤ {math.ceil(p / unit - 1e-9) * unit:.1g}"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1g}"


def fmt(x: object, digits: int = 2) -> str:
    if isinstance(x, float):
        return "" if x != x else f"{x:.{digits}f}"
    return "" if x is None else str(x)


def spread(row: dict, key: str) -> str:
    """Mean ± std over seeds; the std only where there are several seeds."""
    if "," in row["seeds"]:
        return f"{row[key]:.2f} ± {row[key + '_std']:.2f}"
    return f"{row[key]:.2f}"


def table_cells(rows: list[dict], test_sets: list[str], baseline: str) -> list[list[str]]:
    """The results table as text cells: a header row, then one row per variant."""
    head = ["variant", "status", "seeds"]
    for name in test_sets:
        head += [f"BLEU {name}", "95% CI", f"p vs {baseline}", f"chrF {name}"]
    head += ["params", "train min", "min to 95%", "converged", "train tok/s", "decode sent/s",
             "best step"]
    table = [head]
    for r in rows:
        cells = [r["variant"], r["status"], r["seeds"]]
        for name in test_sets:
            if f"{name}.bleu" in r:
                ci = r[f"{name}.bleu_ci"]
                p = p_text(r.get(f"{name}.p_vs_{baseline}"), r.get(f"{name}.p_at_floor"))
                tested = r.get(f"{name}.p_seeds", r["seeds"])
                if p and set(tested.split(",")) != set(r["seeds"].split(",")):
                    p += f" (seeds {tested})"
                cells += [spread(r, f"{name}.bleu"), f"[{ci[0]:.1f}, {ci[1]:.1f}]", p,
                          spread(r, f"{name}.chrf")]
            else:
                cells += ["", "", "", ""]
        dec = [r.get(f"{n}.decode_sent_per_s") for n in test_sets]
        cells += [f"{r['params'] / 1e6:.2f}M" if "params" in r else "",
                  fmt(r.get("train_minutes"), 1), fmt(r.get("minutes_to_95"), 1),
                  r.get("convergence", ""), fmt(r.get("train_tokens_per_s"), 0),
                  fmt(dec[0] if dec else None, 1), fmt(r.get("best_step"), 0)]
        table.append(cells)
    return table


def markdown_table(rows: list[dict], test_sets: list[str], baseline: str) -> str:
    head, *body = table_cells(rows, test_sets, baseline)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def length_table(rows: list[dict], test_set: str) -> str:
    """BLEU by source-sentence length (words), one row per variant."""
    key = f"{test_set}.bleu_by_length"
    ok = [r for r in rows if key in r]
    if not ok:
        return ""
    counts = ok[0][f"{test_set}.length_sentences"]
    buckets = list(counts)
    lines = [f"\nBLEU on {test_set} by source length in words (whitespace-separated; mean over "
             "seeds of each run's corpus BLEU within the bucket; sentences per bucket: "
             + ", ".join(f"{b}: {counts[b]}" for b in buckets) + "):\n\n",
             "| variant | " + " | ".join(buckets) + " |\n", "|---|" + "---|" * len(buckets) + "\n"]
    for r in ok:
        lines.append(f"| {r['variant']} | "
                     + " | ".join(fmt(r[key].get(b)) for b in buckets) + " |\n")
    return "".join(lines)


def delta_table(rows: list[dict], test_set: str, baseline: str) -> str:
    """BLEU minus the baseline's, seed by seed: a gap that changes sign between seeds, or is
    smaller than the seeds' spread, says little whatever p is."""
    key = f"{test_set}.delta_vs_{baseline}"
    ok = [r for r in rows if r.get(key)]
    if not ok:
        return ""
    seeds = sorted({int(s) for r in ok for s in r[key]})
    lines = [f"\nBLEU on {test_set} minus {baseline}'s, seed by seed (the same seed's run):\n\n",
             "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | same sign |\n",
             "|---|" + "---|" * (len(seeds) + 2) + "\n"]
    for r in ok:
        d = {int(s): v for s, v in r[key].items()}
        signs = {v > 0 for v in d.values() if v != 0}
        lines.append(f"| {r['variant']} | " + " | ".join(
            f"{d[s]:+.2f}" if s in d else "" for s in seeds)
            + f" | {statistics.fmean(d.values()):+.2f} | "
            + ("yes" if len(signs) == 1 and len(d) > 1 else "no" if len(signs) > 1 else "")
            + " |\n")
    return "".join(lines)


def write_results(rows: list[dict], signatures: dict, test_sets: list[str], baseline: str,
                  out_dir: Path, opts: SearchOptions, samples: int) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows, test_sets, baseline)
    sig = "".join(f"- {k}: `{v}`\n" for k, v in signatures.items())
    note = (f"Search: beam {opts.beam_size}, length penalty alpha {opts.alpha}. BLEU/chrF: mean ± "
            "sample std (n - 1) over seeds; 95% CI: percentile bootstrap over sentences of the "
            f"mean over seeds ({samples:,} resamples; the test set's sampling, not the seeds' "
            "spread); p: paired approximate randomization against "
            f"{baseline} ({samples:,} shuffles, two-sided; ≤ 1/(shuffles + 1) where no shuffle "
            f"was as far apart as the real pair), each seed's run against the same seed's "
            f"{baseline} run, pooled (a test of these trained models, not of the variant over "
            "all seeds; not corrected for the number of variants tested). Converged: ended by "
            "early stopping (no better validation BLEU for the recipe's patience), else the cap "
            "that ended it. Train min and min to 95%: training time alone (no validation or "
            "test decoding), mean over seeds; min to 95%: the first validation that reached 95% "
            "of the run's own best validation BLEU. Train tok/s: "
            "each run's training tokens over its training seconds, mean over seeds; these "
            "three are measured under whatever shared the runs' machines; decode "
            "sent/s: the run's own test decoding where its outputs are reused (its threads and "
            "load), else timed here, the report's sentences with alignments recorded.\n")
    lengths = "".join(length_table(rows, name) for name in test_sets)
    deltas = "".join(delta_table(rows, name, baseline) for name in test_sets)
    (out_dir / "results.md").write_text(table + "\n" + note + deltas + lengths
                                        + "\nSignatures:\n" + sig, encoding="utf-8")
    (out_dir / "results.json").write_text(json.dumps({"rows": rows, "signatures": signatures,
                                                      "beam": opts.beam_size,
                                                      "alpha": opts.alpha, "samples": samples,
                                                      "random_seed": RESAMPLING_SEED},
                                                     indent=1), encoding="utf-8")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, tuple) else v) for k, v in r.items()})
    return table
