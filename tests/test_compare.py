"""nmt-compare over a tiny sweep: all outputs written, failures reported, sound statistics."""

import json
import logging
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from nmt.alignment_file import read_alignments
from nmt.compare import Run, compare, find_runs, load_run, p_text, table_cells
from nmt.evaluate import bootstrap_ci, paired_randomization, score_from_stats, sentence_stats
from nmt.report import read_report
from tests.test_end_to_end import small_corpus
from tests.test_report import CHROMIUM, render

REFS = ["a man rides a horse", "two dogs play in the snow", "a woman reads a book"] * 15
HYP_A = ["a man rides a horse", "two dogs play in snow", "a woman is reading"] * 15
HYP_B = ["man on horse", "dogs in the snow", "a woman is reading"] * 15


def test_system_against_itself_is_not_significant():
    a = sentence_stats("bleu", HYP_A, REFS)
    assert paired_randomization("bleu", a, a.copy(), samples=200) == 1.0


def test_clearly_different_systems_are_significant():
    a = sentence_stats("bleu", HYP_A, REFS)
    b = sentence_stats("bleu", HYP_B, REFS)
    assert paired_randomization("bleu", a, b, samples=200) < 0.05


def test_bootstrap_interval_contains_the_score():
    a = sentence_stats("chrf", HYP_A, REFS)
    low, high = bootstrap_ci("chrf", a, samples=200)
    assert low <= score_from_stats("chrf", a.sum(0)) <= high and low < high


