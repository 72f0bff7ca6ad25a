"""nmt-translate: translate a file or stdin with a checkpoint; BLEU with a reference; heatmaps."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from tqdm import tqdm

from nmt.analysis import buckets_from_bounds
from nmt.api import load
from nmt.cli.common import register_schemas, to_object, user_errors
from nmt.config import TranslateConfig
from nmt.data.corpus import decode_lines, iter_lines, read_lines
from nmt.device import setup_device
from nmt.evaluate import score
from nmt.plots import head_grid, heatmap
from nmt.report import ReportLines, model_label
from nmt.translate import Translation

log = logging.getLogger("nmt")
register_schemas()


def stdin_lines() -> Iterator[str]:
    """Standard input line by line (each as soon as it is complete), decoded as the files are."""
    for number, raw in enumerate(iter(sys.stdin.buffer.readline, b""), start=1):
        yield from decode_lines(raw, "<stdin>", number)


def chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) >= size:
            yield block
            block = []
    if block:
        yield block


class Alignments:
    """Heatmaps of the first `limit` lines and alignments.jsonl of every line, written as the
    translations come (so memory does not grow with the input)."""

    def __init__(self, folder: Path, limit: int, heads: bool):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.limit, self.heads = folder, limit, heads
        self.jsonl = open(folder / "alignments.jsonl", "w", encoding="utf-8")

    def add(self, line: int, r: Translation, title: str) -> None:
        if r.alignment is None:
            self.jsonl.write(json.dumps({"line": line, "src": [], "tgt": [], "alignment": []})
                             + "\n")
            return
        rows = [[round(x, 5) for x in row] for row in r.alignment.tolist()]
        self.jsonl.write(json.dumps({"line": line, "src": r.src_pieces, "tgt": r.tgt_pieces,
                                     "alignment": rows}, ensure_ascii=False) + "\n")
        if line <= self.limit:
            heatmap(r.alignment, r.src_pieces, r.tgt_pieces, self.folder / f"{line}.png",
                    title=title)
            if self.heads and r.heads is not None:
                head_grid(r.heads, r.src_pieces, r.tgt_pieces, self.folder / f"{line}.heads.png",
                          title=f"{title}: each head")

    def close(self) -> None:
        self.jsonl.close()


def check_paths(conf: TranslateConfig) -> None:
    """The files named in the config, checked before the model loads (a mistyped reference
    would otherwise be found after the whole input is translated)."""
    for key in ("input", "reference"):
        path = getattr(conf, key)
        if path and not Path(path).exists():
            raise ValueError(f"{key}={path}: file not found")
        if path and Path(path).is_dir():
            raise ValueError(f"{key}={path}: a folder, not a file")
    maps = Path(conf.heatmap_dir) if conf.heatmaps and conf.heatmap_dir else None
    if maps is not None and maps.exists() and not maps.is_dir():
        raise ValueError(f"heatmap_dir={maps}: a file, not a folder")
    if maps is not None:
        try:
            maps.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"heatmap_dir={maps}: cannot create it ({err.strerror or err})"
                             ) from err
        if not os.access(maps, os.W_OK):
            raise ValueError(f"heatmap_dir={maps}: not writable")
    if not conf.output:
        return
    out = Path(conf.output)
    if out.is_dir():
        raise ValueError(f"output={out}: a folder, not a file")
    if not out.parent.is_dir():
        raise ValueError(f"output={out}: its folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"output={out}: its folder {out.parent} is not writable")
    for key in ("input", "reference"):
        path = getattr(conf, key)
        if path and out.exists() and os.path.samefile(out, path):
            raise ValueError(f"output={out} is the {key} file: it would be written over")
        part = partial(conf.output)   # written first, then renamed to the output
        if path and part.exists() and os.path.samefile(part, path):
            raise ValueError(f"output={out}: {part}, written first, is the {key} file: it "
                             "would be written over")


def count_lines(path: str) -> int | None:
    """Lines of a regular file (None for a pipe or device, which can be read only once)."""
    if not Path(path).is_file():
        return None
    return sum(1 for _ in iter_lines(path))


def check_reference(conf: TranslateConfig) -> None:
    """A reference whose line count differs from the input's, found before translating."""
    if not (conf.input and conf.reference):
        return
    n_in, n_ref = count_lines(conf.input), count_lines(conf.reference)
    if n_in is not None and n_ref is not None and n_in != n_ref:
        raise ValueError(f"{conf.reference} has {n_ref} lines but the input {conf.input} has "
                         f"{n_in}")


