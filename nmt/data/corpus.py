"""Reading line-aligned parallel text (plain or .gz) with validation; Multi30k download."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import socket
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{name}"
# Checksums of the public multi30k/dataset files (data/task1/raw).
MULTI30K_SHA256 = {
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2017_flickr.de.gz": "a2c89666db00c495cd8513b9d708d5a3acc205d7de312ef2bf5fb7ebc1540aee",
    "test_2017_flickr.en.gz": "76a444ee25172e72695cddb13ae4a3bda59430617be88e0bb46b60504f054074",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
}


def temp_path(path: Path) -> Path:
    """A name beside `path` for writing it whole before a rename; unique per process and host
    (builders on the nodes of a shared file system can have the same process id)."""
    return path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


class CorpusError(ValueError):
    """Bad input data; the message names the file (and line) and what to do."""


def read_lines(path: str | os.PathLike) -> list[str]:
    """Read a UTF-8 text file (optionally .gz), one sentence per line.

    Only "\\n" separates lines (str.splitlines would also split on U+2028 and friends and
    change the line count); a trailing "\\r" is removed, and a last line without a newline is kept.
    """
    return list(iter_lines(path))


def iter_lines(path: str | os.PathLike, block_size: int = 1 << 24) -> Iterator[str]:
    """`read_lines` as a stream: decodes `block_size` bytes at a time, so a corpus of any size
    is read in bounded memory. Errors name the file and line."""
    path = Path(path)
    if not path.exists():
        raise CorpusError(f"{path}: file not found")
    if path.is_dir():
        raise CorpusError(f"{path}: a folder, not a file")
    name = str(path)
    try:
        # Opened once and peeked at, not reopened: a pipe (/dev/stdin, <(zcat ...)) is read once.
        with open(path, "rb") as raw, (gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] ==
                                        b"\x1f\x8b" else raw) as f:
            line, rest = 1, b""
            while block := f.read(block_size):
                block = rest + block
                cut = block.rfind(b"\n") + 1   # whole lines only; the rest waits for more bytes
                rest = block[cut:]
                if cut:
                    yield from decode_lines(block[:cut], name, line)
                    line += block.count(b"\n", 0, cut)
            if rest:
                yield from decode_lines(rest, name, line)
    except (OSError, EOFError, zlib.error) as err:
        raise CorpusError(f"{path}: cannot read ({err})") from err


def decode_lines(raw: bytes, name: str, first_line: int = 1) -> list[str]:
    """Split bytes into lines and decode each as strict UTF-8; errors name `name`:line
    (`first_line` is the number of the first line in `raw`). A UTF-8 byte-order mark at the
    start of a file is dropped (editors on Windows write one; it would become part of the first
    sentence); UTF-16 text is refused by name."""
    if first_line == 1:
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise CorpusError(f"{name}: UTF-16 text (byte-order mark); convert it to UTF-8, "
                              "e.g. iconv -f UTF-16 -t UTF-8")
    if b"\x00" in raw:
        line = raw[: raw.index(b"\x00")].count(b"\n") + first_line
        raise CorpusError(f"{name}:{line}: NUL byte found; this looks like a binary file, "
                          "not one sentence per line of UTF-8 text (UTF-16 text has NUL bytes too: "
                          "convert it with iconv -f UTF-16 -t UTF-8)")
    try:
        # "\n" cannot occur inside a multi-byte UTF-8 sequence, so decoding the whole block
        # and splitting it gives the same lines as splitting first; only an error needs the
        # slow path to find its line.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        parts = text.split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        if "\r" in text:
            parts = [p[:-1] if p.endswith("\r") else p for p in parts]
        return parts
    for number, part in enumerate(raw.split(b"\n"), start=first_line):
        try:
            part.decode("utf-8")
        except UnicodeDecodeError as err:
            raise CorpusError(f"{name}:{number}: invalid UTF-8 at byte {err.start} "
                              "(convert the file to UTF-8)") from err
    raise AssertionError("unreachable: the block failed to decode but every line decodes")


def read_parallel(src_path: str | os.PathLike, tgt_path: str | os.PathLike,
                  allow_empty: bool = False) -> tuple[list[str], list[str]]:
    """Read two line-aligned files; their line counts must match."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise _count_error(src_path, len(src), tgt_path, len(tgt))
    if not src and not allow_empty:
        raise CorpusError(f"{src_path} and {tgt_path} are empty")
    return src, tgt


def iter_parallel(src_path: str | os.PathLike, tgt_path: str | os.PathLike
                  ) -> Iterator[tuple[str, str]]:
    """`read_parallel` as a stream of pairs; a line-count mismatch or empty files raise when
    the stream reaches the end."""
    src, tgt = iter_lines(src_path), iter_lines(tgt_path)
    n = 0
    while True:
        s, t = next(src, None), next(tgt, None)
        if s is None or t is None:
            break
        n += 1
        yield s, t
    # One file ended; count what is left of the other (including the line just read).
    n_src = n + (s is not None) + sum(1 for _ in src)
    n_tgt = n + (t is not None) + sum(1 for _ in tgt)
    if n_src != n_tgt:
        raise _count_error(src_path, n_src, tgt_path, n_tgt)
    if not n:
        raise CorpusError(f"{src_path} and {tgt_path} are empty")


def _count_error(src_path, n_src: int, tgt_path, n_tgt: int) -> CorpusError:
    return CorpusError(f"line counts differ: {src_path} has {n_src} lines, "
                       f"{tgt_path} has {n_tgt}; the files must be line-aligned")


def find_file(root: str | os.PathLike, split: str, lang: str) -> Path:
    """`root/split.lang` or `root/split.lang.gz`, whichever exists."""
    for name in (f"{split}.{lang}", f"{split}.{lang}.gz"):
        if (Path(root) / name).is_file():
            return Path(root) / name
    raise CorpusError(f"{Path(root) / (split + '.' + lang)}[.gz]: file not found "
                      "(set data.root or NMT_DATA to the corpus folder, or data.download=true)")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_multi30k(root: str | os.PathLike, names: list[str] | None = None) -> None:
    """Fetch Multi30k task 1 raw files into `root`, verifying their SHA-256 checksums."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in names or sorted(MULTI30K_SHA256):
        target = root / name
        if target.is_file() and sha256(target) == MULTI30K_SHA256[name]:
            continue
        url = MULTI30K_URL.format(name=name)
        log.info("downloading %s", url)
        tmp = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as f:
                f.write(response.read())
        except OSError as err:   # URLError, timeouts, a refused connection
            tmp.unlink(missing_ok=True)
            raise CorpusError(f"{url}: download failed ({err}); put the corpus files in "
                              f"{root} yourself, or point data.root (or NMT_DATA) at them "
                              "with data.download=false") from err
        got = sha256(tmp)
        if got != MULTI30K_SHA256[name]:
            tmp.unlink()
            raise CorpusError(f"{url}: checksum mismatch (got {got}, "
                              f"expected {MULTI30K_SHA256[name]})")
        os.replace(tmp, target)
