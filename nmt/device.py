"""The device, CPU threads and memory allocator settings a command runs on."""

from __future__ import annotations

import ctypes
import os
import sys

import torch

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4   # glibc mallopt parameters (malloc.h)
_kept = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the system.

    glibc serves each block over 32 MB (e.g. the [rows, vocabulary] logits of every decoding
    step) with a fresh mmap and unmaps it when freed, so the next step page-faults the same
    amount in again: about 15% of beam-search time and 6% of training time here. With mmap off
    and trimming at 2 GB, the heap keeps those pages (peak memory grows by about a tenth).
    Process-wide; a no-op outside glibc Linux or with NMT_SYSTEM_MALLOC=1. Returns whether it
    is in effect."""
    global _kept
    if _kept:
        return True
    if os.environ.get("NMT_SYSTEM_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):   # not glibc (musl, ...)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _kept


def setup_device(name: str, threads: int = 0) -> torch.device:
    """`auto` picks CUDA when present; `threads` > 0 sets torch's CPU threads. Also keeps freed
    memory in the process (`keep_freed_memory`)."""
    keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    return find_device(name)


def find_device(name: str | torch.device) -> torch.device:
    """The device named (`auto`: CUDA when present), checked to be usable here: ValueError
    naming it otherwise, now rather than after the data is prepared or the model loaded."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={name}: not a device (auto, cpu, cuda or cuda:N)") from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name}: no CUDA device here (device=auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    elif device.type == "meta":   # tensors without numbers
        raise ValueError(f"device={name}: not a device to compute on (auto, cpu, cuda or "
                         "cuda:N)")
    elif device.type != "cpu":
        try:   # torch names more device types than this build can use
            torch.zeros(1, device=device)
        except (RuntimeError, AssertionError) as err:
            raise ValueError(f"device={name}: not usable with this PyTorch ("
                             f"{str(err).split('. ')[0] or type(err).__name__})") from err
    return device
