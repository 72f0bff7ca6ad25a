"""An offline HTML report for browsing test sentences, variants and their alignments side by side.

The report is one self-contained file (report_template.html filled in): the sentences,
translations, sentence BLEU and 8-bit alignment matrices are compressed with zlib, base64-encoded
into the page and inflated by the browser's own DecompressionStream. No network, no external
script, so it opens from disk on a machine without internet.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from sacrebleu.metrics import BLEU

from nmt.alignment_file import packed, quantize_scaled  # the page divides weights by 255
from nmt.analysis import LENGTH_BUCKETS, Buckets, bleu_by_length, bucket_label, bucket_of
from nmt.compare import Run, table_cells, test_files
from nmt.config import SearchOptions
from nmt.data.corpus import read_lines
from nmt.translate import Translation

SENTENCE_BLEU = BLEU(effective_order=True)   # as sacrebleu.sentence_bleu


def sentence_bleu(hyp: str, ref: str) -> float:
    """sacreBLEU's sentence BLEU, to one decimal."""
    return round(SENTENCE_BLEU.sentence_score(hyp, [ref]).score, 1)


def text_only(texts: Sequence[str]) -> list[Translation]:
    """Translations without pieces or alignments (a run kept without its weights)."""
    return [Translation(t, [(t, 0.0)], [], [], None) for t in texts]


def sentence_entries(sources: Sequence[str], references: Sequence[str] | None,
                     outputs: dict[str, Sequence[Translation]], matrices: bytearray,
                     buckets: Buckets = LENGTH_BUCKETS) -> list[dict]:
    """One dict per sentence; the alignments go into `matrices`, the dicts hold their offsets.
    Source pieces are stored once per sentence and again only for a variant whose pieces differ."""
    entries = []
    for i, src in enumerate(sources):
        first = next((o[i].src_pieces for o in outputs.values() if o[i].alignment is not None),
                     [])
        entry: dict = {"src": src, "words": len(src.split()),
                       "bucket": bucket_of(len(src.split()), buckets), "s": first, "out": []}
        if references is not None:
            entry["ref"] = references[i]
        for out in outputs.values():
            r = out[i]
            item: dict = {"hyp": r.text}
            if references is not None:
                item["bleu"] = sentence_bleu(r.text, references[i])
            if r.alignment is not None:
                m, scale = quantize_scaled(r.alignment)   # "k": gmm's largest weight over 1
                item["a"] = [len(matrices), int(m.shape[0]), int(m.shape[1])]
                if scale is not None:
                    item["k"] = scale
                item["t"] = r.tgt_pieces
                if r.src_pieces != first:
                    item["s"] = r.src_pieces
                matrices.extend(m.tobytes())
            entry["out"].append(item)
        entries.append(entry)
    return entries


