"""scripts/best_system.py chooses its single model and the ensemble's length penalty on the
validation set alone, decodes each test set once, and refuses an unfinished or mixed sweep."""

import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import nmt
from tests.test_translate_cli import tiny_checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "best_system.py"
spec = importlib.util.spec_from_file_location("best_system", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


def fake_run(sweep: Path, name: str, seed: int, valid: float | None, test: float = 0.0,
             ckpt: Path | None = None, lr: float = 0.001):
    """A run folder; valid=None: still training (no summary, no best.pt)."""
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "lr": lr}))
    if valid is not None:
        (run / "checkpoints").mkdir()
        (run / "summary.json").write_text(json.dumps(
            {"progress": {"best_bleu": valid}, "test": {"test_2016_flickr": {"bleu": test}}}))
        if ckpt:
            shutil.copy(ckpt, run / "checkpoints" / "best.pt")
        else:
            (run / "checkpoints" / "best.pt").write_bytes(b"")
    return run


def test_single_model_is_chosen_by_validation_among_the_seeds_asked_for(tmp_path):
    fake_run(tmp_path, "0_seed1", 1, valid=36.7, test=38.1)   # the best on test, not on valid
    chosen = fake_run(tmp_path, "1_seed2", 2, valid=37.0, test=36.0)
    fake_run(tmp_path, "2_seed3", 3, valid=39.0)              # not among --seeds 2
    runs = script.seed_runs(tmp_path, 2)
    assert [r.name for r in runs] == ["0_seed1", "1_seed2"]
    assert script.best_single(runs) == chosen


def test_an_unfinished_seed_stops_the_script(tmp_path):
    fake_run(tmp_path, "0_seed1", 1, valid=36.7)
    fake_run(tmp_path, "1_seed2", 2, valid=None)
    with pytest.raises(SystemExit, match=r"seed\(s\) \[2, 3\] not finished"):
        script.seed_runs(tmp_path, 3)


def test_runs_of_another_config_in_the_folder_are_refused(tmp_path):
    fake_run(tmp_path, "0_seed1", 1, valid=36.7)
    fake_run(tmp_path, "1_seed2", 2, valid=36.0, lr=0.002)
    with pytest.raises(SystemExit, match="different configs"):
        script.seed_runs(tmp_path, 2)


def test_length_penalty_is_the_best_on_validation_ties_to_the_smaller():
    assert script.pick_alpha({0.4: 30.0, 0.6: 31.5, 1.0: 31.2}) == 0.6
    assert script.pick_alpha({1.0: 31.5, 0.6: 31.5, 0.4: 30.0}) == 0.6


def test_alpha_is_tuned_on_validation_and_each_test_set_decoded_once(tmp_path, monkeypatch):
    """The fake model is right on validation only with alpha 1.0, on the test set only with
    0.4: tuning on the test set would pick 0.4."""
    good = {"val": 1.0, "t1": 0.4}
    calls = []

    def translate(src, beam_size, alpha):
        split = src[0].split()[0]
        calls.append((split, alpha))
        return [SimpleNamespace(text=s if alpha == good[split] else "x") for s in src]

    monkeypatch.setattr(script, "corpus", lambda root, split: (
        [f"{split} a b c", f"{split} d e"], [f"{split} a b c", f"{split} d e"]))
    monkeypatch.setattr(nmt, "load", lambda paths, device: SimpleNamespace(translate=translate))
    system = script.ensemble_system([tmp_path], tmp_path, [0.4, 0.6, 1.0], tmp_path / "ens",
                                    device="cpu", valid="val", tests=("t1",))
    assert system["alpha"] == 1.0 and system["valid_bleu_by_alpha"][1.0] == pytest.approx(100)
    assert calls == [("val", 0.4), ("val", 0.6), ("val", 1.0), ("t1", 1.0)]
    assert (tmp_path / "ens" / "t1.de").read_text() == "x\nx\n"


def test_an_ensemble_of_real_checkpoints_translates_every_test_line(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    runs = [fake_run(tmp_path / "sweep", f"{i}_seed{i + 1}", i + 1, 1.0, ckpt=ckpt)
            for i in range(2)]
    data = tmp_path / "data"
    data.mkdir()
    pairs = {"val": ["A dog runs .", "Two men ."], "t1": ["A man .", "", "A dog ."]}
    for split, lines in pairs.items():
        (data / f"{split}.en").write_text("".join(x + "\n" for x in lines))
        (data / f"{split}.de").write_text("".join(x + "\n" for x in lines))
    system = script.ensemble_system(runs, data, [0.6], tmp_path / "ens", device="cpu",
                                    valid="val", tests=("t1",))
    assert (tmp_path / "ens" / "t1.de").read_text(encoding="utf-8").count("\n") == 3
    assert system["test"]["t1"]["bleu_signature"].startswith("nrefs:1")
