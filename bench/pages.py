"""Real web pages as a finished `fetch` output, for benchmarks and cluster tests that start at extract.

html-benchmark pages under their real URLs, Python 3.11 docs and the English Debian handbook from
../shared/data/web-corpus, written as fetch writes them: per shard a WARC file and an index parquet, then _stage.json.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from e2e import handbook_pages, python_doc_pages
from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

from pipeline.core.dataset import file_entry, shard_name, write_json, write_parquet
from pipeline.stages.harvest import links_table
from pipeline.text.warc import write_pages_warc
from pipeline.web.replay import html_benchmark_pages


def web_corpus_pages(python_pages: int, shared: Path = SHARED) -> list[tuple[str, bytes]]:
    english = [(url, html) for _, url, html in handbook_pages(shared, ("en-US",))]
    return python_doc_pages(shared, python_pages) + english


def real_pages(python_pages: int = 200, shared: Path = SHARED) -> list[tuple[str, bytes]]:
    return list(html_benchmark_pages(shared / "html-benchmark")) + web_corpus_pages(python_pages, shared)


def fetched_shard(pages: list[tuple[str, bytes]], out: Path, index: int) -> Path:
    """One shard as fetch writes it: `warc/<shard>.00000.warc.gz` and `<shard>.parquet` (links + fetch columns)."""
    from warcio.archiveiterator import ArchiveIterator

    warc = out / "warc" / f"{shard_name(index)}.00000.warc.gz"
    write_pages_warc(pages, warc)
    offsets = {}
    with open(warc, "rb") as f:
        it = ArchiveIterator(f)
        for record in it:
            if record.rec_type == "response":
                offsets[record.rec_headers.get_header("WARC-Target-URI")] = it.get_record_offset()
    links = links_table(
        {u: {"host": "", "max": 3, "sum": 3, "n": 1, "created": 0, "ids": set(), "subs": set()} for u, _ in pages}
    )
    urls = links.column("url").to_pylist()
    extra = {
        "final_url": pa.array(urls),
        "error": pa.array([None] * len(urls), pa.string()),
        "warc_file": pa.array([f"warc/{warc.name}"] * len(urls)),
        "warc_offset": pa.array([offsets[u] for u in urls], pa.int64()),
    }
    for name, col in extra.items():
        links = links.append_column(name, col)
    path = out / f"{shard_name(index)}.parquet"
    write_parquet(links, path)
    return path


def fetched_dataset(pages: list[tuple[str, bytes]], out: Path, shards: int = 1) -> Path:
    """A finished fetch output of `shards` shards (pages dealt round-robin), with its _stage.json."""
    entries = []
    for i in range(shards):
        part = pages[i::shards]
        path = fetched_shard(part, out, i)
        warc = out / "warc" / f"{shard_name(i)}.00000.warc.gz"
        entries.append(
            {"name": shard_name(i), "files": [file_entry(path, out), file_entry(warc, out)], "rows_out": len(part)}
        )
    fingerprint = "-".join(e["files"][0]["sha256"][:8] for e in entries)
    manifest = {"stage": "fetch", "output_fingerprint": fingerprint, "inputs": {}, "shards": entries, "config": {}}
    manifest |= {
        "code_version": "bench",
        "rows_in": len(pages),
        "rows_out": len(pages),
        "drops": {},
        "wall_time_s": 0.0,
    }
    write_json(out / "_stage.json", manifest)
    return out
