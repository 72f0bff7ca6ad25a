"""nmt-translate: translate a file or stdin with a checkpoint; BLEU with a reference; heatmaps."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmt.api import load
from nmt.cli.common import register_schemas, to_object, user_errors
from nmt.config import TranslateConfig
from nmt.data.corpus import decode_lines, read_lines
from nmt.evaluate import score
from nmt.plots import head_grid, heatmap, write_alignments_jsonl
from nmt.train import setup_device

log = logging.getLogger("nmt")
register_schemas()


@user_errors
def translate_main(cfg: DictConfig) -> None:
    conf = to_object(cfg, TranslateConfig)
    device = setup_device(conf.device, conf.threads)
    translator = load(conf.checkpoint, device)
    if conf.input:
        lines = read_lines(conf.input)
    else:
        lines = decode_lines(sys.stdin.buffer.read(), "<stdin>")
    refs = read_lines(conf.reference) if conf.reference else None
    if refs is not None and len(refs) != len(lines):
        raise ValueError(f"{conf.reference} has {len(refs)} lines but the input has "
                         f"{len(lines)}")
    results = translator.translate_with(lines, conf.search, alignments=conf.heatmaps,
                                        progress=bool(conf.output))
    out = open(conf.output, "w", encoding="utf-8") if conf.output else sys.stdout
    try:
        for r in results:
            if conf.search.nbest > 1:
                out.write("\t".join(f"{s:.4f} {t}" for t, s in r.nbest) + "\n")
            else:
                out.write(r.text + "\n")
    finally:
        if conf.output:
            out.close()
        else:
            out.flush()
    if refs is not None:
        s = score([r.text for r in results], refs)
        print(s.line(), file=sys.stderr)
    if conf.heatmaps:
        folder = Path(conf.heatmap_dir or Path(HydraConfig.get().runtime.output_dir) / "heatmaps")
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        for i, r in enumerate(results):
            if r.alignment is None:
                records.append({"line": i + 1, "src": [], "tgt": [], "alignment": []})
                continue
            records.append({"line": i + 1, "src": r.src_pieces, "tgt": r.tgt_pieces,
                            "alignment": [[round(x, 5) for x in row]
                                          for row in r.alignment.tolist()]})
            if i < conf.max_heatmaps:
                heatmap(r.alignment, r.src_pieces, r.tgt_pieces, folder / f"{i + 1}.png")
                if conf.heatmap_heads and r.heads is not None:
                    head_grid(r.heads, r.src_pieces, r.tgt_pieces, folder / f"{i + 1}.heads.png",
                              title=f"line {i + 1}: each head")
        write_alignments_jsonl(records, folder / "alignments.jsonl")
        print(f"heatmaps: {folder}", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="pkg://nmt.configs", config_name="translate")
def main(cfg: DictConfig) -> None:
    translate_main(cfg)


if __name__ == "__main__":
    main()
