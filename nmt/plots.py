"""Alignment heatmaps."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from torch import Tensor  # noqa: E402

# Figures grow with the sentence, up to this (matplotlib refuses images over 2^16 pixels a side;
# the labels of longer sentences then overlap, the weights are still all drawn).
MAX_INCHES = 200.0


def heatmap(alignment: Tensor, src_pieces: list[str], tgt_pieces: list[str],
            path: str | os.PathLike, title: str | None = None) -> None:
    """alignment [T, S]: rows are target pieces, columns source pieces; saved as a PNG."""
    fig = heatmap_figure(alignment, src_pieces, tgt_pieces, title)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heatmap_figure(alignment: Tensor, src_pieces: list[str], tgt_pieces: list[str],
                   title: str | None = None) -> Figure:
    """The heatmap with its colour bar and title, as a matplotlib figure."""
    a = alignment.float().numpy()
    T, S = a.shape
    fig, ax = plt.subplots(figsize=(min(max(4.5, 0.35 * S + 2.8), MAX_INCHES),
                                    min(max(3.0, 0.3 * T + 1.5), MAX_INCHES)))
    # gmm's weights may pass 1 (unnormalised Gaussians): the scale grows rather than saturate
    image = ax.imshow(a, cmap="Greys", vmin=0.0, vmax=max(1.0, float(a.max(initial=0.0))),
                      aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="attention weight")
    ax.set_xticks(range(S))
    ax.set_xticklabels(src_pieces[:S], rotation=90, fontsize=8)
    ax.set_yticks(range(T))
    ax.set_yticklabels(tgt_pieces[:T], fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def bleu_bars(labels: list[str], values: list[float], cis: list[tuple[float, float]],
              path: str | os.PathLike, title: str,
              seeds: list[list[float]] | None = None) -> None:
    """BLEU per variant with its confidence interval; `seeds`: each variant's runs, drawn as
    dots where there are several (the spread a single-seed bar hides)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(labels) + 2), 4))
    low = [v - c[0] for v, c in zip(values, cis, strict=True)]
    high = [c[1] - v for v, c in zip(values, cis, strict=True)]
    ax.bar(range(len(labels)), values, yerr=[low, high], capsize=4, color="#4c72b0")
    label = "each seed's run"
    for i, runs in enumerate(seeds or []):
        if len(runs) > 1:
            ax.plot([i + 0.18] * len(runs), runs, "o", color="#dd8452", markersize=4, label=label)
            label = None   # one legend entry
    if label is None:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("BLEU")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def distinct_colours(n: int) -> list[tuple[float, float, float]]:
    """n colours, the ten distinct hues of tab20 first, then their light shades (20 in all,
    so that 17 variants stay apart), repeating beyond."""
    tab20 = plt.get_cmap("tab20").colors
    colours = tab20[0::2] + tab20[1::2]
    return [colours[i % len(colours)] for i in range(n)]


