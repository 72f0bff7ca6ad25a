"""Attention registry: name -> class. Adding a variant = one class + configs/attention/NAME.yaml."""

from __future__ import annotations

from nmt.attention.additive import Bahdanau, LuongConcat, NormedBahdanau
from nmt.attention.base import Attention, Memory, masked_softmax
from nmt.attention.gmm import GMM
from nmt.attention.local import LocalM, LocalP
from nmt.attention.location import Location
from nmt.attention.monotonic import Monotonic
from nmt.attention.multihead import MultiHead
from nmt.attention.multiplicative import (
    AttentionConfigError,
    LuongDot,
    LuongGeneral,
    ScaledDot,
    ScaledLuong,
)


class MonotonicBahdanau(Monotonic):
    def __init__(self, query_size: int, memory_size: int, **kw: object):
        kw["flavour"] = "bahdanau"
        super().__init__(query_size, memory_size, **kw)


class MonotonicLuong(Monotonic):
    def __init__(self, query_size: int, memory_size: int, **kw: object):
        kw["flavour"] = "luong"
        super().__init__(query_size, memory_size, **kw)


REGISTRY: dict[str, type[Attention]] = {
    "bahdanau": Bahdanau,
    "normed_bahdanau": NormedBahdanau,
    "luong_dot": LuongDot,
    "luong_general": LuongGeneral,
    "luong_concat": LuongConcat,
    "scaled_luong": ScaledLuong,
    "scaled_dot": ScaledDot,
    "monotonic_bahdanau": MonotonicBahdanau,
    "monotonic_luong": MonotonicLuong,
    "location": Location,
    "local_m": LocalM,
    "local_p": LocalP,
    "multihead": MultiHead,
    "gmm": GMM,
}
for _name, _cls in REGISTRY.items():
    if "name" not in _cls.__dict__:
        _cls.name = _name


def build_attention(name: str, query_size: int, memory_size: int, **options: object) -> Attention:
    """Instantiate the mechanism registered as `name` with its config options."""
    if name not in REGISTRY:
        raise AttentionConfigError(f"attention.name={name!r} is unknown; valid names: "
                                   f"{', '.join(sorted(REGISTRY))}")
    try:
        return REGISTRY[name](query_size, memory_size, **options)
    except ValueError as err:
        if isinstance(err, AttentionConfigError):
            raise
        raise AttentionConfigError(str(err)) from err


__all__ = ["REGISTRY", "Attention", "AttentionConfigError", "Memory", "build_attention",
           "masked_softmax"]
