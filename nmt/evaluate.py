"""Corpus BLEU and chrF with sacreBLEU (default 13a tokenization on detokenized text), and the
validation loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sacrebleu.metrics import BLEU, CHRF

from nmt.data.dataset import Encoded, make_batch, token_batches
from nmt.precision import autocast


@dataclass
class Scores:
    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def line(self) -> str:
        return (f"BLEU = {self.bleu:.2f} ({self.bleu_signature})\n"
                f"chrF = {self.chrf:.2f} ({self.chrf_signature})")


def score(hypotheses: list[str], references: list[str]) -> Scores:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(hypotheses, [references])
    c = chrf.corpus_score(hypotheses, [references])
    return Scores(b.score, c.score, str(bleu.get_signature()), str(chrf.get_signature()))


def _metric(name: str):
    return BLEU() if name == "bleu" else CHRF()


RESAMPLING_SEED = 12345   # the bootstrap's and the randomization test's, for reproducible p and CI


def sentence_stats(name: str, hypotheses: list[str], references: list[str]) -> np.ndarray:
    """Per-sentence sufficient statistics of sacreBLEU's BLEU or chrF: [N, K]; their column
    sums give the corpus score (sacreBLEU's own bootstrap works the same way)."""
    if len(hypotheses) != len(references):   # sacreBLEU would zip them short silently
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    metric = _metric(name)
    return np.asarray(metric._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64)


def score_from_stats(name: str, stats: np.ndarray) -> float:
    return float(_metric(name)._compute_score_from_stats(stats.tolist()).score)


def bootstrap_ci(name: str, stats: np.ndarray | list[np.ndarray], samples: int = 10000,
                 seed: int = RESAMPLING_SEED) -> tuple[float, float]:
    """95% confidence interval of the corpus score by resampling sentences (percentile method).
    Given several runs' statistics on the same sentences (seeds), of the mean of their scores:
    each resample draws one set of sentences for all runs. It covers the test set's sampling,
    not the spread between seeds (that is the mean ± std)."""
    runs = [stats] if isinstance(stats, np.ndarray) else list(stats)
    rng = np.random.default_rng(seed)
    n = len(runs[0])
    if any(len(s) != n for s in runs):
        raise ValueError("the runs' statistics cover different numbers of sentences")
    scores = []
    for _ in range(samples):
        counts = np.bincount(rng.integers(0, n, n), minlength=n)
        scores.append(float(np.mean([score_from_stats(name, counts @ s) for s in runs])))
    low, high = np.percentile(scores, [2.5, 97.5])
    return float(low), float(high)


def paired_randomization(name: str, stats_a: np.ndarray, stats_b: np.ndarray,
                         samples: int = 10000, seed: int = RESAMPLING_SEED) -> float:
    """Approximate randomization test (Riezler & Maxwell 2005) of |score(a) - score(b)|:
    swap the two systems' outputs sentence by sentence at random; p = share of swaps at least
    as different as the real pair (+1 smoothing). Identical systems give p = 1."""
    rng = np.random.default_rng(seed)
    real = abs(score_from_stats(name, stats_a.sum(0)) - score_from_stats(name, stats_b.sum(0)))
    at_least = 0
    for _ in range(samples):
        swap = rng.random(len(stats_a)) < 0.5
        a = np.where(swap[:, None], stats_b, stats_a).sum(0)
        b = np.where(swap[:, None], stats_a, stats_b).sum(0)
        if abs(score_from_stats(name, a) - score_from_stats(name, b)) >= real - 1e-9:
            at_least += 1
    return (at_least + 1) / (samples + 1)


def validation_loss(model: torch.nn.Module, data: Encoded, batch_tokens: int,
                    device: torch.device, precision: str = "fp32") -> float:
    """Mean per-token negative log-likelihood of `data` (the model's `loss`, no smoothing)."""
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad(), autocast(precision, device):
        for idx in token_batches(data, batch_tokens, 0, 0, shuffle=False):
            b = make_batch(data, idx).to(device)
            _, nll = model.loss(b.src, b.src_len, b.tgt_in, b.tgt_out)
            total += float(nll)
            tokens += b.n_tokens
    return total / max(tokens, 1)
