"""scripts/best_system.py chooses its single model and the ensemble's length penalty on the
validation set alone, and decodes every line of each test set."""

import importlib.util
import json
import shutil
from pathlib import Path

from tests.test_translate_cli import tiny_checkpoint

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "best_system.py"
spec = importlib.util.spec_from_file_location("best_system", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


def fake_run(sweep: Path, name: str, valid: float, test: float, ckpt: Path | None = None):
    run = sweep / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(
        {"progress": {"best_bleu": valid}, "test": {"test_2016_flickr": {"bleu": test}}}))
    if ckpt:
        shutil.copy(ckpt, run / "checkpoints" / "best.pt")
    else:
        (run / "checkpoints" / "best.pt").write_bytes(b"")
    return run


def test_single_model_is_chosen_by_validation_and_unfinished_runs_are_left_out(tmp_path):
    fake_run(tmp_path, "0_seed1", valid=36.7, test=38.1)   # the best on test, not on validation
    chosen = fake_run(tmp_path, "1_seed2", valid=37.0, test=36.0)
    (tmp_path / "2_seed3" / "checkpoints").mkdir(parents=True)   # still training: no summary
    no_weights = tmp_path / "3_seed4"
    no_weights.mkdir()
    (no_weights / "summary.json").write_text(json.dumps({"progress": {"best_bleu": 99.0}}))
    runs = script.finished_runs(tmp_path)
    assert [r.name for r in runs] == ["0_seed1", "1_seed2"]
    assert script.best_single(runs) == chosen


def test_length_penalty_is_the_best_on_validation_ties_to_the_smaller():
    assert script.pick_alpha({0.4: 30.0, 0.6: 31.5, 1.0: 31.2}) == 0.6
    assert script.pick_alpha({1.0: 31.5, 0.6: 31.5, 0.4: 30.0}) == 0.6


def test_the_ensemble_is_tuned_on_validation_and_translates_every_test_line(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    runs = [fake_run(tmp_path / "sweep", f"{i}_seed{i + 1}", 1.0, 1.0, ckpt) for i in range(2)]
    data = tmp_path / "data"
    data.mkdir()
    pairs = {"val": ["A dog runs .", "Two men ."], "t1": ["A man .", "", "A dog ."]}
    for split, lines in pairs.items():
        (data / f"{split}.en").write_text("".join(x + "\n" for x in lines))
        (data / f"{split}.de").write_text("".join(x + "\n" for x in lines))
    out = tmp_path / "ens"
    system = script.ensemble_system(runs, data, [0.6, 1.0], out, device="cpu", valid="val",
                                    tests=("t1",))
    assert set(system["valid_bleu_by_alpha"]) == {0.6, 1.0}
    assert system["alpha"] == script.pick_alpha(system["valid_bleu_by_alpha"])
    assert (out / "t1.de").read_text(encoding="utf-8").count("\n") == 3
    assert system["test"]["t1"]["bleu_signature"].startswith("nrefs:1")
