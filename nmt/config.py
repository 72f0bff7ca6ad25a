"""Typed config schemas (registered in Hydra's ConfigStore by the CLIs): a typo or a wrong type in
a config file or an override fails at start-up with the key named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# BLEU by source length: upper bounds of the buckets in words (1-10, 11-15, 16-20, 21+).
# Multi30k's sentences are short (test_2016_flickr: quartiles 9, 11 and 14 words): 21+ holds 37
# of its 1,000, where 31+ would hold 2.
LENGTH_BOUNDS = (10, 15, 20)


@dataclass
class SearchOptions:
    beam_size: int = 5
    alpha: float = 0.6                   # GNMT length penalty ((5 + |Y|) / 6) ** alpha
    nbest: int = 1
    max_len_ratio: float = 1.5           # output length limit: ratio * source length + offset
    max_len_offset: int = 10
    max_out_len: int = 400               # absolute cap on output pieces, whatever the source
    max_src_len: int = 0                 # longer sources are cut (with a warning); 0: the
    #                                      model's training limit data.max_len
    batch_tokens: int = 4000             # padded source tokens per decoding batch


@dataclass
class DataConfig:
    root: str = "data/multi30k"          # folder with {split}.{lang}[.gz]
    download: bool = True                # fetch Multi30k into `root` when files are missing
    src_lang: str = "en"
    tgt_lang: str = "de"
    train: str = "train"
    valid: str = "val"
    test: list[str] = field(default_factory=lambda: ["test_2016_flickr", "test_2017_flickr"])
    # Explicit files override root/split/lang (any two line-aligned plain or .gz files).
    train_src: str | None = None
    train_tgt: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    cache_dir: str = "data/cache"
    vocab_size: int = 8000
    spm_model_type: str = "unigram"
    character_coverage: float = 1.0
    # Sentences SentencePiece trains on (a random sample of both sides); its memory grows with
    # it, about 4 GB at a million sentences of 25 words.
    spm_sample_size: int = 1_000_000
    max_len: int = 100                   # training pairs longer than this (pieces) are skipped
    train_limit: int = 0                 # >0: use only the first N training pairs
    valid_limit: int = 0                 # >0: validate on the first N validation pairs


@dataclass
class ModelConfig:
    emb_size: int = 256
    hidden_size: int = 512               # decoder size
    enc_hidden_size: int = 0             # encoder output size, both directions (0: hidden_size)
    enc_layers: int = 1
    dec_layers: int = 1
    bidirectional: bool = True
    dropout: float = 0.3
    input_feeding: bool = True
    tie_embeddings: bool = False
    word_dropout: float = 0.0            # zero a whole word's embedding with this probability


@dataclass
class AttentionConfig:
    name: str = "bahdanau"
    units: int = 0                       # attention hidden size d_a (0: decoder hidden size)
    normalize: bool = False              # additive energies with weight-normalized v (g, b)
    scale: bool = False                  # Luong energies times a learned scalar g
    mode: str = "log_matrix"             # monotonic training: log_matrix|parallel|recursive|hard
    sigmoid_noise: float = 1.0           # monotonic: pre-sigmoid noise std in training
    score_bias_init: float = 0.0         # monotonic: initial r
    filters: int = 32                    # location: convolution filters
    kernel_size: int = 31                # location: odd kernel width
    location_input: str = "cumulative"   # location: prev|cumulative|both
    smoothing: bool = False              # location: sigmoid normalization instead of softmax
    conv_bias: bool = True
    energy_bias: bool = True
    score: str = "general"               # local_m/local_p content score: general|dot|concat
    window: int = 10                     # local_m/local_p: half-width D (sigma = D/2)
    heads: int = 4                       # multihead: H (divides both sizes)
    mixtures: int = 5                    # gmm: K
    sigma_min: float = 0.01              # gmm: smallest component width


@dataclass
class DecoderConfig:
    name: str = "luong"                  # luong: query s_t, input feeding, tanh(W_c [c; s])
    #                                      bahdanau: query s_{t-1}, context into the GRU, maxout
    readout_size: int = 0                # bahdanau: maxout output size l (0: hidden_size / 2)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    lr_factor: float = 0.5               # reduce on validation-BLEU plateau
    lr_patience: int = 2
    min_lr: float = 1e-5


@dataclass
class LoopConfig:
    batch_tokens: int = 2000             # target tokens per batch (padded)
    label_smoothing: float = 0.1
    max_epochs: int = 30
    max_steps: int = 0                   # 0: no limit
    max_minutes: float = 0.0             # wall-clock budget; 0: no limit
    valid_every: int = 1000              # steps
    log_every: int = 100                 # steps between progress lines in the log
    patience: int = 6                    # validations without BLEU gain before stopping
    valid_beam: int = 1                  # beam size for validation BLEU (1: greedy)
    heatmap_sentences: int = 4           # fixed validation sentences plotted each validation
    max_bad_steps: int = 10              # consecutive non-finite losses before stopping
    keep_last: int = 0                   # >0: keep the weights of the last N validations
    #                                      (checkpoints/step<k>.pt) for nmt-average
    test_beam: int = 5                   # final decoding of data.test with best.pt (0: skip)
    test_alpha: float = 0.6
    test_alignments: int = 100           # first test set's sentences whose alignments are kept
    #                                      (test/alignments.json, for nmt-compare without weights)
    save_every_minutes: float = 10.0     # also write last.pt this often between validations,
    #                                      so a killed run loses at most that much (0: off)
    tensorboard: bool = False            # also log to <run>/tensorboard (nmt[tensorboard])


@dataclass
class TrainConfig:
    seed: int = 1
    device: str = "auto"                 # auto|cpu|cuda|cuda:N
    threads: int = 0                     # torch CPU threads (0: torch's default)
    precision: str = "fp32"              # fp32|bf16 (mixed: bfloat16 products, fp32 weights,
    #                                      recurrences and loss; see nmt/precision.py)
    resume: str | None = None         # a run folder to continue from its last checkpoint
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attention: AttentionConfig = field(default_factory=AttentionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)


@dataclass
class PreprocessConfig:
    threads: int = 0                     # SentencePiece encoding threads (0: all cores)
    data: DataConfig = field(default_factory=DataConfig)


@dataclass
class TranslateConfig:
    checkpoint: Any = "???"              # a checkpoint, or a list of them: an ensemble
    input: str | None = None          # file; stdin when unset
    output: str | None = None         # file; stdout when unset
    reference: str | None = None      # prints BLEU and chrF when given
    heatmaps: bool = False
    heatmap_dir: str | None = None    # default: <hydra run dir>/heatmaps
    max_heatmaps: int = 100
    heatmap_heads: bool = False       # multi-head attention: also <line>.heads.png, one per head
    # the report's BLEU by source length: upper bounds in words (LENGTH_BOUNDS)
    length_buckets: list[int] = field(default_factory=lambda: list(LENGTH_BOUNDS))
    report_sentences: int = 500       # heatmaps=true: the first N lines in heatmap_dir/
    #                                   report.html (0: no report)
    chunk_lines: int = 2000           # lines read, translated and written at a time (a terminal
    #                                   on stdin: each line as it is typed)
    device: str = "auto"
    threads: int = 0
    precision: str = "fp32"           # fp32|bf16: bf16 decodes faster on hardware with
    #                                   bfloat16 arithmetic (scores differ in the last digits)
    search: SearchOptions = field(default_factory=SearchOptions)


@dataclass
class CompareConfig:
    runs: Any = "???"                    # a multirun folder, a run folder, or a list of them
    test_sets: list[str] = field(default_factory=list)  # default: the runs' data.test
    baseline: str = "bahdanau"           # variant the significance tests compare against
    order: str = "bleu"                  # bleu: rows by the first test set's mean BLEU, best
    #                                      first; runs: in the order the runs were given
    samples: int = 10000                 # bootstrap resamples and randomization shuffles
    #                                      (at 1,000 a p near 0.05 moves by about 0.01 with the
    #                                      random seed)
    alignment_sentences: int = 3         # test sentences shown side by side per variant
    # BLEU by source length: upper bounds in words (LENGTH_BOUNDS)
    length_buckets: list[int] = field(default_factory=lambda: list(LENGTH_BOUNDS))
    report_sentences: int = 500          # first test set's sentences in report.html, with
    #                                      every variant's alignments (0: no report)
    output_dir: str | None = None        # default: the Hydra run folder
    device: str = "auto"
    threads: int = 0
    precision: str = "fp32"           # fp32|bf16: bf16 decodes faster on hardware with
    #                                   bfloat16 arithmetic (scores differ in the last digits)
    search: SearchOptions = field(default_factory=SearchOptions)


@dataclass
class AverageConfig:
    checkpoints: list[str] = field(default_factory=list)  # checkpoint files to average
    run: str | None = None               # or: a run folder, averaging its newest step checkpoints
    last: int = 5                        # with run: how many (see train.keep_last)
    output: str = "???"                  # the averaged, self-contained checkpoint


# What the weights and the vocabulary of a run are made of: never changed on resume, and the
# same in checkpoints that are averaged.
FIXED = ("model.", "attention.", "decoder.", "data.vocab_size", "data.spm_", "data.src_lang",
         "data.tgt_lang", "data.character_coverage")
# ... except how it is trained, which may change
TRAINING_ONLY = ("model.dropout", "model.word_dropout", "attention.mode",
                 "attention.sigmoid_noise")


def flat(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def architecture(cfg: dict) -> dict:
    """The settings of a stored run config that shape its weights (FIXED less TRAINING_ONLY)."""
    return {k: v for k, v in flat(cfg).items()
            if k.startswith(FIXED) and k not in TRAINING_ONLY}
