"""Alignments of a run's test translations in one small JSON file (`<run>/test/alignments.json`).

Training decodes its test sets once, with best.pt; keeping the alignments of the first sentences
of the first set lets nmt-compare draw alignment grids and report.html for a run kept without
its weights (checkpoints are 20-400 MB, this file about 0.15-0.2 KB a sentence). The weights are
stored as 8-bit values (w * 255, the resolution of the report), all matrices in one zlib stream,
the sentences (text, score, pieces) as zlib-compressed JSON.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nmt.translate import Translation

VERSION = 2   # 1: the same with the sentences as plain JSON


def quantize(alignment: object) -> np.ndarray:
    """Weights in [0, 1] as bytes 0..255."""
    a = np.asarray(alignment.float().numpy() if hasattr(alignment, "float") else alignment,
                   dtype=np.float32)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


def quantize_scaled(alignment: torch.Tensor) -> tuple[np.ndarray, float | None]:
    """quantize(), and for a matrix whose largest weight passes 1 (gmm: a mixture of
    unnormalised Gaussians) the bytes of it divided by that weight, which is returned to be
    kept beside them (None otherwise)."""
    top = float(alignment.max()) if alignment.numel() else 0.0
    return (quantize(alignment / top), top) if top > 1.0 else (quantize(alignment), None)


def packed(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def unpacked(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text, validate=True))


def write_alignments(path: str | os.PathLike, translations: Sequence[Translation],
                     test_set: str, beam: int, alpha: float) -> int:
    """Write the translations' pieces and alignments (those without one are stored as text only);
    returns the file's size in bytes."""
    matrices = bytearray()
    sentences = []
    for t in translations:
        item: dict = {"text": t.text, "score": t.score}
        if t.alignment is not None:
            m, scale = quantize_scaled(t.alignment)
            item.update(src=t.src_pieces, tgt=t.tgt_pieces,
                        a=[len(matrices), int(m.shape[0]), int(m.shape[1])])
            if scale is not None:
                item["scale"] = scale
            matrices.extend(m.tobytes())
        sentences.append(item)
    text = json.dumps(sentences, ensure_ascii=False).encode("utf-8")
    data = {"version": VERSION, "test_set": test_set, "beam": beam, "alpha": alpha,
            "sentences": packed(text), "weights": packed(bytes(matrices))}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return out.stat().st_size


def read_alignments(path: str | os.PathLike) -> tuple[dict, list[Translation]]:
    """The file's settings (test_set, beam, alpha) and its translations, weights as floats."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if data.get("version") not in (1, VERSION):
            raise ValueError(f"version {data.get('version')}, expected {VERSION}")
        weights = np.frombuffer(unpacked(data["weights"]), np.uint8)
        sentences = data["sentences"]
        if data["version"] > 1:
            sentences = json.loads(unpacked(sentences).decode("utf-8"))
        out = []
        for s in sentences:
            alignment = None
            if "a" in s:
                start, rows, cols = s["a"]
                block = weights[start:start + rows * cols].reshape(rows, cols)
                alignment = torch.from_numpy(block.astype(np.float32) / 255.0
                                             * float(s.get("scale", 1.0)))
            out.append(Translation(s["text"], [(s["text"], s["score"])], s.get("src", []),
                                   s.get("tgt", []), alignment))
    except (ValueError, KeyError, TypeError, zlib.error) as e:
        raise ValueError(f"{p}: not a readable alignments file ({e})") from e
    settings = {k: data[k] for k in ("test_set", "beam", "alpha")}
    return settings, out
