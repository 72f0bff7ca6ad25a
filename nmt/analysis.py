"""Analyses of trained runs that attention papers report: BLEU by source length, and how fast
and whether a run converged."""

from __future__ import annotations

from collections.abc import Sequence

from sacrebleu.metrics import BLEU

from nmt.config import LENGTH_BOUNDS

Buckets = tuple[tuple[int, int | None], ...]
BOUNDS_RULE = "must be increasing positive whole numbers (upper bounds in words, e.g. [10,15,20])"


def bounds_ok(bounds: Sequence[int]) -> bool:
    return (len(bounds) > 0 and all(type(b) is int and b > 0 for b in bounds)
            and list(bounds) == sorted(set(bounds)))


def buckets_from_bounds(bounds: Sequence[int]) -> Buckets:
    """Inclusive upper bounds (words) -> buckets: [10, 15, 20] -> 1-10, 11-15, 16-20, 21+."""
    if not bounds_ok(bounds):
        raise ValueError(f"length buckets {list(bounds)}: {BOUNDS_RULE}")
    lows = [1] + [b + 1 for b in bounds]
    return tuple(zip(lows, [*bounds, None], strict=True))


# Source-sentence length buckets, in whitespace-separated words (length_buckets sets others).
LENGTH_BUCKETS: Buckets = buckets_from_bounds(LENGTH_BOUNDS)


def bucket_label(low: int, high: int | None) -> str:
    return f"{low}-{high}" if high is not None else f"{low}+"


def bucket_of(n_words: int, buckets: Sequence[tuple[int, int | None]] = LENGTH_BUCKETS) -> str:
    """The label of the bucket holding a sentence of n_words (empty sentences: the first)."""
    for low, high in buckets:
        if high is None or n_words <= high:
            return bucket_label(low, high)
    raise AssertionError("the last bucket is open")


def bleu_by_length(sources: Sequence[str], hyps: Sequence[str], refs: Sequence[str],
                   buckets: Sequence[tuple[int, int | None]] = LENGTH_BUCKETS
                   ) -> dict[str, dict[str, float]]:
    """Corpus BLEU of the sentences in each source-length bucket: label -> {bleu, sentences}.
    Buckets without sentences are left out."""
    groups: dict[str, tuple[list[str], list[str]]] = {bucket_label(*b): ([], []) for b in buckets}
    for src, hyp, ref in zip(sources, hyps, refs, strict=True):
        h, r = groups[bucket_of(len(src.split()), buckets)]
        h.append(hyp)
        r.append(ref)
    bleu = BLEU()
    return {label: {"bleu": bleu.corpus_score(h, [r]).score, "sentences": len(h)}
            for label, (h, r) in groups.items() if h}


def training_speed(metrics: Sequence[dict]) -> float:
    """Target tokens per training second over a whole run: each validation window's speed
    weighted by the training seconds it lasted (a short last window counts for what it lasted)."""
    seconds = [m["elapsed"] - prev for m, prev in
               zip(metrics, [0.0] + [m["elapsed"] for m in metrics[:-1]], strict=True)]
    if sum(seconds) <= 0:
        return sum(m["tokens_per_s"] for m in metrics) / len(metrics)
    return sum(m["tokens_per_s"] * s for m, s in zip(metrics, seconds, strict=True)) / sum(seconds)


def time_to_fraction(metrics: Sequence[dict], fraction: float = 0.95
                     ) -> tuple[float | None, int | None]:
    """Training minutes and step of the first validation reaching `fraction` of the run's best
    validation BLEU; (None, None) for a run without validations."""
    if not metrics:
        return None, None
    target = fraction * max(m["bleu"] for m in metrics)
    first = next(m for m in metrics if m["bleu"] >= target)
    return first["elapsed"] / 60, first["step"]


def convergence(finished: str) -> str:
    """converged (early stopping on validation BLEU), capped by a time, step or epoch budget
    that ended it first (named: a time cap depends on what else shared the machine), or the
    reason itself (e.g. non_finite_loss)."""
    if finished == "early_stopping":
        return "converged"
    if finished in ("max_minutes", "max_steps", "max_epochs"):
        return f"capped ({finished})"
    return finished or "unfinished"
