"""Self-contained checkpoints: weights, config, tokenizer and training state.

Written atomically (temporary file, fsync, rename), loaded with weights_only=True so loading never
runs code from the file, and checked against the CRC-32 that torch's zip format keeps for every
record (torch.load does not check them, so flipped bits inside the weights would load silently).
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def on_cpu(obj: Any) -> Any:
    """Tensors moved to the CPU (in nested dicts, lists and tuples): a checkpoint written on a
    GPU then loads anywhere, also with a plain torch.load."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(on_cpu(v) for v in obj)
    return obj


def save(obj: dict[str, Any], path: str | os.PathLike) -> None:
    obj = on_cpu(obj)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a folder; give a checkpoint file (a run's is "
                              f"{path / 'checkpoints' / 'best.pt'})")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise CheckpointError(f"{path}: an empty file, not a checkpoint (truncated?)")
    if head[:2] != b"PK" and head[:1] != b"\x80":   # torch's zip format, or a legacy pickle
        raise CheckpointError(f"{path}: not a PyTorch checkpoint")
    try:
        damaged = first_damaged_record(path) if head[:2] == b"PK" else None
        obj = None if damaged else torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests loading it unsafely; name only what was refused
        what = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than "
                              "tensors and plain data" + (f" ({what[0]})" if what else "")
                              ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, struct.error, zlib.error,
            NotImplementedError) as err:
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({err})") from err
    if damaged:
        raise CheckpointError(f"{path}: corrupted checkpoint (its record {damaged} fails the "
                              "CRC-32 check; the file changed after it was written)")
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (no model/config)")
    return obj


def first_damaged_record(path: Path) -> str | None:
    """The name of the first zip record whose bytes do not match their CRC-32, or None."""
    with zipfile.ZipFile(path) as archive:
        return archive.testzip()


TRAINING_STATE = ("optimizer", "scheduler", "progress", "rng")


def load_resumable(path: str | os.PathLike) -> dict[str, Any]:
    """A run's last.pt with what continuing needs besides the weights."""
    ckpt = load(path)
    missing = [k for k in TRAINING_STATE if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: weights only, without the training state to continue "
                              f"from ({', '.join(missing)}); was it replaced by best.pt or an "
                              "averaged checkpoint?")
    return ckpt


def weight_mismatch(err: RuntimeError, limit: int = 300) -> str:
    """torch's load_state_dict error in one short line: which tensors are missing, unexpected
    or of another shape (its first line names only the module)."""
    lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
    text = "; ".join(lines) or str(err).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."
