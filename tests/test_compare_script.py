"""scripts/compare_converged.py picks its third seeds and base-size variants by validation BLEU
(mean over seeds), never by test BLEU, and keeps the two decoders apart."""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
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


def finish_runs(cmd: list[str], leave_out: int = 0) -> None:
    """What a sweep does: every run of its command finished (seeds outer, as Hydra orders
    them), bar the last `leave_out`; runs there already are kept."""
    opts = dict(o.split("=", 1) for o in cmd if "=" in o)
    sweep, decoder = Path(opts["hydra.sweep.dir"]), opts.get("decoder", "luong")
    jobs = [(seed, name) for seed in opts["seed"].split(",")
            for name in opts["attention"].split(",")]
    for job, (seed, name) in enumerate(jobs[:len(jobs) - leave_out]):
        if not list(sweep.glob(f"{job}_*")):
            fake_run(sweep, f"{job}_{name}_{decoder}_seed{seed}", name, decoder, 30.0, 0.0, name)


def first_stages_finished(tmp_path, monkeypatch) -> list:
    """Three mechanisms' seeds stage and the Bahdanau decoder's stage, all finished; returns
    the list that records each sweep the plan starts."""
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    monkeypatch.setattr(script, "MECHANISMS", "bahdanau,location,location_smooth")
    monkeypatch.setattr(script, "EXTRA", [])
    calls = fake_sweeps(monkeypatch, on_start=finish_runs)
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
    bdec = [c for c in calls if "decoder=bahdanau" in c and "seed=3" in c]
    assert "attention=bahdanau,luong_general" in bdec[0]
    assert bdec[0][-1] == f"hydra.sweep.dir={tmp_path / 'compare_converged_seed3_bahdanau'}"
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


@pytest.mark.parametrize("seeds", ["range(1,4)", "1,1", "1,,2", "a"])
def test_base_seeds_must_be_a_list_the_stage_can_count(tmp_path, monkeypatch, capsys, seeds):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    calls = fake_sweeps(monkeypatch)
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--base-seeds", seeds])
    with pytest.raises(SystemExit):
        script.main()
    assert calls == [] and "--base-seeds" in capsys.readouterr().err


def test_the_base_stage_trains_in_bf16_and_the_small_stages_in_fp32(tmp_path, monkeypatch):
    calls = first_stages_finished(tmp_path, monkeypatch)
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "base"])
    script.main()
    base = [c for c in calls if "model=base" in c]
    assert len(base) == 1 and "precision=bf16" in base[0]
    assert all(not any(o.startswith("precision=") for o in c) for c in calls if c not in base)


def six_mechanisms_finished(tmp_path, monkeypatch, valid: dict[str, float]) -> list:
    """first_stages_finished with the seeds stage of the mechanisms in `valid` (their mean
    validation BLEU) instead of three."""
    calls = first_stages_finished(tmp_path, monkeypatch)
    monkeypatch.setattr(script, "MECHANISMS", ",".join(valid))
    shutil.rmtree(tmp_path / "compare_converged")
    finished_stage(tmp_path / "compare_converged", list(valid), valid)
    return calls


def test_the_baseline_gets_a_third_seed_when_it_is_not_among_the_five_best(tmp_path,
                                                                          monkeypatch):
    """Without it, the five variants' three seeds would pair with two of bahdanau's."""
    calls = six_mechanisms_finished(tmp_path, monkeypatch, {
        "bahdanau": 20.0, "location": 33.0, "location_smooth": 35.0, "gmm": 32.0,
        "multihead": 34.0, "luong_dot": 31.0})
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "seed3"])
    script.main()
    chosen = json.loads((script.KEPT / "selection.json").read_text())["seed3"]
    assert chosen == ["location_smooth", "multihead", "location", "gmm", "luong_dot", "bahdanau"]
    third = [c for c in calls if "seed=3" in c]
    assert len(third) == 1 and "decoder=luong" in third[0]
    assert "attention=location_smooth,multihead,location,gmm,luong_dot,bahdanau" in third[0]
    assert len(list((tmp_path / "compare_converged_seed3_luong").glob("*/summary.json"))) == 6


