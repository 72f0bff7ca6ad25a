"""Checkpoint averaging: the element-wise mean of several checkpoints' weights, as a new
self-contained checkpoint (config, tokenizer and progress of the last one; no training state)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nmt import checkpoint
from nmt.checkpoint import CheckpointError
from nmt.config import architecture


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """Average the weights of checkpoints of one model (same config, vocabulary and tensors)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    first = checkpoint.load(paths[0])
    total = {k: v.double() if v.is_floating_point() else v for k, v in first["model"].items()}
    last = first
    for path in paths[1:]:
        ckpt = checkpoint.load(path)
        if not torch.equal(ckpt["tokenizer"], first["tokenizer"]):
            raise CheckpointError(f"{path}: another vocabulary than {paths[0]}; only checkpoints "
                                  "of one model can be averaged")
        mine, theirs = architecture(ckpt["config"]), architecture(first["config"])
        if mine != theirs:
            key = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))[0]
            raise CheckpointError(f"{path}: another model than {paths[0]} ({key}: "
                                  f"{mine.get(key)!r} against {theirs.get(key)!r})")
        if ckpt["config"].get("seed") != first["config"].get("seed"):
            # Two initialisations: their hidden units do not line up, and the mean of their
            # weights translates nothing.
            raise CheckpointError(
                f"{path}: trained from another initialisation than {paths[0]} (seed "
                f"{ckpt['config'].get('seed')} against {first['config'].get('seed')}); average "
                "the checkpoints of one run, and combine runs as an ensemble instead "
                "(nmt-translate checkpoint=[A,B])")
        if ckpt["model"].keys() != total.keys():
            raise CheckpointError(f"{path}: other tensors than {paths[0]}")
        for k, v in ckpt["model"].items():
            if v.is_floating_point():
                total[k] += v.double()
            elif not torch.equal(v, total[k]):
                raise CheckpointError(f"{path}: integer tensor {k} differs from {paths[0]}")
        last = ckpt
    n = len(paths)
    model = {k: (v / n).to(first["model"][k].dtype) if v.is_floating_point() else v
             for k, v in total.items()}
    progress = dict(last.get("progress", {}))
    return {"model": model, "config": last["config"], "tokenizer": last["tokenizer"],
            "progress": progress, "averaged": [str(p) for p in paths]}


def step_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """A run's kept step checkpoints (checkpoints/step<k>.pt), oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [p for p in folder.glob("step*.pt") if p.stem[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[4:]))
