"""test/alignments.json: the alignments a run keeps of its test translations, read back as
translations nmt-compare can draw for a run kept without its weights."""

import base64
import json
import zlib
from pathlib import Path

import pytest
import torch

from nmt.alignment_file import read_alignments, write_alignments
from nmt.compare import Run, decode_run, kept_alignments
from nmt.config import SearchOptions
from nmt.translate import Translation


def translations() -> list[Translation]:
    torch.manual_seed(0)
    out = []
    for rows, cols in ((3, 4), (1, 1), (6, 2)):
        weights = torch.softmax(torch.randn(rows, cols) * 3, dim=-1)
        out.append(Translation(f"sentence {rows}", [(f"sentence {rows}", -0.5 * rows)],
                               [f"s{j}" for j in range(cols)], [f"t{i}" for i in range(rows)],
                               weights))
    out.append(Translation("", [("", 0.0)], [], [], None))   # an empty line: no alignment
    return out


def test_round_trip_keeps_text_pieces_and_8_bit_weights(tmp_path: Path):
    original = translations()
    size = write_alignments(tmp_path / "a.json", original, "test_2016_flickr", 5, 0.6)
    assert size == (tmp_path / "a.json").stat().st_size
    settings, back = read_alignments(tmp_path / "a.json")
    assert settings == {"test_set": "test_2016_flickr", "beam": 5, "alpha": 0.6}
    assert len(back) == len(original)
    for a, b in zip(original, back, strict=True):
        assert (b.text, b.score, b.src_pieces, b.tgt_pieces) == \
            (a.text, a.score, a.src_pieces, a.tgt_pieces)
        if a.alignment is None:
            assert b.alignment is None
        else:
            assert b.alignment.shape == a.alignment.shape
            assert torch.allclose(b.alignment, a.alignment, atol=0.5 / 255 + 1e-6)


def test_gmm_weights_above_one_keep_their_size(tmp_path: Path):
    # gmm's unnormalised Gaussians can give a source piece more than 1 at a step
    a = torch.tensor([[1.887, 0.25, 0.0], [0.4, 1.2, 0.6]])
    t = Translation("x", [("x", -1.0)], ["a", "b", "</s>"], ["x", "</s>"], a)
    write_alignments(tmp_path / "g.json", [t], "test_2016_flickr", 5, 0.6)
    _, [back] = read_alignments(tmp_path / "g.json")
    assert torch.allclose(back.alignment, a, atol=1.887 * 0.5 / 255 + 1e-6)


def test_a_damaged_file_is_named(tmp_path: Path):
    path = tmp_path / "alignments.json"
    write_alignments(path, translations(), "t", 5, 0.6)
    data = json.loads(path.read_text())
    data["weights"] = data["weights"][:8]   # cut short
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="alignments.json: not a readable alignments file"):
        read_alignments(path)


def test_compare_uses_kept_alignments_only_for_the_same_search(tmp_path: Path):
    run = Run(tmp_path, "bahdanau", 1, "finished")
    run.hyps["t"] = [t.text for t in translations()] + ["a fifth line"]
    same = SearchOptions(beam_size=5, alpha=0.6)
    assert kept_alignments(run, "t", same) == []   # none kept
    path = tmp_path / "test" / "alignments.json"
    write_alignments(path, translations(), "t", 5, 0.6)
    assert len(kept_alignments(run, "t", same)) == 4
    assert kept_alignments(run, "t", SearchOptions(beam_size=4, alpha=0.6)) == []
    assert kept_alignments(run, "t", SearchOptions(beam_size=5, alpha=1.0)) == []
    run.hyps["other"] = run.hyps["t"]
    assert kept_alignments(run, "other", same) == []
    # Not the run's outputs (left from an earlier decoding): not used.
    run.hyps["t"][1] = "changed"
    assert kept_alignments(run, "t", same) == []
    # A damaged file is passed over (best.pt can still decode), not a stop.
    path.write_text("{")
    assert kept_alignments(run, "t", same) == []


def test_files_of_the_first_version_are_still_read(tmp_path: Path):
    """Version 1 kept the sentences as plain JSON; runs of the comparison wrote such files."""
    path = tmp_path / "alignments.json"
    write_alignments(path, translations(), "t", 5, 0.6)
    data = json.loads(path.read_text())
    data["version"], data["sentences"] = 1, json.loads(zlib.decompress(
        base64.b64decode(data["sentences"])))
    path.write_text(json.dumps(data))
    _, back = read_alignments(path)
    assert [t.text for t in back] == [t.text for t in translations()]
    assert back[0].alignment.shape == translations()[0].alignment.shape


def test_a_weightless_run_shows_kept_alignments_whatever_the_other_test_sets(tmp_path: Path):
    """nmt-compare over two test sets: the first set's kept alignments stay (the second set,
    which has none, must not clear them)."""
    kept = translations()
    (tmp_path / "test").mkdir()
    for name in ("t1", "t2"):
        (tmp_path / "test" / f"{name}.de").write_text("".join(t.text + "\n" for t in kept))
    write_alignments(tmp_path / "test" / "alignments.json", kept, "t1", 5, 0.6)
    run = Run(tmp_path, "bahdanau", 1, "finished", config={"data": {"tgt_lang": "de"}},
              summary={"test": {n: {"beam": 5, "alpha": 0.6} for n in ("t1", "t2")},
                       "parameters": 10})
    decode_run(run, ["t1", "t2"], SearchOptions(beam_size=5, alpha=0.6), torch.device("cpu"),
               align=3)
    assert [t.text for t in run.aligned] == [t.text for t in kept[:3]]
    assert all(t.alignment is not None for t in run.aligned)
