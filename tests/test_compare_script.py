"""scripts/compare_converged.py picks its third seeds and base-size variants by validation BLEU
(mean over seeds), never by test BLEU, and keeps the two decoders apart."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "compare_converged.py"
spec = importlib.util.spec_from_file_location("compare_converged", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


@pytest.fixture(autouse=True)
def keep_in_tmp(tmp_path, monkeypatch):
    """Never read or write the repository's kept runs."""
    monkeypatch.setattr(script, "KEPT", tmp_path / "kept")


def fake_sweeps(monkeypatch, code: int = 0, on_start=lambda cmd: None) -> list:
    """nmt-train replaced: each sweep records its command, calls on_start and exits `code`."""
    calls = []

    class Sweep:
        def __init__(self, cmd, **kw):
            calls.append(cmd)
            on_start(cmd)

        pid = -1

        def wait(self, timeout: float | None = None) -> int:
            return code

    monkeypatch.setattr(script.subprocess, "Popen", Sweep)
    return calls


def fake_run(sweep: Path, name: str, attention: str, decoder: str, valid: float, test: float,
             choice: str | None = None):
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"attention": {"name": attention}, "decoder": {"name": decoder}}))
    if choice:   # the config group chosen, as Hydra records it
        (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {
            "choices": {"attention": choice, "decoder": decoder}}}}))
    (run / "summary.json").write_text(json.dumps(
        {"progress": {"best_bleu": valid}, "test": {"test_2016_flickr": {"bleu": test}}}))


def test_ranking_reads_mean_validation_bleu_and_names_the_decoder(tmp_path, monkeypatch):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    fake_run(a, "0_bahdanau_luong_seed1", "bahdanau", "luong", 33.0, 20.0)
    fake_run(a, "1_bahdanau_luong_seed2", "bahdanau", "luong", 35.0, 20.0)   # mean 34
    fake_run(a, "2_location_luong_seed1", "location", "luong", 33.5, 40.0)   # best on test
    fake_run(b, "0_bahdanau_bahdanau_seed1", "bahdanau", "bahdanau", 34.5, 10.0)
    # attention=location_smooth is the mechanism named location with smoothing: its own variant
    fake_run(a, "4_location_luong_seed1", "location", "luong", 35.0, 30.0, "location_smooth")
    (a / "3_gmm_luong_seed1").mkdir()   # unfinished: no summary.json, not ranked
    fake_run(a, "5_gmm_luong_seed2", "gmm", "luong", 99.0, 0.0)   # diverged: not ranked
    (a / "5_gmm_luong_seed2" / "summary.json").write_text(json.dumps(
        {"progress": {"best_bleu": 99.0, "finished": "non_finite_loss"}}))
    ranked = script.ranked_by_validation("a", "b")
    assert ranked == ["location_smooth", "bahdanau/bahdanau-dec", "bahdanau", "location"]
    assert script.by_decoder(ranked) == {"bahdanau": ["bahdanau"],
                                         "luong": ["location_smooth", "bahdanau", "location"]}


def test_a_tagged_comparison_has_its_own_sweeps_and_passes_overrides_on(tmp_path, monkeypatch):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    monkeypatch.setattr(script, "EXTRA", [])   # main() fills it; restored afterwards
    calls = fake_sweeps(monkeypatch)
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "bdec", "--tag", "gpu",
                                     "hydra/launcher=parallel", "threads=1"])
    script.main()
    assert [c[-1] for c in calls] == [f"hydra.sweep.dir={tmp_path / 'compare_converged_gpu'}",
                                      f"hydra.sweep.dir={tmp_path / 'compare_converged_bdec_gpu'}"]
    assert all("hydra/launcher=parallel" in c and "threads=1" in c for c in calls)


def test_a_stopped_sweep_stops_the_plan(tmp_path, monkeypatch):
    """nmt-train exits 3 after Ctrl-C or SIGTERM: the next stage must not start."""
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    calls = fake_sweeps(monkeypatch, code=3)
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "bdec"])
    with pytest.raises(SystemExit, match="stopped or failed .exit status 3."):
        script.main()
    assert len(calls) == 1


