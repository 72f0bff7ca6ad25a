"""Reading parallel text: line counting, validation errors that name file and line."""

import gzip

import pytest

from nmt.data.corpus import CorpusError, read_lines, read_parallel
from tests.conftest import write


def test_plain_and_gzip_read_the_same(tmp_path):
    text = "a b\nc d\n\ne f\n"
    plain = write(tmp_path / "x.txt", text)
    gz = write(tmp_path / "x.txt.gz", gzip.compress(text.encode()))
    assert read_lines(plain) == read_lines(gz) == ["a b", "c d", "", "e f"]


def test_crlf_and_missing_final_newline(tmp_path):
    path = write(tmp_path / "w.txt", b"one\r\ntwo\r\nthree")
    assert read_lines(path) == ["one", "two", "three"]


def test_unicode_line_separators_do_not_split_lines(tmp_path):
    path = write(tmp_path / "u.txt", "a\u2028b\x85c\nd\n")
    assert read_lines(path) == ["a\u2028b\x85c", "d"]


def test_different_line_counts_name_both_files(tmp_path):
    src = write(tmp_path / "s.en", "a\nb\nc\n")
    tgt = write(tmp_path / "t.de", "a\nb\n")
    with pytest.raises(CorpusError) as err:
        read_parallel(src, tgt)
    msg = str(err.value)
    assert "s.en" in msg and "t.de" in msg and "3" in msg and "2" in msg


def test_invalid_utf8_reports_file_and_line(tmp_path):
    path = write(tmp_path / "bad.en", b"fine\nalso fine\nbro\xffken\n")
    with pytest.raises(CorpusError, match=r"bad\.en:3: invalid UTF-8"):
        read_lines(path)


def test_binary_file_is_refused(tmp_path):
    path = write(tmp_path / "bin.en", bytes(range(256)) * 4)
    with pytest.raises(CorpusError, match="binary"):
        read_lines(path)


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_sentence(tmp_path):
    text = b"Ein Hund.\nZwei Katzen.\n"
    path = write(tmp_path / "bom.de", b"\xef\xbb\xbf" + text)
    gz = write(tmp_path / "bom.de.gz", gzip.compress(b"\xef\xbb\xbf" + text))
    assert read_lines(path) == read_lines(gz) == ["Ein Hund.", "Zwei Katzen."]
    inner = write(tmp_path / "inner.de", b"a\n\xef\xbb\xbfb\n")   # only the file's start
    assert read_lines(inner) == ["a", "\ufeffb"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_utf16_text_is_named(tmp_path, encoding):
    path = write(tmp_path / "u16.en", "A dog.\nTwo cats.\n".encode(encoding))
    with pytest.raises(CorpusError, match=r"u16\.en.*UTF-16.*iconv"):
        read_lines(path)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        read_lines(tmp_path / "nope.en")
    a = write(tmp_path / "a.en", b"")
    b = write(tmp_path / "b.de", b"")
    with pytest.raises(CorpusError, match="empty"):
        read_parallel(a, b)


def test_download_verifies_checksums(multi30k, tmp_path, monkeypatch):
    from nmt.data import corpus

    monkeypatch.setattr(corpus, "MULTI30K_URL", multi30k.as_uri() + "/{name}")
    corpus.download_multi30k(tmp_path / "m", ["val.en.gz", "val.de.gz"])
    assert read_lines(tmp_path / "m" / "val.en.gz") == read_lines(multi30k / "val.en.gz")

    tampered = tmp_path / "mirror"
    tampered.mkdir()
    (tampered / "val.en.gz").write_bytes(gzip.compress(b"not the real file\n"))
    monkeypatch.setattr(corpus, "MULTI30K_URL", tampered.as_uri() + "/{name}")
    with pytest.raises(CorpusError, match="checksum mismatch"):
        corpus.download_multi30k(tmp_path / "m2", ["val.en.gz"])
    assert not (tmp_path / "m2" / "val.en.gz").exists()
