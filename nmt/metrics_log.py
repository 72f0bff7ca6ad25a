"""metrics.jsonl, one JSON row per validation, read tolerantly: a run killed mid-write may leave
a damaged last line, which must neither stop a resume nor a comparison."""

from __future__ import annotations

import json
from pathlib import Path


def metrics_row(line: str) -> dict | None:
    """A metrics.jsonl line, or None for a blank or damaged one."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def read_metrics(path: str | Path) -> list[dict]:
    """The readable rows of a metrics.jsonl ([] if there is none)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = (metrics_row(x) for x in path.read_text(errors="replace").splitlines())
    return [r for r in rows if r is not None]
