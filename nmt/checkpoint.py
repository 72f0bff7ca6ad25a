"""Self-contained checkpoints: weights, config, tokenizer and training state.

Written atomically (temporary file, fsync, rename), loaded with weights_only=True so loading never
runs code from the file, and checked against the CRC-32 that torch's zip format keeps for every
record (torch.load does not check them, so flipped bits inside the weights would load silently;
files written with torch's CRC-32 turned off have none to check).
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

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
    # One open file for the check and the load: a best.pt replaced meanwhile (a run still
    # training writes a new one by rename) cannot be checked in one version and read in another.
    with open(path, "rb") as f:
        head = f.read(4)
        if not head:
            raise CheckpointError(f"{path}: an empty file, not a checkpoint (truncated?)")
        if head[:2] != b"PK" and head[:1] != b"\x80":   # torch's zip format, or a legacy pickle
            raise CheckpointError(f"{path}: not a PyTorch checkpoint")
        obj = read_checked(f, path, head[:2] == b"PK", map_location)
    if not isinstance(obj, dict) or "model" not in obj or "config" not in obj:
        raise CheckpointError(f"{path}: not a checkpoint of this toolkit (no model/config)")
    return obj


def read_checked(f: BinaryIO, path: Path, is_zip: bool,
                 map_location: str | torch.device) -> Any:
    try:
        damaged = first_damaged_record(f) if is_zip else None
        if damaged is None:
            f.seek(0)
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message suggests loading it unsafely; name only what was refused
        what = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        raise CheckpointError(f"{path}: refused to load: the file holds objects other than "
                              "tensors and plain data" + (f" ({what[0]})" if what else "")
                              ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, struct.error, zlib.error,
            NotImplementedError, ValueError) as err:   # ValueError: e.g. a damaged name field
        raise CheckpointError(f"{path}: truncated or corrupted checkpoint ({err})") from err
    raise CheckpointError(f"{path}: corrupted checkpoint (its record {damaged} fails the zip "
                          "format's CRC-32 or header check; the file changed after it was "
                          "written)")


def first_damaged_record(f: BinaryIO) -> str | None:
    """The name of the first zip record whose bytes do not match their CRC-32 (or whose header
    is damaged), or None. Files written with torch's CRC-32 turned off
    (torch.serialization.set_crc32_options(False)) store 0 for every record: not checked."""
    f.seek(0)
    archive = zipfile.ZipFile(f)
    if all(info.CRC == 0 for info in archive.infolist() if info.file_size):
        return None
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
