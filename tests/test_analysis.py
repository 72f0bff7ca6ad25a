"""BLEU by source length and convergence facts of a run."""

import pytest
from sacrebleu.metrics import BLEU

from nmt.analysis import (
    bleu_by_length,
    bucket_of,
    buckets_from_bounds,
    convergence,
    time_to_fraction,
    training_speed,
)


@pytest.mark.parametrize("n, label", [(0, "1-10"), (1, "1-10"), (10, "1-10"), (11, "11-20"),
                                      (30, "21-30"), (31, "31+"), (400, "31+")])
def test_buckets(n, label):
    assert bucket_of(n, buckets_from_bounds([10, 20, 30])) == label


@pytest.mark.parametrize("n, label", [(0, "1-10"), (10, "1-10"), (11, "11-15"), (16, "16-20"),
                                      (20, "16-20"), (21, "21+"), (400, "21+")])
def test_default_buckets_fit_short_sentences(n, label):
    """Multi30k's sentences are short: a 31+ bucket would hold 2 of test_2016_flickr's 1,000."""
    assert bucket_of(n) == label


def test_buckets_from_bounds():
    assert buckets_from_bounds([5]) == ((1, 5), (6, None))
    for wrong in ([], [20, 10], [10, 10], [0, 5], [True], [2.5]):
        with pytest.raises(ValueError, match="increasing positive whole numbers"):
            buckets_from_bounds(wrong)


def test_bleu_by_length_is_corpus_bleu_of_each_bucket():
    short = ["a dog runs", "two cats sleep on a mat"]
    long_ = [" ".join(["word"] * 15) + " end", " ".join(["other"] * 12)]
    sources = short + long_
    refs = ["a dog runs fast", "two cats sleep on the mat", long_[0], long_[1] + " x"]
    hyps = ["a dog runs", "two cats sleep on a mat", long_[0], long_[1]]
    got = bleu_by_length(sources, hyps, refs, buckets_from_bounds([10, 20, 30]))
    assert set(got) == {"1-10", "11-20"}
    assert got["1-10"]["sentences"] == 2 and got["11-20"]["sentences"] == 2
    expected = BLEU().corpus_score(hyps[:2], [refs[:2]]).score
    assert got["1-10"]["bleu"] == pytest.approx(expected)
    assert got["11-20"]["bleu"] > got["1-10"]["bleu"]


def test_time_to_95_percent_of_the_best():
    metrics = [{"step": 250, "elapsed": 60, "bleu": 10.0},
               {"step": 500, "elapsed": 120, "bleu": 28.6},
               {"step": 750, "elapsed": 180, "bleu": 30.0},
               {"step": 1000, "elapsed": 240, "bleu": 29.0}]
    assert time_to_fraction(metrics) == (2.0, 500)          # 28.6 >= 0.95 * 30 = 28.5
    assert time_to_fraction(metrics, 1.0) == (3.0, 750)
    assert time_to_fraction([]) == (None, None)


def test_training_speed_weights_each_window_by_its_seconds():
    """Two windows of 100 s at 1,000 tok/s and a last one of 10 s at 4,000: 240,000 tokens in
    210 s, not the plain mean of the three speeds (2,000)."""
    metrics = [{"elapsed": 100.0, "tokens_per_s": 1000.0},
               {"elapsed": 200.0, "tokens_per_s": 1000.0},
               {"elapsed": 210.0, "tokens_per_s": 4000.0}]
    assert training_speed(metrics) == pytest.approx(240_000 / 210)
    assert training_speed(metrics[:1]) == pytest.approx(1000.0)


def test_convergence_labels():
    assert convergence("early_stopping") == "converged"
    assert convergence("max_minutes") == "capped (max_minutes)"
    assert convergence("max_steps") == "capped (max_steps)"
    assert convergence("non_finite_loss") == "non_finite_loss"


def test_curve_panels_colour_each_seed_alike_and_survive_odd_curves(tmp_path):
    """A panel of seeds 2 and 3 draws seed 2 in the colour the legend gives seed 2; twelve
    seeds, a curve with a NaN and one without any finite value do not stop the figure."""
    import matplotlib.image

    from nmt.plots import curve_panels, seed_colours

    series = {"a": {1: ([1, 2], [10.0, 20.0]), 2: ([1, 2], [11.0, 19.0])},
              "b": {2: ([1, 2], [5.0, float("nan")]), 3: ([1], [float("nan")])}}
    colour = seed_colours(series)
    assert list(colour) == [1, 2, 3] and len(set(colour.values())) == 3
    many = {"c": {s: ([1, 2], [1.0, float(s)]) for s in range(1, 13)}}
    assert len(set(seed_colours(many).values())) == 12
    curve_panels(series | many, tmp_path / "p.png", baseline="a")
    assert matplotlib.image.imread(tmp_path / "p.png").ndim == 3