def curves(series: dict[str, tuple[list[float], list[float]]], path: str | os.PathLike,
           xlabel: str = "training minutes") -> None:
    """Validation BLEU over training minutes (or steps), one line per run. Runs labelled
    "<variant> s<seed>" share their variant's colour, each seed its own line style (20 colours,
    so that 17 variants stay apart)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    variants = list(dict.fromkeys(label.rsplit(" s", 1)[0] for label in series))
    colours = distinct_colours(len(variants))
    seen: dict[str, int] = {}
    for label, (x, y) in series.items():
        variant = label.rsplit(" s", 1)[0]
        n = seen[variant] = seen.get(variant, -1) + 1
        ax.plot(x, y, marker=".", markersize=3, label=label,
                color=colours[variants.index(variant)],
                linestyle=("-", "--", ":", "-.")[n % 4])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation BLEU")
    ax.legend(fontsize=6, ncol=2 if len(series) > 12 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def seed_colours(series: dict[str, dict[int, object]]) -> dict[int, tuple]:
    """Seed number -> its colour, the same in every panel (a panel of seeds 2 and 3 does not
    draw seed 2 in seed 1's colour)."""
    seeds = sorted({seed for by_seed in series.values() for seed in by_seed})
    return dict(zip(seeds, distinct_colours(len(seeds)), strict=True))


def curve_panels(series: dict[str, dict[int, tuple[list[float], list[float]]]],
                 path: str | os.PathLike, baseline: str | None = None,
                 xlabel: str = "training steps") -> None:
    """Validation BLEU, one panel per variant (variant -> seed -> (x, BLEU)) with a line per
    seed (one colour per seed number in every panel), the baseline's seeds in grey behind every
    other panel: readable where one plot of every run (17 variants x 3 seeds) is not. The y
    axis starts 12 BLEU under the best run's best, where the variants differ, or lower if a
    variant's best is lower."""
    cols = min(5, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows + 0.6), sharex=True,
                             sharey=True, squeeze=False)
    bests = [max((v for v in y if math.isfinite(v)), default=math.nan)
             for seeds in series.values() for _, y in seeds.values()]
    bests = [b for b in bests if math.isfinite(b)]
    colour = seed_colours(series)
    for ax, (variant, seeds) in zip(axes.flat, series.items(), strict=False):
        if baseline in series and variant != baseline:
            for x, y in series[baseline].values():
                ax.plot(x, y, color="0.8", linewidth=1)
        for seed, (x, y) in sorted(seeds.items()):
            ax.plot(x, y, color=colour[seed], linewidth=1.2)
        ax.set_title(variant, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(series):]:
        ax.axis("off")
    if bests:
        top = max(bests)
        axes.flat[0].set_ylim(max(0.0, min(top - 12, min(bests) - 2)), top + 1)
    axes.flat[0].legend([Line2D([], [], color=c) for c in colour.values()],
                        [f"seed {s}" for s in colour], fontsize=6, loc="lower right")
    grey = f"; grey: {baseline}" if baseline in series else ""
    fig.suptitle(f"validation BLEU by variant{grey}", fontsize=9)
    fig.supxlabel(xlabel, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def heatmap_grid(items: list[tuple[str, Tensor, list[str], list[str]]],
                 path: str | os.PathLike, title: str | None = None) -> None:
    """One alignment heatmap per (label, alignment, src pieces, tgt pieces), side by side, with
    one colour bar."""
    cols = min(4, len(items))
    rows = (len(items) + cols - 1) // cols
    S = max(len(it[2]) for it in items)
    T = max(len(it[3]) for it in items)
    size = (cols * max(3.0, 0.28 * S + 1.5), rows * max(2.5, 0.25 * T + 1.5))
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=size, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    top = max([1.0] + [float(it[1].max()) for it in items if it[1].numel()])   # one scale (gmm)
    for ax, (label, a, src, tgt) in zip(axes.flat, items, strict=False):
        ax.axis("on")
        image = ax.imshow(a.float().numpy(), cmap="Greys", vmin=0, vmax=top, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(len(src)))
        ax.set_xticklabels(src, rotation=90, fontsize=6)
        ax.set_yticks(range(len(tgt)))
        ax.set_yticklabels(tgt, fontsize=6)
        ax.set_title(label, fontsize=8)
    fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.03, label="attention weight")
    if title:
        fig.suptitle(title, fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def head_grid(heads: Tensor, src_pieces: list[str], tgt_pieces: list[str],
              path: str | os.PathLike, title: str | None = None) -> None:
    """heads [T, H, S]: one small heatmap per attention head, side by side."""
    a = heads.float().numpy()
    T, H, S = a.shape
    fig, axes = plt.subplots(1, H, figsize=(min(H * max(2.5, 0.22 * S + 1), MAX_INCHES),
                                            min(max(2.5, 0.2 * T + 1.2), MAX_INCHES)),
                             squeeze=False, layout="constrained")
    for h, ax in enumerate(axes[0]):
        image = ax.imshow(a[:, h], cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto",
                          interpolation="nearest")
        ax.set_title(f"head {h + 1}", fontsize=8)
        ax.set_xticks(range(S))
        ax.set_xticklabels(src_pieces[:S], rotation=90, fontsize=6)
        ax.set_yticks(range(T))
        ax.set_yticklabels(tgt_pieces[:T] if h == 0 else [], fontsize=6)
    fig.colorbar(image, ax=axes[0].tolist(), fraction=0.03, label="attention weight")
    if title:
        fig.suptitle(title, fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def length_lines(series: dict[str, dict[str, float]], path: str | os.PathLike,
                 title: str, sentences: dict[str, int] | None = None) -> None:
    """BLEU per source-length bucket, one line per variant (buckets in the order given); with
    `sentences` (bucket -> count), each bucket's count under its label: a bucket of a few
    dozen sentences gives a noisy BLEU."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    buckets = list(dict.fromkeys(b for by_bucket in series.values() for b in by_bucket))
    colours = distinct_colours(len(series))
    for i, (label, by_bucket) in enumerate(series.items()):
        ax.plot([buckets.index(b) for b in by_bucket], list(by_bucket.values()), label=label,
                marker="osD^v<>"[i // 10 % 7], color=colours[i])
    ax.set_xticks(range(len(buckets)), [f"{b}\n({sentences[b]} sent.)" if sentences and
                                        b in sentences else b for b in buckets])
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("BLEU")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2 if len(series) > 10 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
