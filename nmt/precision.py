"""The arithmetic a command runs in: fp32, or bf16 mixed precision.

bf16 runs the matrix products (linear layers, attention scores and contexts, the output layer,
the location convolution) in bfloat16 through torch.autocast, and keeps in float32 what
accumulates or normalises: the weights and Adam's moments, the GRU recurrences (encoder and
decoder states), softmax and the loss, and every attention state (nmt.attention.base
`at_least_fp32`). No loss scaling is needed: bfloat16 has float32's exponent range.

Faster where the hardware multiplies bfloat16 natively (CPUs with AVX512-BF16 or AMX, NVIDIA
GPUs from Ampere on); elsewhere it may be slower than fp32. fp16 is not offered: it needs loss
scaling (GPUs before Ampere, without bfloat16, train in fp32 here).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("fp32", "bf16")


def check_precision(name: str, device: torch.device | None = None, key: str = "precision"
                    ) -> None:
    """Raise ValueError naming `key` if `name` is not a precision, or `device` cannot run it."""
    if name not in PRECISIONS:
        hint = (" (fp16 needs loss scaling; bf16 has the range of fp32 and none of its cost)"
                if name in ("fp16", "float16", "half") else "")
        raise ValueError(f"{key}={name!r}: must be one of {', '.join(PRECISIONS)}{hint}")
    if name == "bf16" and device is not None:
        # Compute capability 8.0 (Ampere) brought bfloat16 arithmetic; older GPUs emulate it
        # (torch.cuda.is_bf16_supported() says yes for them), slower than fp32.
        if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 0):
            raise ValueError(f"{key}=bf16: {torch.cuda.get_device_name(device)} has no "
                             "bfloat16 arithmetic; use fp32")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"{key}=bf16: mixed precision runs on cpu or cuda, not "
                             f"{device.type}; use fp32")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    """The context a forward pass (or a decoding) runs in for `precision` on `device`."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device.type, dtype=torch.bfloat16):
        yield


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """float32 inside a mixed-precision region (the recurrences; autocast would run CUDA's fused
    GRU in bfloat16). Outside autocast it does nothing, not even enter a context: it runs per
    decoding step."""
    if not torch.is_autocast_enabled(device.type):
        yield
        return
    with torch.autocast(device.type, enabled=False):
        yield
