"""The device and CPU threads a command runs on."""

from __future__ import annotations

import torch


def setup_device(name: str, threads: int = 0) -> torch.device:
    """`auto` picks CUDA when present; `threads` > 0 sets torch's CPU threads."""
    if threads:
        torch.set_num_threads(threads)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device={name}: not a device (auto, cpu, cuda or cuda:N)") from err
