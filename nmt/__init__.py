"""GRU encoder-decoder translation with pluggable attention. `nmt.load(checkpoint)` gives a
Translator (see nmt.api)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy: `import nmt` stays cheap; the API (and torch) load on first use.
    if name in ("load", "Translator"):
        from nmt import api
        return getattr(api, name)
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
