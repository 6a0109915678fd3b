"""extract: fetched HTML (WARC) -> main text with trafilatura, one row per page fetched OK, with the page's declared
language (`html_lang`). Scores (language, length, quality...) are the annotate stage's, so a new score never
extracts again.

Each document gets a time limit, so one pathological page (multi-MB HTML, deep nesting) cannot stall a worker.
"""

from __future__ import annotations

import re
import signal
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import trafilatura
from pydantic import Field
from trafilatura.settings import use_config

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import read_parquet, write_parquet
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, finish_shard, run_shardwise
from pipeline.text.warc import read_response_at


class ExtractConfig(StageConfig):
    input: str
    output: str
    # trafilatura's options. Balanced by default (its benchmark setting); favor_precision trims more boilerplate and
    # some text, favor_recall keeps more of both. Comments are not the linked page's main text. Metadata (title,
    # date, author) is off: it costs time and OpenWebText kept text only.
    favor_precision: bool = False
    favor_recall: bool = False
    include_comments: bool = False
    include_tables: bool = True
    timeout_s: float = Field(10.0, gt=0)  # per document; a longer one is dropped as extraction_timeout
    min_extracted_chars: int = 1  # below this the page counts as empty_extraction


# The links and fetch columns that travel with each document; the HTML stays in the WARC.
CARRIED = [
    "url_hash",
    "url",
    "final_url",
    "domain",
    "score",
    "n_submissions",
    "first_created_utc",
    "submission_ids",
    "subreddits",
]


_HTML_LANG = re.compile(rb"<html[^>]*?\blang\s*=\s*[\"']?([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]+)*)", re.I)


def declared_language(html: bytes) -> str | None:
    """The page's own claim (`<html lang="pt-BR">` -> "pt"): a hint kept beside fastText's verdict."""
    m = _HTML_LANG.search(html[:8192])
    return m[1].decode("ascii").split("-")[0].split("_")[0].lower() if m else None


class ExtractionTimeout(BaseException):
    # Not an Exception: trafilatura catches Exception around lxml parsing ("lxml parsing failed") and carries on,
    # which would swallow a limit that fires while lxml parses.
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ExtractionTimeout in this thread after `seconds`. SIGALRM only reaches the main thread, which is where
    Ray and the local runner run tasks; elsewhere (a thread pool) documents run without a limit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired = False

    def expire(signum: int, frame: object) -> None:
        nonlocal fired
        fired = True
        raise ExtractionTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    if fired:  # the limit fired but something caught it on the way: still a timeout
        raise ExtractionTimeout()


@dataclass
class Extraction:
    text: str | None
    html_lang: str | None
    timed_out: bool = False


class Extractor:
    """Set up once per task: trafilatura's config parsing is not free, and never per document."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.tconfig = use_config()
        self.tconfig.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # ours (time_limit) covers parsing too

    def __call__(self, html: bytes, url: str | None) -> Extraction:
        lang = declared_language(html)
        try:
            with time_limit(self.cfg.timeout_s):
                text = trafilatura.extract(
                    html,
                    url=url,
                    output_format="txt",
                    favor_precision=self.cfg.favor_precision,
                    favor_recall=self.cfg.favor_recall,
                    include_comments=self.cfg.include_comments,
                    include_tables=self.cfg.include_tables,
                    with_metadata=False,
                    config=self.tconfig,
                )
        except ExtractionTimeout:
            return Extraction(None, lang, timed_out=True)
        return Extraction(text, lang)


def extract_shard(task: ShardTask[ExtractConfig, None]) -> Record:
    cfg: ExtractConfig = task.config
    (index_path,) = task.inputs
    src_dir = Path(index_path).parent
    index = read_parquet(index_path)
    extractor = Extractor(cfg)
    drops: Counter = Counter()
    rows: dict[str, list[Any]] = {c: [] for c in CARRIED + ["text", "html_lang"]}
    candidates = 0
    warcs: dict[str, Path] = {}  # each WARC file made local once (a download when the input is remote)
    for rec in index.to_pylist():
        if rec["error"] is not None:
            continue  # counted as a drop by fetch; kept in its index for inspection
        candidates += 1
        if (warc := warcs.get(rec["warc_file"])) is None:
            warc = warcs[rec["warc_file"]] = storage.pull(src_dir / rec["warc_file"])
        resp = read_response_at(warc, rec["warc_offset"])
        got = extractor(resp.body, rec["final_url"])
        if got.timed_out:
            drops["extraction_timeout"] += 1
            continue
        if not got.text or len(got.text.strip()) < cfg.min_extracted_chars:
            drops["empty_extraction"] += 1
            continue
        for c in CARRIED:
            rows[c].append(rec[c])
        rows["text"].append(got.text.strip())
        rows["html_lang"].append(got.html_lang)
    schema = pa.schema(
        [index.schema.field(c) for c in CARRIED] + [pa.field("text", pa.string()), pa.field("html_lang", pa.string())]
    )
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(pa.table(rows, schema=schema), out)
    return finish_shard(task, [out], rows_in=candidates, rows_out=len(rows["text"]), drops=drops)


def run(cfg: ExtractConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    return run_shardwise("extract", cfg, extract_shard, runner, overwrite, desc="pages", also_verify="warc/")
