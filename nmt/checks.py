"""Settings that cannot work, refused at start-up with the key named (the schemas in nmt.config
check names and types; this checks values). Attention and decoder options that depend on the
mechanism (sizes that must divide, odd kernels, names) are checked where the modules are built
(nmt.attention, nmt.model)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from nmt.analysis import BOUNDS_RULE, bounds_ok
from nmt.precision import PRECISIONS

Rule = tuple[Callable[[Any], bool], str]

POSITIVE: Rule = (lambda v: v > 0, "must be positive")
NON_NEGATIVE: Rule = (lambda v: v >= 0, "must be 0 or more")
FRACTION: Rule = (lambda v: 0 <= v < 1, "must be at least 0 and below 1")
PRECISION: Rule = (lambda v: v in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}")
LENGTH_BOUNDS: Rule = (bounds_ok, BOUNDS_RULE)

# Dataclass name -> field -> rule.
RULES: dict[str, dict[str, Rule]] = {
    "SearchOptions": {
        "beam_size": POSITIVE, "nbest": POSITIVE, "alpha": NON_NEGATIVE,
        "max_len_ratio": NON_NEGATIVE, "max_len_offset": NON_NEGATIVE, "max_out_len": POSITIVE,
        "max_src_len": NON_NEGATIVE, "batch_tokens": POSITIVE,
    },
    "DataConfig": {
        "vocab_size": (lambda v: 4 < v < 2**31,
                       "must be above 4 (ids 0-3 are pad, unk, bos, eos) and below 2**31"),
        "spm_model_type": (lambda v: v in ("unigram", "bpe", "char", "word"),
                           "must be unigram, bpe, char or word"),
        "character_coverage": (lambda v: 0 < v <= 1, "must be above 0 and at most 1"),
        "spm_sample_size": POSITIVE, "max_len": POSITIVE, "train_limit": NON_NEGATIVE,
        "valid_limit": NON_NEGATIVE,
    },
    "ModelConfig": {
        "emb_size": POSITIVE, "hidden_size": POSITIVE, "enc_hidden_size": NON_NEGATIVE,
        "enc_layers": POSITIVE, "dec_layers": POSITIVE, "dropout": FRACTION,
        "word_dropout": FRACTION,
    },
    "AttentionConfig": {
        "units": NON_NEGATIVE, "sigmoid_noise": NON_NEGATIVE, "filters": POSITIVE,
        "kernel_size": POSITIVE, "window": POSITIVE, "heads": POSITIVE, "mixtures": POSITIVE,
        "sigma_min": POSITIVE,
    },
    "DecoderConfig": {"readout_size": NON_NEGATIVE},
    "OptimConfig": {
        "lr": POSITIVE, "weight_decay": NON_NEGATIVE, "clip_norm": POSITIVE,
        "lr_factor": (lambda v: 0 < v < 1, "must be above 0 and below 1"),
        "lr_patience": NON_NEGATIVE, "min_lr": NON_NEGATIVE,
        "betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v),
                  "must be two numbers, each at least 0 and below 1"),
    },
    "LoopConfig": {
        "batch_tokens": POSITIVE, "label_smoothing": FRACTION, "max_epochs": POSITIVE,
        "max_steps": NON_NEGATIVE, "max_minutes": NON_NEGATIVE, "valid_every": POSITIVE,
        "log_every": NON_NEGATIVE, "patience": POSITIVE, "valid_beam": POSITIVE,
        "heatmap_sentences": NON_NEGATIVE, "max_bad_steps": POSITIVE, "keep_last": NON_NEGATIVE,
        "test_beam": NON_NEGATIVE, "test_alpha": NON_NEGATIVE,
        "test_alignments": NON_NEGATIVE,
        "save_every_minutes": NON_NEGATIVE,
    },
    "TrainConfig": {"threads": NON_NEGATIVE, "precision": PRECISION,
                    "seed": (lambda v: 0 <= v < 2**32, "must be 0 or more and below 2**32")},
    "PreprocessConfig": {"threads": NON_NEGATIVE},
    "TranslateConfig": {"threads": NON_NEGATIVE, "precision": PRECISION,
                        "max_heatmaps": NON_NEGATIVE, "chunk_lines": POSITIVE,
                        "report_sentences": NON_NEGATIVE, "length_buckets": LENGTH_BOUNDS},
    "CompareConfig": {"threads": NON_NEGATIVE, "precision": PRECISION, "samples": POSITIVE,
                      "alignment_sentences": NON_NEGATIVE, "report_sentences": NON_NEGATIVE,
                      "length_buckets": LENGTH_BOUNDS,
                      "order": (lambda v: v in ("bleu", "runs"), "must be bleu or runs")},
    "AverageConfig": {"last": POSITIVE},
}


def check_config(conf: Any, prefix: str = "") -> None:
    """Raise ValueError naming the first key of `conf` (a config dataclass, walked with its
    nested ones) whose value cannot work. `prefix` is put before the keys (e.g. "search.")."""
    rules = RULES.get(type(conf).__name__, {})
    for f in dataclasses.fields(conf):
        value = getattr(conf, f.name)
        key = prefix + f.name
        if dataclasses.is_dataclass(value):
            check_config(value, key + ".")
            continue
        if value == "" or isinstance(value, list) and "" in value:   # `input=$UNSET`
            what = "= is empty" if value == "" else f"={value} has an empty item"
            raise ValueError(f"{key}{what}: give a value or leave the key out (a shell "
                             "variable that is not set?)")
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{key}={value!r}: must be a whole number")   # e.g. from the API
        if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{key}={value!r}: must be a number")
        rule = rules.get(f.name)
        if rule is None or value is None:
            continue
        ok, wanted = rule
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}={value}: must be a finite number")
        if not ok(value):
            raise ValueError(f"{key}={value}: {wanted}")
    if type(conf).__name__ == "SearchOptions" and conf.nbest > conf.beam_size:
        raise ValueError(f"{prefix}nbest={conf.nbest}: cannot exceed "
                         f"{prefix}beam_size={conf.beam_size}")
