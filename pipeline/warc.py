"""WARC reading and writing shared by fetch (writer), extract (reader) and the replay server (reader)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.errors import PipelineError

HOP_BY_HOP = {"transfer-encoding", "connection", "keep-alive", "content-length"}


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
            record = next(iter(ArchiveIterator(f)))
            return _response(record)
    except (StopIteration, OSError, ValueError) as e:
        raise PipelineError(f"{path}: no readable WARC record at offset {offset} ({e}); rerun fetch") from None


def _response(record) -> Response:
    http = record.http_headers
    status = int(http.get_statuscode()) if http else 200
    headers = list(http.headers) if http else []
    return Response(record.rec_headers.get_header("WARC-Target-URI"), status, headers, record.content_stream().read())


def iter_responses(path: str | Path) -> Iterator[Response]:
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type == "response":
                yield _response(record)


def write_pages_warc(pages: Iterable[tuple[str, bytes]], path: str | Path) -> int:
    """Pages (url, HTML bytes) as 200 text/html responses in one WARC file: a web the replay server can serve."""
    from pipeline.dataset import atomic_path

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