def partial(path: str) -> Path:
    """Where the output grows until the last line is written (then renamed to `path`), so that
    a file under the asked name is always complete. A device or pipe (/dev/stdout, a FIFO) is
    written as it is."""
    p = Path(path)
    return p if p.exists() and not p.is_file() else Path(f"{path}.part")


@user_errors
def translate_main(cfg: DictConfig) -> None:
    conf = to_object(cfg, TranslateConfig)
    check_paths(conf)
    check_reference(conf)
    device = setup_device(conf.device, conf.threads)
    translator = load(conf.checkpoint, device, conf.precision)
    if conf.heatmap_heads and not (conf.heatmaps and all(
            c["attention"]["name"] == "multihead" for c in translator.configs)):
        log.warning("heatmap_heads=true draws the heads of attention=multihead (every model of "
                    "an ensemble) with heatmaps=true; nothing to draw here")
    interactive = not conf.input and sys.stdin.isatty()
    lines = iter_lines(conf.input) if conf.input else stdin_lines()
    hyps: list[str] | None = [] if conf.reference else None   # kept only to score them
    maps = None
    if conf.heatmaps:
        folder = Path(conf.heatmap_dir or Path(HydraConfig.get().runtime.output_dir) / "heatmaps")
        maps = Alignments(folder, conf.max_heatmaps, conf.heatmap_heads)
    kept = (ReportLines(conf.report_sentences) if maps is not None and conf.report_sentences > 0
            else None)
    beam = conf.search.beam_size > 1 or conf.search.nbest > 1
    out = open(partial(conf.output), "w", encoding="utf-8") if conf.output else sys.stdout
    bar = tqdm(unit="sent", disable=not conf.output or not sys.stderr.isatty(), leave=False)
    n, done, interrupted = 0, False, False
    try:
        for block in chunks(lines, 1 if interactive else conf.chunk_lines):
            results = translator.translate_with(block, conf.search, alignments=conf.heatmaps,
                                                first_line=n + 1, source=conf.input or "<stdin>")
            for line, r in enumerate(results, start=n + 1):
                if conf.search.nbest > 1:
                    out.write("\t".join(f"{s:.4f} {t}" for t, s in r.nbest) + "\n")
                else:
                    out.write(r.text + "\n")
                if hyps is not None:
                    hyps.append(r.text)
                if maps is not None:
                    title = f"line {line}" + (f", score {r.score:.3f}" if beam else "")
                    maps.add(line, r, title)
                if kept is not None:
                    kept.add(block[line - n - 1], r)
            out.flush()
            n += len(block)
            bar.update(len(block))
        done = True
    except KeyboardInterrupt:   # Ctrl-C: what was translated is kept, without a traceback
        interrupted = True
    except BrokenPipeError:
        if conf.output:
            raise
        # stdout closed early (`| head`): not an error of ours; quiet, as other tools are
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    finally:
        bar.close()
        if conf.output:
            out.close()
            if partial(conf.output) == Path(conf.output):
                pass   # a device or pipe: written in place
            elif done:
                os.replace(partial(conf.output), conf.output)
            else:   # counted in the file: a stop can come between writing a line and counting
                n = count_lines(str(partial(conf.output))) or 0
                print(f"the {n} lines translated before it stopped are in "
                      f"{partial(conf.output)}; {conf.output} was not written", file=sys.stderr)
        if maps is not None:
            maps.close()
    if interrupted:
        print(f"interrupted after {n} lines", file=sys.stderr)
        sys.exit(130)
    if maps is not None:
        print(f"heatmaps: {maps.folder}", file=sys.stderr)
    refs = None
    if hyps is not None:
        refs = read_lines(conf.reference)
        if len(refs) != n:
            raise ValueError(f"{conf.reference} has {len(refs)} lines but the input has {n}")
        print(score(hyps, refs).line() if n else "no lines: nothing to score", file=sys.stderr)
    if kept is not None:
        size = kept.write(maps.folder / "report.html", model_label(translator.configs),
                          refs, subtitle=f"{conf.input or 'stdin'}: the first "
                          f"{len(kept.sources)} lines, beam {conf.search.beam_size}, length "
                          f"penalty {conf.search.alpha}, {', '.join(translator.paths)}",
                          buckets=buckets_from_bounds(conf.length_buckets))
        print(f"report: {maps.folder / 'report.html'} ({size / 1e6:.1f} MB)", file=sys.stderr)


@hydra.main(version_base="1.3", config_path="pkg://nmt.configs", config_name="translate")
def main(cfg: DictConfig) -> None:
    translate_main(cfg)


if __name__ == "__main__":
    main()