def test_finished_runs_are_kept_and_a_lost_sweep_is_refilled(tmp_path, monkeypatch):
    """A new machine (or a lost disk) must not retrain the runs that had finished."""
    sweeps, kept = tmp_path / "multirun", tmp_path / "kept"
    monkeypatch.setattr(script, "SWEEPS", sweeps)
    monkeypatch.setattr(script, "KEPT", kept)   # as the autouse fixture, named here
    sweep = sweeps / "compare_converged"
    fake_run(sweep, "0_bahdanau_luong_seed1", "bahdanau", "luong", 33.0, 36.0)
    done = sweep / "0_bahdanau_luong_seed1"
    (done / "metrics.jsonl").write_text('{"step": 250, "bleu": 10.0}\n')
    (done / "test").mkdir()
    (done / "test" / "test_2016_flickr.de").write_text("ein Hund\n")
    (done / "checkpoints").mkdir()
    (done / "checkpoints" / "best.pt").write_bytes(b"weights")
    (sweep / "1_location_luong_seed1" / "checkpoints").mkdir(parents=True)   # unfinished
    (sweep / "1_location_luong_seed1" / "checkpoints" / "last.pt").write_bytes(b"weights")

    assert script.collect() == [kept / "compare_converged" / "0_bahdanau_luong_seed1"]
    copy = kept / "compare_converged" / "0_bahdanau_luong_seed1"
    assert sorted(p.name for p in copy.iterdir()) == [".hydra", "metrics.jsonl", "summary.json",
                                                      "test"]   # no checkpoints
    assert not (kept / "compare_converged" / "1_location_luong_seed1").exists()
    # The sweep again rewrites the finished run's .hydra/ (Hydra does): the first record stays.
    record = (copy / ".hydra" / "config.yaml").read_text()
    (done / ".hydra" / "config.yaml").write_text("threads: 7\n")
    (done / "summary.json").write_text('{"progress": {"best_bleu": 33.5}}')   # extended since
    script.collect()
    assert (copy / ".hydra" / "config.yaml").read_text() == record
    assert "33.5" in (copy / "summary.json").read_text()

    shutil.rmtree(sweeps)   # the machine is gone
    seen = []   # what the sweep finds when nmt-train starts
    fake_sweeps(monkeypatch, on_start=lambda cmd: seen.append(sorted(p.name for p in
                                                                     sweep.iterdir())))
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "seeds"])
    script.main()
    assert seen == [["0_bahdanau_luong_seed1"]]
    assert (sweep / "0_bahdanau_luong_seed1" / "test" / "test_2016_flickr.de").read_text() == \
        "ein Hund\n"
    assert script.ranked_by_validation("compare_converged") == ["bahdanau"]
    # A run folder that holds files (a run under way) is never overwritten.
    (sweep / "0_bahdanau_luong_seed1" / "summary.json").unlink()
    assert script.restore("compare_converged") == []


def test_status_lists_finished_and_running_runs_of_each_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    sweep = tmp_path / "compare_converged"
    done = sweep / "10_gmm_luong_seed1"
    done.mkdir(parents=True)
    (done / "summary.json").write_text(json.dumps({
        "progress": {"finished": "early_stopping", "step": 750, "best_bleu": 31.5,
                     "best_step": 500, "elapsed": 600},
        "test": {"test_2016_flickr": {"bleu": 33.25, "chrf": 58.5}}}))
    running = sweep / "2_bahdanau_luong_seed1"
    running.mkdir()
    (running / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "bleu": b, "elapsed": 60.0 * s / 250}) + "\n"
        for s, b in ((250, 20.0), (500, 24.5), (750, 24.0))))
    (sweep / "3_location_luong_seed1").mkdir()
    (tmp_path / "compare_converged_gpu").mkdir()   # another tag's sweep: not listed
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--status"])
    script.main()
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "compare_converged: 1 of 3 started runs finished",
        "  2_bahdanau_luong_seed1: training, validated at step 750 (val 24.00; best 24.50 at "
        "500), 3.0 min",
        "  3_location_luong_seed1: started, not yet validated",
        "  10_gmm_luong_seed1: early_stopping at step 750, best val 31.50 at 500, 10.0 min  "
        "test_2016_flickr 33.25/58.50"]