def test_a_variant_that_computes_what_bahdanau_does_is_not_chosen_again(tmp_path,
                                                                         monkeypatch):
    """luong_concat trains the very run bahdanau trains with the same seed (its two first
    seeds differ only where one run was interrupted): a third seed or a base run of it would
    repeat bahdanau's, so the next variant takes its place."""
    calls = six_mechanisms_finished(tmp_path, monkeypatch, {
        "bahdanau": 34.3, "location": 33.0, "location_smooth": 35.0, "gmm": 32.0,
        "multihead": 34.0, "luong_concat": 34.5})
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--until", "base"])
    script.main()
    chosen = json.loads((script.KEPT / "selection.json").read_text())
    assert chosen["seed3"] == ["location_smooth", "bahdanau", "multihead", "location", "gmm"]
    assert chosen["base"] == ["location_smooth", "bahdanau", "multihead"]
    later = [c for c in calls if "seed=3" in c or "model=base" in c]
    assert len(later) == 2 and not any("luong_concat" in o for c in later for o in c)


@pytest.mark.parametrize("stage", ["seed3", "base"])
def test_a_sweep_that_ends_with_a_run_unfinished_stops_the_plan(tmp_path, monkeypatch, stage):
    """With the parallel launcher a run stopped by a signal can leave its sweep with status 0:
    the next stage, and the tables, must not be made from part of the runs."""
    calls = first_stages_finished(tmp_path, monkeypatch)
    fake_sweeps(monkeypatch, on_start=lambda cmd: (calls.append(cmd), finish_runs(
        cmd, leave_out=int(("seed=3" in cmd) if stage == "seed3" else "model=base" in cmd))))
    tables = []
    monkeypatch.setattr(script.subprocess, "run", lambda cmd, **kw: tables.append(cmd))
    monkeypatch.setattr("sys.argv", ["compare_converged.py"])
    with pytest.raises(SystemExit, match=r"runs finished; run this script again"):
        script.main()
    assert tables == []
    assert any("model=base" in c for c in calls) == (stage == "base")


def test_the_base_stage_and_the_tables(tmp_path, monkeypatch):
    """Base: the three best Luong-decoder variants and bahdanau, each seed; the small table has
    every small run (both decoders, third seeds), the base table its own, each decoded in the
    precision it was trained in."""
    calls = first_stages_finished(tmp_path, monkeypatch)
    tables = []
    monkeypatch.setattr(script.subprocess, "run", lambda cmd, **kw: tables.append(cmd))
    monkeypatch.setattr("sys.argv", ["compare_converged.py", "--base-seeds", "1,2,3",
                                     "threads=1"])
    script.main()
    base = [c for c in calls if "model=base" in c]
    assert len(base) == 1
    assert {"seed=1,2,3", "train.max_minutes=600", "threads=1",
            "attention=location_smooth,bahdanau,location"} <= set(base[0])
    assert len(list((tmp_path / "compare_converged_base").glob("*/summary.json"))) == 9
    small, big = tables
    small_runs = small[1][len("runs=["):-1].split(",")
    assert len(small_runs) == 6 + 4 + 5   # seeds, Bahdanau decoder, third seeds
    assert {"precision=fp32", "threads=1"} <= set(small) and small[2].endswith("/small")
    assert len(big[1].split(",")) == 9 and "precision=bf16" in big and big[2].endswith("/base")


class StopsOnce:
    """A sweep that gets a signal while the plan waits for it, then ends with `code`."""

    def __init__(self, signum: int, code: int):
        self.signum, self.code, self.pid = signum, code, 12345

    def __call__(self, cmd, **kw):
        return self

    def wait(self, timeout: float | None = None) -> int:
        signum, self.signum = self.signum, 0
        if signum:   # the handler runs before kill() returns
            os.kill(os.getpid(), signum)
        return self.code


@pytest.mark.parametrize("signum, passed", [(signal.SIGTERM, signal.SIGTERM),
                                             (signal.SIGHUP, signal.SIGTERM),
                                             (signal.SIGINT, signal.SIGINT)])
def test_a_stop_asked_for_ends_the_plan_even_if_the_sweep_ends_well(tmp_path, monkeypatch,
                                                                      signum, passed):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    sent = []
    monkeypatch.setattr(script.os, "killpg", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(script.subprocess, "Popen", StopsOnce(signum, code=0))
    # As in a terminal, whatever pytest was started from: a background job of a shell without
    # job control (`cmd &` in a script) starts with SIGINT ignored, and the plan leaves it so.
    hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    intr = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit, match="stop requested"):
            script.train("compare_converged", "seed=1")
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL   # restored
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, hup)
        signal.signal(signal.SIGINT, intr)
    assert sent == [(12345, passed)]   # a hangup stops the sweep as SIGTERM does


