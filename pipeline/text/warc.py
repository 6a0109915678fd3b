"""WARC reading and writing shared by fetch (writer), extract (reader) and the replay server (reader)."""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.limitreader import LimitReader
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.core.errors import PipelineError

HOP_BY_HOP = {"transfer-encoding", "connection", "keep-alive", "content-length"}

# warcio does not check a gzip member's CRC-32: on a zlib error it writes the message to stderr and reads on as if
# the member had ended, so a flipped bit or a cut came out as a shorter or different page (found by fuzzing).
# The members are decompressed here instead, where zlib checks each one's CRC-32 and length.
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Response:
    url: str
    status: int
    headers: list[tuple[str, str]]
    body: bytes  # decoded payload (no chunking, no content-encoding)


def read_response_at(path: str | Path, offset: int) -> Response:
    """The response record that starts at `offset` (each record is its own gzip member, so we can seek)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            gzipped = f.read(2) == GZIP_MAGIC
            f.seek(offset)
            if gzipped:  # only this member is read and checked: damage elsewhere in the file does not matter
                _, content = next(_gzip_members(f))
                record = next(iter(ArchiveIterator(io.BytesIO(content))))
            else:
                record = next(iter(ArchiveIterator(f)))
            if record.rec_type != "response":  # an offset off a record's start can parse as some other record
                raise ValueError(f"a {record.rec_type!r} record, not a response")
            return _response(record)
    except Exception as e:  # warcio meets damaged bytes with many exception types (see iter_responses)
        raise PipelineError(
            f"{path}: no readable WARC record at offset {offset} ({type(e).__name__}: {e}); rerun fetch"
        ) from None


def _response(record) -> Response:
    http = record.http_headers
    status = int(http.get_statuscode()) if http else 200
    headers = list(http.headers) if http else []
    body = record.content_stream().read()
    _check_complete(record)
    return Response(record.rec_headers.get_header("WARC-Target-URI"), status, headers, body)


def _check_complete(record) -> None:
    """warcio hands out a record cut short by the end of the file as if it were whole, and reads a missing or
    unreadable Content-Length (a cut inside the header block) as "the rest" or 0: refuse both (found by fuzzing).
    This also refuses ARC, the format before WARC, which the pipeline never writes: damaged bytes parse as an ARC
    record all too easily."""
    declared = record.rec_headers.get_header("Content-Length") or ""
    raw = record.raw_stream
    if not (declared.isascii() and declared.isdigit() and isinstance(raw, LimitReader)):
        raise ValueError(f"WARC record without a valid Content-Length ({declared[:20]!r})")
    raw.read()  # what a content decoder left unread
    if raw.limit > 0:
        raise ValueError(f"WARC record cut short: {raw.limit} of its {declared} bytes are missing")


def _gzip_members(f: io.BufferedIOBase) -> Iterator[tuple[int, bytes]]:
    """(offset, decompressed bytes) of each gzip member from the file's position on; ValueError on damage."""
    offset = f.tell()
    data = f.read(1 << 16)
    while data:
        z = zlib.decompressobj(wbits=31)  # gzip framing: the header, then CRC-32 and length checked at the end
        parts, fed = [], 0
        while True:
            try:
                parts.append(z.decompress(data))
            except zlib.error as e:
                raise ValueError(f"damaged gzip member at offset {offset}: {e}") from None
            fed += len(data)
            if z.eof:
                break
            data = f.read(1 << 16)
            if not data:
                raise ValueError(f"gzip member at offset {offset} cut short by the end of the file")
        yield offset, b"".join(parts)
        offset += fed - len(z.unused_data)
        data = z.unused_data or f.read(1 << 16)


def _responses(records: ArchiveIterator, size: int) -> Iterator[Response]:
    for record in records:
        if record.rec_type == "response":
            yield _response(record)
        else:
            _check_complete(record)
    # warcio also ends quietly where a record is cut inside its header blocks (an EOFError inside), and skips
    # with a warning what follows a record that is longer than its Content-Length says: neither is a whole file.
    if records.offset != size or records.err_count:
        raise ValueError(f"bytes {records.offset}..{size} hold no complete WARC record")