def test_compare_a_sweep(multi30k, tmp_path):
    corpus = small_corpus(multi30k, tmp_path / "corpus")
    sweep = tmp_path / "sweep"
    train = subprocess.run(
        [sys.executable, "-m", "nmt.cli.train", "-m", "attention=bahdanau,luong_general",
         "model=small", f"data.root={corpus}", "data.download=false",
         f"data.cache_dir={tmp_path / 'cache'}", "data.vocab_size=400",
         "data.test=[test_2016_flickr]", "train.max_steps=4", "train.valid_every=2",
         "train.batch_tokens=500", "train.test_beam=2", "train.heatmap_sentences=0",
         "model.hidden_size=32", "model.emb_size=16", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [r.name for r in runs] == ["0_bahdanau_luong_seed1", "1_luong_general_luong_seed1"]
    # A third run that was killed: no summary, so it must show up as unfinished.
    broken = sweep / "2_location_seed1"
    shutil.copytree(runs[0], broken)
    (broken / "summary.json").unlink()
    (broken / ".hydra" / "hydra.yaml").write_text(
        (broken / ".hydra" / "hydra.yaml").read_text().replace("attention: bahdanau",
                                                               "attention: location"))
    # A run of the Bahdanau decoder is its own variant; the Luong decoder keeps plain names.
    other = sweep / "3_bahdanau_bahdanau_seed1"
    shutil.copytree(runs[0], other)
    hydra_yaml = other / ".hydra" / "hydra.yaml"
    assert "decoder: luong" in hydra_yaml.read_text()
    hydra_yaml.write_text(hydra_yaml.read_text().replace("decoder: luong", "decoder: bahdanau"))
    # Kept without its weights (only its outputs): compared from its own test outputs, its
    # alignments those training kept. Training decoded the whole (12-line) test set at once.
    shutil.rmtree(other / "checkpoints")
    kept, translations = read_alignments(other / "test" / "alignments.json")
    assert kept == {"test_set": "test_2016_flickr", "beam": 2, "alpha": 0.6}
    assert [t.text for t in translations] == \
        (other / "test" / "test_2016_flickr.de").read_text().splitlines()
    assert all(t.alignment.shape == (len(t.tgt_pieces), len(t.src_pieces)) for t in translations)
    (runs[0] / "test" / "alignments.json").unlink()   # the original decodes with its best.pt
    out = tmp_path / "cmp"
    res = subprocess.run(
        [sys.executable, "-m", "nmt.cli.compare", f"runs={sweep}", f"output_dir={out}",
         "search.beam_size=2", "samples=50", "alignment_sentences=2", "length_buckets=[9,12]",
         f"hydra.run.dir={tmp_path / 'cmp_log'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("results.md", "results.csv", "results.json", "bleu.png", "curves.png",
                 "curves_steps.png", "curves_by_variant.png",
                 "bleu_by_length_test_2016_flickr.png",
                 "alignments/1.png", "alignments/2.png"):
        assert (out / name).is_file(), name
    assert matplotlib.image.imread(out / "bleu.png").ndim == 3
    rows = {r["variant"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert set(rows) == {"bahdanau", "luong_general", "location", "bahdanau/bahdanau-dec"}
    # Best first by test_2016_flickr BLEU; the unfinished variant (no BLEU) last.
    bleus = [r.get("test_2016_flickr.bleu", -1.0) for r in rows.values()]
    assert bleus == sorted(bleus, reverse=True) and list(rows)[-1] == "location"
    assert rows["location"]["status"].startswith("seed 1: unfinished")
    assert rows["bahdanau"]["status"] == "finished"
    assert "test_2016_flickr.p_vs_bahdanau" not in rows["bahdanau"]   # not tested on itself
    assert rows["luong_general"]["test_2016_flickr.delta_vs_bahdanau"] == pytest.approx(
        {"1": rows["luong_general"]["test_2016_flickr.bleu"]
         - rows["bahdanau"]["test_2016_flickr.bleu"]})
    assert "minus bahdanau's, seed by seed" in (out / "results.md").read_text()
    assert np.isfinite(rows["luong_general"]["test_2016_flickr.bleu"])
    # Ended by train.max_steps, not by early stopping: capped; 12 test sentences, all short.
    assert rows["bahdanau"]["convergence"] == "capped (max_steps) 1/1"
    assert rows["bahdanau/bahdanau-dec"]["status"] == "finished"
    assert rows["bahdanau/bahdanau-dec"]["params"] == rows["bahdanau"]["params"] > 0
    assert rows["bahdanau"]["steps_to_95"] in (2, 4) and rows["bahdanau"]["minutes_to_95"] > 0
    by_length = rows["bahdanau"]["test_2016_flickr.bleu_by_length"]
    assert sum(rows["bahdanau"]["test_2016_flickr.length_sentences"].values()) == 12
    assert set(by_length) <= {"1-9", "10-12", "13+"}   # length_buckets=[9,12]
    assert "BLEU on test_2016_flickr by source length" in (out / "results.md").read_text()
    assert "| location |" in res.stdout and "BLEU test_2016_flickr" in res.stdout
    # report.html: every test sentence; alignments for every variant (kept or decoded).
    meta, _ = read_report(out / "report.html")
    assert len(meta["sentences"]) == 12
    assert meta["buckets"] == ["1-9", "10-12", "13+"]
    assert {s["bucket"] for s in meta["sentences"]} <= set(meta["buckets"])
    column = {label: v for v, label in enumerate(meta["variants"])}
    assert set(column) == {"bahdanau", "luong_general", "bahdanau/bahdanau-dec"}
    first = meta["sentences"][0]["out"]
    assert "a" in first[column["luong_general"]]
    # The weightless copy of the bahdanau run shows the alignments its training kept, the same
    # 8-bit weights nmt-compare gets from the original's best.pt.
    _, matrices = read_report(out / "report.html")

    def weights(item: dict) -> np.ndarray:
        start, rows, cols = item["a"]
        return np.frombuffer(matrices[start:start + rows * cols], np.uint8).astype(int)

    for sentence in meta["sentences"]:
        copy = sentence["out"][column["bahdanau/bahdanau-dec"]]
        original = sentence["out"][column["bahdanau"]]
        assert copy["t"] == original["t"]
        assert np.abs(weights(copy) - weights(original)).max() <= 1   # rounding, other threads
    assert [s["out"][column["bahdanau/bahdanau-dec"]]["hyp"] for s in meta["sentences"]] == \
        (other / "test" / "test_2016_flickr.de").read_text().splitlines()
    assert [row[0] for row in meta["table"]] == ["variant", *rows]
    if CHROMIUM:
        state = render(out / "report.html", tmp_path / "profile")
        assert state["data-errors"] == "" and state["data-rows"] == "12"
        assert state["data-heatmaps"] == "3"


def fake_runs(tmp_path, hyps: dict[tuple[str, int], list[str]]) -> list:
    """Finished runs of (variant, seed) with given test outputs, on a 45-line test set."""
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    (root / "t.en").write_text("".join(f"source {i}\n" for i in range(len(REFS))))
    (root / "t.de").write_text("".join(r + "\n" for r in REFS))
    config = {"data": {"root": str(root), "src_lang": "en", "tgt_lang": "de"}}
    metrics = [{"step": 2, "bleu": 1.0, "elapsed": 60.0, "tokens_per_s": 1.0}]
    return [Run(tmp_path / f"{label}{seed}", label, seed, "finished", "early_stopping",
                config=config, metrics=metrics, hyps={"t": out},
                summary={"progress": {"best_step": 2}})
            for (label, seed), out in hyps.items()]


def test_the_table_tests_each_seed_against_the_same_seed_and_never_the_baseline(tmp_path):
    flip = HYP_A[1::-1] + HYP_A[2:]   # some other outputs
    runs = fake_runs(tmp_path, {("base", 1): HYP_A, ("base", 2): flip, ("v", 2): HYP_B,
                                ("v", 1): HYP_A, ("v", 3): HYP_B})
    rows = {r["variant"]: r for r in compare(runs, ["t"], "base", samples=100)[0]}
    assert "t.p_vs_base" not in rows["base"]   # no test of the baseline against itself
    bleu = {key: score_from_stats("bleu", sentence_stats("bleu", out, REFS).sum(0))
            for key, out in (("a", HYP_A), ("b", HYP_B), ("flip", flip))}
    assert rows["v"]["t.delta_vs_base"] == pytest.approx({1: 0.0, 2: bleu["b"] - bleu["flip"]})
    assert rows["v"]["t.p_seeds"] == "1,2" and rows["v"]["seeds"] == "1,2,3"
    cells = table_cells(list(rows.values()), ["t"], "base")
    assert cells[2][cells[0].index("p vs base")].endswith("(seeds 1,2)")
    # The order the runs come in changes nothing.
    again = {r["variant"]: r for r in compare(runs[::-1], ["t"], "base", samples=100)[0]}
    assert again["v"]["t.p_vs_base"] == rows["v"]["t.p_vs_base"]
    assert again["v"]["t.bleu_ci"] == pytest.approx(rows["v"]["t.bleu_ci"])
    assert again["v"]["seeds"] == "1,2,3" and list(again) == ["v", "base"]


def test_a_p_at_the_tests_floor_is_shown_as_a_bound(tmp_path):
    # No shuffle comes near perfect output against empty output: p is only "at most 1/51".
    runs = fake_runs(tmp_path, {("base", 1): list(REFS), ("v", 1): [""] * len(REFS),
                                ("w", 1): ["a man rides"] + list(REFS[1:])})
    rows = compare(runs, ["t"], "base", samples=50)[0]
    cells = table_cells(rows, ["t"], "base")
    column = cells[0].index("p vs base")
    assert rows[1]["t.p_at_floor"] and rows[1]["t.p_vs_base"] == pytest.approx(1 / 51)
    assert cells[2][column] == "≤ 0.02"
    assert not rows[2]["t.p_at_floor"] and cells[3][column] == f"{rows[2]['t.p_vs_base']:.3f}"
    assert [p_text(p) for p in (0.0412, 0.00019998, 1.0)] == ["0.041", "0.0002", "1.000"]
    assert p_text(1 / 10001, at_floor=True) == "≤ 0.0001" and p_text(None) == ""
    assert p_text(1 / 8001, at_floor=True) == "≤ 0.0002"    # a bound: rounded up
    assert p_text(1 / 1001, at_floor=True) == "≤ 0.001" and p_text(1 / 4, at_floor=True) == "≤ 0.3"


def test_two_runs_of_one_variant_and_seed_are_named_in_a_warning(tmp_path, caplog):
    (tmp_path / "b").mkdir()
    runs = (fake_runs(tmp_path, {("base", 1): HYP_A, ("v", 1): HYP_B})
            + fake_runs(tmp_path / "b", {("v", 1): HYP_A}))
    with caplog.at_level(logging.WARNING, logger="nmt.compare"):
        rows = compare(runs, ["t"], "base", samples=10)[0]
    assert rows[1]["seeds"] == "1,1"
    warned = [m for m in caplog.messages if "2 finished runs of seed 1" in m]
    assert len(warned) == 1 and str(runs[1].path) in warned[0] and str(runs[2].path) in warned[0]
    assert not any("base" in m for m in caplog.messages)


def test_a_sweeps_runs_are_found_in_job_order(tmp_path):
    for name in ("10_gmm_luong_seed1", "9_location_luong_seed1", "notes", "0_bahdanau_luong_seed1",
                 "kept_by_hand"):
        (tmp_path / name / ".hydra").mkdir(parents=True)
    assert [p.name for p in find_runs([tmp_path])] == [
        "0_bahdanau_luong_seed1", "9_location_luong_seed1", "10_gmm_luong_seed1", "kept_by_hand",
        "notes"]


def test_the_interval_of_identical_seeds_is_that_of_one_run():
    a, b = sentence_stats("bleu", HYP_A, REFS), sentence_stats("bleu", HYP_B, REFS)
    assert bootstrap_ci("bleu", [a, a.copy()], samples=200) == \
        pytest.approx(bootstrap_ci("bleu", a, samples=200))
    low, high = bootstrap_ci("bleu", [a, b], samples=200)
    mean = (score_from_stats("bleu", a.sum(0)) + score_from_stats("bleu", b.sum(0))) / 2
    assert low <= mean <= high


def test_outputs_and_references_of_other_lengths_are_refused():
    with pytest.raises(ValueError, match="44 hypotheses but 45 references"):
        sentence_stats("bleu", HYP_A[:-1], REFS)


def test_runs_tested_on_other_references_are_refused(tmp_path):
    runs = fake_runs(tmp_path, {("base", 1): HYP_A})
    (tmp_path / "x").mkdir()
    other = fake_runs(tmp_path / "x", {("v", 1): HYP_A})
    (tmp_path / "x" / "data" / "t.de").write_text("".join(r.upper() + "\n" for r in REFS))
    with pytest.raises(ValueError, match="t: .* differ"):
        compare(runs + other, ["t"], "base", samples=10)


def test_a_damaged_metrics_line_is_passed_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_bytes(b'{"step": 2, "bleu": 1.0}\n\n{"step": 4, "bl\x00')
    assert [m["step"] for m in load_run(run).metrics] == [2]


def test_a_damaged_summary_marks_its_run_failed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text('{"progress": {"fini')
    r = load_run(run)
    assert r.status == "failed" and r.reason == "unreadable summary.json"


def test_an_output_folder_that_cannot_be_made_stops_before_decoding(tmp_path):
    (tmp_path / "a_file").write_text("")
    res = subprocess.run([sys.executable, "-m", "nmt.cli.compare", f"runs=[{tmp_path}]",
                          f"output_dir={tmp_path / 'a_file' / 'cmp'}",
                          f"hydra.run.dir={tmp_path / 'log'}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert res.returncode == 2 and "output_dir=" in res.stderr and "Traceback" not in res.stderr