def finished_stage(sweep: Path, names: list[str], valid: dict[str, float]) -> None:
    for job, (seed, name) in enumerate((s, n) for s in (1, 2) for n in names):
        fake_run(sweep, f"{job}_{name}_luong_seed{seed}", name, "luong", valid[name], 0.0, name)


def first_stages_finished(tmp_path, monkeypatch) -> list:
    """Three mechanisms' seeds stage and the Bahdanau decoder's stage, all finished; returns
    the list that records each sweep the plan starts."""
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    monkeypatch.setattr(script, "MECHANISMS", "bahdanau,location,location_smooth")
    monkeypatch.setattr(script, "EXTRA", [])
    calls = fake_sweeps(monkeypatch)
    finished_stage(tmp_path / "compare_converged", ["bahdanau", "location", "location_smooth"],
                   {"bahdanau": 34.0, "location": 33.0, "location_smooth": 35.0})
    for seed in (1, 2):   # the Bahdanau decoder's stage
        fake_run(tmp_path / "compare_converged_bdec", f"{2 * seed - 2}_bahdanau_bahdanau_seed"
                 f"{seed}", "bahdanau", "bahdanau", 21.0, 0.0, "bahdanau")
        fake_run(tmp_path / "compare_converged_bdec", f"{2 * seed - 1}_luong_general_bahdanau_"
                 f"seed{seed}", "luong_general", "bahdanau", 20.0, 0.0, "luong_general")
    return calls


def test_a_selection_waits_for_whole_stages_and_is_kept(tmp_path, monkeypatch):
    calls = first_stages_finished(tmp_path, monkeypatch)
    stopped = tmp_path / "compare_converged" / "4_location_luong_seed2" / "summary.json"
    summary = stopped.read_text()
    stopped.unlink()
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "seed3"])
    with pytest.raises(SystemExit, match=r"5 of 6 runs finished \(4_location_luong_seed2 not\)"):
        script.main()   # a stopped run must not let the plan choose from half a stage
    assert not (script.KEPT / "selection.json").exists()

    stopped.write_text(summary)
    calls.clear()
    script.main()
    chosen = json.loads((script.KEPT / "selection.json").read_text())["seed3"]
    assert chosen == ["location_smooth", "bahdanau", "location", "bahdanau/bahdanau-dec",
                      "luong_general/bahdanau-dec"]
    luong = [c for c in calls if "decoder=luong" in c]
    assert "attention=location_smooth,bahdanau,location" in luong[0]
    # a run that finishes later and ranks otherwise does not change what the stage trains
    fake_run(tmp_path / "compare_converged", "9_location_luong_seed3", "location", "luong",
             99.0, 0.0, "location")
    calls.clear()
    script.main()
    luong = [c for c in calls if "decoder=luong" in c]
    assert "attention=location_smooth,bahdanau,location" in luong[0]


def test_the_plan_keys_cannot_be_overridden(tmp_path, monkeypatch):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "seed=5"])
    with pytest.raises(SystemExit):
        script.main()


def test_the_base_stage_trains_in_bf16_and_the_small_stages_in_fp32(tmp_path, monkeypatch):
    calls = first_stages_finished(tmp_path, monkeypatch)
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "base"])
    script.main()
    base = [c for c in calls if "model=base" in c]
    assert len(base) == 1 and "precision=bf16" in base[0]
    assert all(not any(o.startswith("precision=") for o in c) for c in calls if c not in base)
