"""Alignment heatmaps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402


def heatmap(alignment: Tensor, src_pieces: list[str], tgt_pieces: list[str],
            path: str | os.PathLike, title: str | None = None) -> None:
    """alignment [T, S]: rows are target pieces, columns source pieces."""
    a = alignment.float().numpy()
    T, S = a.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * S + 2), max(3.0, 0.3 * T + 1.5)))
    ax.imshow(a, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(S))
    ax.set_xticklabels(src_pieces[:S], rotation=90, fontsize=8)
    ax.set_yticks(range(T))
    ax.set_yticklabels(tgt_pieces[:T], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_alignments_jsonl(records: list[dict], path: str | os.PathLike) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