def _unchecked_responses(path: str | Path) -> Iterator[Response]:
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if len(head) == 1:  # warcio takes a lone byte for the start of a gzip stream and reads nothing from it
            raise ValueError("a 1-byte file holds no WARC record")
        if head != GZIP_MAGIC:  # uncompressed: a cut is caught (Content-Length), a changed byte is not
            yield from _responses(ArchiveIterator(f), os.fstat(f.fileno()).st_size)
            return
        for offset, content in _gzip_members(f):
            try:
                responses = list(_responses(ArchiveIterator(io.BytesIO(content)), len(content)))
            except Exception as e:
                raise ValueError(f"gzip member at offset {offset}: {type(e).__name__}: {e}") from None
            yield from responses


def iter_responses(path: str | Path) -> Iterator[Response]:
    """The response records in file order. Damage raises PipelineError once reached, after the intact records
    before it. In a gzip WARC that is any change to a member's content (CRC-32) or framing, and a cut inside a
    member; in an uncompressed WARC only a cut inside a record (a changed byte there cannot be told from data). A cut
    between members or records is indistinguishable from a shorter file."""
    responses = _unchecked_responses(path)
    while True:
        try:
            response = next(responses)
        except StopIteration:
            return
        # warcio meets damaged bytes with many exception types: ArchiveLoadFailed, StatusAndHeadersParserException,
        # AttributeError (a response without WARC-Target-URI), ValueError (a bad status code); all found by fuzzing.
        except Exception as e:
            raise PipelineError(f"{path}: damaged WARC file ({type(e).__name__}: {e}); rerun fetch") from None
        yield response


def write_pages_warc(pages: Iterable[tuple[str, bytes]], path: str | Path) -> int:
    """Pages (url, HTML bytes) as 200 text/html responses in one WARC file: a web the replay server can serve."""
    from pipeline.core.dataset import atomic_path

    n = 0
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        writer = WarcShardWriter(f)
        for url, body in pages:
            headers = [("Content-Type", "text/html; charset=utf-8")]
            writer.write_pair(url, [("User-Agent", "owt-pipeline")], "200 OK", headers, body, False)
            n += 1
    return n


# warcio compresses at zlib level 9: on real pages 6.6 ms a page against 4.5 at level 6 and 1.6 at level 1, for
# files 1% and 19% smaller; compression is the largest CPU cost of fetching (BENCHMARKS.md), so the level is
# fetch's choice (`warc_gzip_level`). Each record is still its own gzip member.
GZIP_LEVEL = 6


class _GzipMembers:
    """Where warcio writes one uncompressed record at a time; each goes out as its own gzip member."""

    def __init__(self, out: io.BufferedIOBase, level: int):
        self.out, self.level = out, level
        self.buf = io.BytesIO()

    def write(self, data: bytes) -> int:
        return self.buf.write(data)

    def flush(self) -> None:
        record = self.buf.getvalue()
        if record:
            self.out.write(gzip.compress(record, compresslevel=self.level, mtime=0))
            self.buf = io.BytesIO()


class WarcShardWriter:
    """Appends request/response pairs to one gzip WARC file and reports where each response landed."""

    def __init__(self, fileobj: io.BufferedIOBase, gzip_level: int = GZIP_LEVEL):
        self.f = fileobj
        self.members = _GzipMembers(fileobj, gzip_level)
        self.writer = WARCWriter(self.members, gzip=False, warc_version="1.1")

    def write_pair(
        self,
        url: str,
        request_headers: list[tuple[str, str]],
        status_line: str,
        response_headers: list[tuple[str, str]],
        payload: bytes,
        truncated: bool,
    ) -> tuple[int, int]:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        req = self.writer.create_warc_record(
            url,
            "request",
            http_headers=StatusAndHeaders(f"GET {path} HTTP/1.1", request_headers, is_http_request=True),
        )
        # The payload is stored decoded: without transfer chunking and without content encoding (urllib3 undoes
        # both). The headers that would claim them are renamed, as Common Crawl does, so readers don't undo them.
        renamed = ("transfer-encoding", "content-encoding")
        headers = [(f"X-Crawler-{k}" if k.lower() in renamed else k, v) for k, v in response_headers]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(payload))))
        warc_headers = {"WARC-Truncated": "length"} if truncated else None
        resp = self.writer.create_warc_record(
            url,
            "response",
            payload=io.BytesIO(payload),
            length=len(payload),
            http_headers=StatusAndHeaders(status_line, headers, protocol="HTTP/1.1"),
            warc_headers_dict=warc_headers,
        )
        self.writer.write_record(req)
        self.members.flush()
        offset = self.f.tell()
        self.writer.write_record(resp)
        self.members.flush()
        return offset, self.f.tell() - offset