class StopsWhileStarting:
    """A signal that comes after the sweep was started, before the plan holds its process."""
    pid = 12345

    def __init__(self, cmd, **kw):
        os.kill(os.getpid(), signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        return 3


def test_a_stop_while_the_sweep_starts_still_reaches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    sent, outside = [], []
    monkeypatch.setattr(script.os, "killpg", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(script.subprocess, "Popen", StopsWhileStarting)
    term = signal.signal(signal.SIGTERM, lambda *a: outside.append(a))   # never kill pytest
    try:
        with pytest.raises(SystemExit, match="stop requested"):
            script.train("compare_converged", "seed=1")
    finally:
        signal.signal(signal.SIGTERM, term)
    assert sent == [(12345, signal.SIGTERM)] and not outside


def test_a_stop_before_the_sweep_starts_starts_none(tmp_path, monkeypatch):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    calls = fake_sweeps(monkeypatch)
    outside = []
    monkeypatch.setattr(script, "restore", lambda sweep: os.kill(os.getpid(), signal.SIGTERM))
    term = signal.signal(signal.SIGTERM, lambda *a: outside.append(a))
    try:
        with pytest.raises(SystemExit, match="stop requested before nmt-train started"):
            script.train("compare_converged", "seed=1")
    finally:
        signal.signal(signal.SIGTERM, term)
    assert calls == [] and not outside


def test_under_nohup_a_hangup_is_left_ignored(tmp_path, monkeypatch):
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    seen = []
    monkeypatch.setattr(script.subprocess, "Popen", type("Sweep", (), {
        "__init__": lambda self, cmd, **kw: None, "pid": -1,
        "wait": lambda self, timeout=None: seen.append(signal.getsignal(signal.SIGHUP)) or 0}))
    hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        script.train("compare_converged", "seed=1")
    finally:
        signal.signal(signal.SIGHUP, hup)
    assert seen == [signal.SIG_IGN]


def sweep_running_a_minute(monkeypatch, code: int) -> None:
    """A sweep still running at the first minute's wait (the plan keeps runs then), ended
    with `code` at the second."""
    waits = iter([subprocess.TimeoutExpired("nmt-train", 60), code])

    def wait(self, timeout=None):
        got = next(waits)
        if isinstance(got, Exception):
            raise got
        return got

    monkeypatch.setattr(script.subprocess, "Popen", type("Sweep", (), {
        "__init__": lambda self, cmd, **kw: None, "pid": 1, "wait": wait}))


def test_ctrl_c_while_collecting_still_stops_the_sweep(tmp_path, monkeypatch):
    """The sweep runs in its own session: leaving it training would let a second invocation
    train the same runs at once."""
    monkeypatch.setattr(script, "SWEEPS", tmp_path)
    sent = []
    monkeypatch.setattr(script.os, "killpg", lambda pid, sig: sent.append(sig))
    sweep_running_a_minute(monkeypatch, code=3)
    collected = []

    def collect():
        collected.append(1)
        if len(collected) == 1:
            raise KeyboardInterrupt
        return []

    monkeypatch.setattr(script, "collect", collect)
    with pytest.raises(SystemExit, match="exit status 3"):
        script.train("compare_converged", "seed=1")
    assert sent == [signal.SIGINT]


def test_a_kept_record_cut_short_is_completed_and_a_failed_copy_does_not_stop_the_wait(
        tmp_path, monkeypatch):
    """A .hydra/ copy cut short (config.yaml without hydra.yaml) would name location_smooth
    `location` after a restore; and a copy that fails must not end the script while its sweep
    trains on alone."""
    sweeps, kept = tmp_path / "multirun", tmp_path / "kept"
    monkeypatch.setattr(script, "SWEEPS", sweeps)
    monkeypatch.setattr(script, "KEPT", kept)
    fake_run(sweeps / "compare_converged", "9_location_luong_seed1", "location", "luong", 35.0,
             0.0, "location_smooth")
    copy = kept / "compare_converged" / "9_location_luong_seed1"
    (copy / ".hydra").mkdir(parents=True)
    (copy / ".hydra" / "config.yaml").write_text("first: record\n")   # the cut copy
    script.collect()
    assert (copy / ".hydra" / "config.yaml").read_text() == "first: record\n"
    assert "location_smooth" in (copy / ".hydra" / "hydra.yaml").read_text()

    sweep_running_a_minute(monkeypatch, code=0)
    calls = []

    def collect():   # fails while the sweep runs, works after its end
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        return []

    monkeypatch.setattr(script, "collect", collect)
    script.train("compare_converged", "seed=1")   # waited for the sweep's end, status 0
    assert len(calls) == 2
