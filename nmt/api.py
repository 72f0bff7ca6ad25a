"""The Python API: load a checkpoint, or several as an ensemble, and translate lines.

    import nmt
    t = nmt.load("outputs/run/checkpoints/best.pt", device="cpu")
    for r in t.translate(["A dog runs in the snow."], beam_size=5, alignments=True):
        print(r.text, r.score, r.alignment.shape)

The command-line tools and nmt-compare load and run models through this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from nmt import checkpoint
from nmt.checks import check_config
from nmt.data.tokenizer import Tokenizer
from nmt.device import find_device
from nmt.ensemble import Ensemble
from nmt.model.seq2seq import Seq2Seq, build_model
from nmt.precision import check_precision
from nmt.translate import SearchOptions, Translation, translate

PathLike = str | os.PathLike


def load_model(path: PathLike, device: torch.device | str = "cpu"
               ) -> tuple[Seq2Seq, Tokenizer, dict]:
    """Model (in eval mode), tokenizer and config from a self-contained checkpoint."""
    device = find_device(device)
    # read onto the CPU: a last.pt also holds the optimizer's state, which must not go to a GPU
    ckpt = checkpoint.load(path)
    cfg = ckpt["config"]
    try:
        tok = Tokenizer(bytes(ckpt["tokenizer"].tolist()))
    except (KeyError, AttributeError, RuntimeError) as err:
        raise checkpoint.CheckpointError(f"{path}: no usable tokenizer inside (damaged?): "
                                         f"{err}") from err
    try:
        model = build_model(cfg["model"], cfg["attention"], len(tok), cfg.get("decoder"))
    except (KeyError, ValueError) as err:   # e.g. a mechanism of a later version
        raise checkpoint.CheckpointError(f"{path}: its config cannot be built here: {err}"
                                         ) from err
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise checkpoint.CheckpointError(f"{path}: weights do not match the stored config "
                                         f"({checkpoint.weight_mismatch(err)})") from err
    return model.to(device).eval(), tok, cfg


class Translator:
    """A loaded model (or ensemble) with its tokenizer; `translate` gives one result per line."""

    def __init__(self, model: Seq2Seq | Ensemble, tokenizer: Tokenizer, configs: list[dict],
                 device: torch.device, paths: list[str], precision: str = "fp32"):
        check_precision(precision, device)
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.configs, self.paths, self.precision = configs, paths, precision

    @property
    def config(self) -> dict:
        """The config of the (first) model, as trained."""
        return self.configs[0]

    def translate(self, lines: Sequence[str] | str, beam_size: int = 5, alpha: float = 0.6,
                  nbest: int = 1, alignments: bool = False, max_len_ratio: float = 1.5,
                  max_len_offset: int = 10, batch_tokens: int = 4000, max_src_len: int = 0,
                  max_out_len: int = 400, progress: bool = False) -> list[Translation]:
        """Translate each line (a single string is one line). Each result has `text`, `score`,
        `nbest` [(text, score)], `src_pieces`, `tgt_pieces` and, with alignments=True,
        `alignment` [target pieces, source pieces] (and `heads` for multi-head attention).
        Sources longer than max_src_len pieces (0: the training limit) are cut with a warning;
        no output is longer than max_out_len pieces."""
        opts = SearchOptions(beam_size=beam_size, alpha=alpha, nbest=nbest,
                             max_len_ratio=max_len_ratio, max_len_offset=max_len_offset,
                             max_out_len=max_out_len, max_src_len=max_src_len,
                             batch_tokens=batch_tokens)
        return self.translate_with(lines, opts, alignments, progress)

    def translate_with(self, lines: Sequence[str] | str, opts: SearchOptions,
                       alignments: bool = False, progress: bool = False,
                       first_line: int = 1, source: str = "") -> list[Translation]:
        """translate() with a SearchOptions; warnings name the lines as `source`:line, numbered
        from `first_line`."""
        if isinstance(lines, str):
            lines = [lines]
        elif isinstance(lines, bytes | Mapping) or not isinstance(lines, Iterable):
            raise TypeError(f"lines: a string or a sequence of strings, not "
                            f"{type(lines).__name__}")
        lines = list(lines)
        for i, line in enumerate(lines):
            if not isinstance(line, str):   # None or NaN from a table column, bytes, ...
                raise TypeError(f"lines[{i}]: {line!r} is a {type(line).__name__}, not a string")
        check_config(opts)
        if not opts.max_src_len:
            opts = replace(opts, max_src_len=self.max_src_len)
        return translate(self.model, self.tokenizer, lines, opts, self.device,
                         alignments=alignments, progress=progress, first_line=first_line,
                         source=source, precision=self.precision)

    @property
    def max_src_len(self) -> int:
        """The longest source the models were trained on (pieces), the default cut."""
        return min(int(c.get("data", {}).get("max_len", 0) or 0) or 10**9 for c in self.configs)


def direction(cfg: dict) -> str:
    """A checkpoint config's language pair, e.g. "en->de"."""
    data = cfg.get("data", {})
    return f"{data.get('src_lang')}->{data.get('tgt_lang')}"


def load(checkpoints: PathLike | Sequence[PathLike], device: torch.device | str = "cpu",
         precision: str = "fp32") -> Translator:
    """A Translator for one checkpoint, or for several (an ensemble: each step averages the
    models' log-probabilities). Ensemble members must share one vocabulary. `precision`:
    fp32, or bf16 mixed precision (faster on hardware with bfloat16 arithmetic)."""
    paths = ([checkpoints] if isinstance(checkpoints, str | os.PathLike) else
             list(checkpoints) if isinstance(checkpoints, Sequence) else [None])
    if not paths:
        raise ValueError("no checkpoint given")
    if not all(isinstance(p, str | os.PathLike) for p in paths):
        raise ValueError(f"checkpoint={checkpoints!r}: give a path or a list of paths")
    device = find_device(device)
    check_precision(precision, device)
    models, configs, tok = [], [], None
    for path in paths:
        model, this_tok, cfg = load_model(path, device)
        if tok is not None and this_tok.proto != tok.proto:
            raise checkpoint.CheckpointError(
                f"{path}: trained with another vocabulary than {paths[0]}; an ensemble needs "
                "models of one vocabulary (the same training data and SentencePiece settings)")
        if configs and direction(cfg) != direction(configs[0]):
            raise checkpoint.CheckpointError(
                f"{path}: translates {direction(cfg)}, {paths[0]} {direction(configs[0])}; an "
                "ensemble needs models of one direction")
        tok = tok or this_tok
        models.append(model)
        configs.append(cfg)
    model = models[0] if len(models) == 1 else Ensemble(models).eval()
    return Translator(model, tok, configs, device, [str(Path(p)) for p in paths], precision)