def write_report(path: str | os.PathLike, sources: Sequence[str],
                 outputs: dict[str, Sequence[Translation]],
                 references: Sequence[str] | None = None, title: str = "Alignments",
                 subtitle: str = "", table: list[list[str]] | None = None,
                 by_length: dict[str, dict[str, float]] | None = None,
                 by_length_title: str = "", limit: int = 0,
                 buckets: Buckets = LENGTH_BUCKETS) -> int:
    """Write the report for the first `limit` sentences (0: all) and return its size in bytes.

    outputs: variant label -> one Translation per source sentence (with alignments where there
    are any). table: a header row and one row per variant, shown at the top. by_length: variant
    -> {length bucket: BLEU}; with references but no by_length, it is computed over the listed
    sentences.
    """
    n = min(len(sources), limit) if limit else len(sources)
    for label, out in outputs.items():
        if len(out) < n:
            raise ValueError(f"{label}: {len(out)} translations for {n} sentences")
    sources = list(sources[:n])
    refs = list(references[:n]) if references is not None else None
    outputs = {label: list(out[:n]) for label, out in outputs.items()}
    if by_length is None and refs:
        by_length = {label: {b: v["bleu"] for b, v in
                             bleu_by_length(sources, [r.text for r in out], refs,
                                            buckets).items()}
                     for label, out in outputs.items()}
        by_length_title = f"BLEU by source length (words), over the {n} sentences listed"
    matrices = bytearray()
    meta = {"title": title, "subtitle": subtitle, "variants": list(outputs),
            "buckets": [bucket_label(*b) for b in buckets], "table": table,
            "by_length": by_length, "by_length_title": by_length_title or
            "BLEU by source length (words)",
            "sentences": sentence_entries(sources, refs, outputs, matrices, buckets)}
    page = template().replace("@@META@@", packed(json.dumps(meta, ensure_ascii=False).encode()))
    page = page.replace("@@ALIGN@@", packed(bytes(matrices)))
    out_path = Path(path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path.stat().st_size


def template() -> str:
    return resources.files("nmt").joinpath("report_template.html").read_text(encoding="utf-8")


def read_report(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The data inside a report: its metadata and the alignment bytes (for checks and tools)."""
    page = Path(path).read_text(encoding="utf-8")

    def block(name: str) -> bytes:
        start = page.index(f'<script id="{name}" type="application/octet-stream">')
        start = page.index(">", start) + 1
        return zlib.decompress(base64.b64decode(page[start:page.index("</script>", start)]))

    return json.loads(block("meta")), block("align")


def compare_report(runs: list[Run], rows: list[dict], test_sets: list[str], baseline: str,
                   search: SearchOptions, path: str | os.PathLike, limit: int,
                   buckets: Buckets = LENGTH_BUCKETS) -> int:
    """The report of nmt-compare on test_sets[0]: one seed per variant (the one with alignments
    for the most sentences; text only beyond them), the results table and the
    BLEU-by-length lines of the whole test set. Returns its size in bytes."""
    name = test_sets[0]
    finished = [r for r in runs if r.status == "finished"]
    src_file, ref_file = test_files(finished[0].config, name)
    sources, refs = read_lines(src_file), read_lines(ref_file)
    n = min(limit, len(sources)) if limit else len(sources)
    outputs: dict[str, list[Translation]] = {}
    for label in dict.fromkeys(r.label for r in finished):
        group = [r for r in finished if r.label == label]
        r = max(group, key=lambda r: min(len(r.aligned), n))   # the first with the most maps
        head = r.aligned[:n]   # sentences beyond those with alignments: text only
        outputs[label] = head + text_only(r.hyps[name][len(head):n])
    key = f"{name}.bleu_by_length"
    by_length = {r["variant"]: r[key] for r in rows if key in r}
    subtitle = (f"{name}: the first {n} of {len(sources)} sentences, beam {search.beam_size}, "
                f"length penalty {search.alpha}; one seed per variant; sentence BLEU is "
                f"sacreBLEU's; p-values against {baseline}")
    return write_report(path, sources[:n], outputs, refs[:n], title=f"nmt-compare: {name}",
                        subtitle=subtitle, table=table_cells(rows, test_sets, baseline),
                        by_length=by_length, by_length_title=f"{name}: BLEU by source length "
                        "(words), whole test set, mean over seeds", buckets=buckets)


def model_label(configs: list[dict]) -> str:
    """A variant name as nmt-compare gives it (attention, and the decoder unless Luong's)."""
    names = []
    for cfg in configs:
        name = str(cfg.get("attention", {}).get("name", "model"))
        decoder = cfg.get("decoder", {}).get("name", "luong")
        names.append(name if decoder == "luong" else f"{name}/{decoder}-dec")
    return names[0] if len(names) == 1 else "ensemble of " + " + ".join(names)


class ReportLines:
    """The first `limit` translated lines and their sources, kept for a report written at the
    end of a translation (memory bounded by `limit`, whatever the input size)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.sources: list[str] = []
        self.results: list[Translation] = []

    def add(self, source: str, result: Translation) -> None:
        if len(self.sources) < self.limit:
            self.sources.append(source)
            self.results.append(result)

    def write(self, path: str | os.PathLike, label: str, references: list[str] | None = None,
              subtitle: str = "", buckets: Buckets = LENGTH_BUCKETS) -> int:
        """The report of the kept lines, with sentence BLEU when the reference lines are given
        (as many as the input's, already read: a piped reference cannot be read twice).
        Returns its size in bytes."""
        if isinstance(references, str):   # a file name, as this took before
            raise TypeError("references: the reference lines, not a file name")
        refs = references[:len(self.sources)] if references is not None else None
        return write_report(path, self.sources, {label: self.results}, refs,
                            title=f"nmt-translate: {label}", subtitle=subtitle, buckets=buckets)
