"""nmt-compare: BLEU table, charts and side-by-side alignments for a set of runs."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmt.analysis import buckets_from_bounds
from nmt.cli.common import register_schemas, to_object, user_errors
from nmt.compare import by_bleu, compare, decode_run, find_runs, load_run, test_files, write_results
from nmt.config import CompareConfig
from nmt.data.corpus import read_lines
from nmt.device import setup_device
from nmt.plots import bleu_bars, curve_panels, curves, heatmap_grid, length_lines
from nmt.report import compare_report

log = logging.getLogger("nmt")
register_schemas()


@user_errors
def compare_main(cfg: DictConfig) -> None:
    conf = to_object(cfg, CompareConfig)
    device = setup_device(conf.device, conf.threads)
    paths = conf.runs if isinstance(conf.runs, list) else [conf.runs]
    out = Path(conf.output_dir or HydraConfig.get().runtime.output_dir)
    try:   # before the decoding, which may take long
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"output_dir={out}: cannot be created ({err.strerror})") from err
    runs = [load_run(p) for p in find_runs(paths)]
    finished = [r for r in runs if r.status == "finished"]
    if not finished:
        raise ValueError(f"none of the {len(runs)} runs under {paths} finished")
    test_sets = conf.test_sets or finished[0].config["data"]["test"]
    align = max(conf.report_sentences, conf.alignment_sentences, 0)
    aligned: set[str] = set()
    for r in finished:
        log.info("decoding %s (%s, seed %d)", r.path, r.label, r.seed)
        # Alignments for the report and the grids: one seed per variant is enough.
        decode_run(r, test_sets, conf.search, device, 0 if r.label in aligned else align,
                   conf.precision)
        if align and len(r.aligned) >= min(align, len(r.hyps[test_sets[0]])):
            aligned.add(r.label)
    baseline = conf.baseline
    if not any(r.label == baseline for r in finished):
        baseline = finished[0].label
        log.warning("baseline=%s has no finished run here (variants: %s); testing against %s "
                    "instead", conf.baseline, ", ".join(dict.fromkeys(r.label for r in finished)),
                    baseline)
    buckets = buckets_from_bounds(conf.length_buckets)
    rows, sigs = compare(runs, test_sets, baseline, conf.samples, buckets)
    if conf.order == "bleu":
        rows = by_bleu(rows, test_sets[0])
    table = write_results(rows, sigs, test_sets, baseline, out, conf.search, conf.samples)
    show(table)
    first = test_sets[0]
    ok_rows = [r for r in rows if f"{first}.bleu" in r]
    bleu_bars([r["variant"] for r in ok_rows], [r[f"{first}.bleu"] for r in ok_rows],
              [r[f"{first}.bleu_ci"] for r in ok_rows], out / "bleu.png",
              f"{first}, beam {conf.search.beam_size} (95% bootstrap CI)",
              seeds=[list(r[f"{first}.bleu_by_seed"].values()) for r in ok_rows])
    traced = [r for r in runs if r.metrics]
    by_step = {r.path: ([m["step"] for m in r.metrics], [m["bleu"] for m in r.metrics])
               for r in traced}
    curves({f"{r.label} s{r.seed}": ([m["elapsed"] / 60 for m in r.metrics], by_step[r.path][1])
            for r in traced}, out / "curves.png")
    curves({f"{r.label} s{r.seed}": by_step[r.path] for r in traced}, out / "curves_steps.png",
           xlabel="training steps")
    panels: dict[str, dict[int, tuple[list[float], list[float]]]] = {}
    for r in traced:
        panels.setdefault(r.label, {})[r.seed] = by_step[r.path]
    if panels:
        curve_panels(panels, out / "curves_by_variant.png", baseline)
    for name in test_sets:
        counted = [r for r in ok_rows if f"{name}.bleu_by_length" in r]
        if counted:
            length_lines({r["variant"]: r[f"{name}.bleu_by_length"] for r in counted},
                         out / f"bleu_by_length_{name}.png",
                         f"{name}, beam {conf.search.beam_size}: BLEU by source length",
                         counted[0][f"{name}.length_sentences"])
    if conf.alignment_sentences > 0:
        write_alignment_grids(finished, first, conf, out / "alignments")
    if conf.report_sentences > 0:
        size = compare_report(runs, rows, test_sets, baseline, conf.search, out / "report.html",
                              conf.report_sentences, buckets)
        log.info("report.html: %.1f MB", size / 1e6)
    log.info("results in %s", out)


def write_alignment_grids(runs, test_set, conf, folder: Path) -> None:
    src = read_lines(test_files(runs[0].config, test_set)[0])[:conf.alignment_sentences]
    per_variant = {}
    for r in runs:   # one seed per variant, the one with the most alignments (some may have none)
        if len(r.aligned) > len(per_variant.get(r.label, [])):
            per_variant[r.label] = r.aligned[:len(src)]
    for i in range(len(src)):
        items = [(label, res[i].alignment, res[i].src_pieces, res[i].tgt_pieces)
                 for label, res in per_variant.items()
                 if i < len(res) and res[i].alignment is not None]
        if items:
            heatmap_grid(items, folder / f"{i + 1}.png",
                         title=f"{test_set}, sentence {i + 1}, beam {conf.search.beam_size}")


def show(text: str) -> None:
    """Print, replacing what the terminal's encoding cannot show (e.g. "≤" under a Latin-1
    locale); the files keep UTF-8."""
    encoding = sys.stdout.encoding or "utf-8"
    print(text.encode(encoding, "replace").decode(encoding))


@hydra.main(version_base="1.3", config_path="pkg://nmt.configs", config_name="compare")
def main(cfg: DictConfig) -> None:
    compare_main(cfg)


if __name__ == "__main__":
    main()
