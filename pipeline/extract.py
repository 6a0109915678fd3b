"""extract: fetched HTML (WARC) -> main text with trafilatura, one row per page fetched OK."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import trafilatura
from trafilatura.settings import use_config

from pipeline.config import StageConfig
from pipeline.dataset import read_parquet, write_parquet
from pipeline.stage import ShardTask, finish_shard, run_shardwise
from pipeline.warc import read_response_at


class ExtractConfig(StageConfig):
    input: str
    output: str
    favor_precision: bool = False  # trafilatura's balanced default; precision trims more boilerplate and text
    include_comments: bool = False  # comment threads are not the linked page's main text
    include_tables: bool = True
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


class Extractor:
    """Set up once per task: trafilatura's config parsing is not free, and never per document."""

    def __init__(self, cfg: ExtractConfig):
        self.cfg = cfg
        self.tconfig = use_config()
        self.tconfig.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # signals don't work off the main thread

    def __call__(self, html: bytes, url: str | None) -> str | None:
        return trafilatura.extract(
            html,
            url=url,
            output_format="txt",
            favor_precision=self.cfg.favor_precision,
            include_comments=self.cfg.include_comments,
            include_tables=self.cfg.include_tables,
            config=self.tconfig,
        )


def extract_shard(task: ShardTask) -> dict[str, Any]:
    cfg: ExtractConfig = task.config
    (index_path,) = task.inputs
    src_dir = Path(index_path).parent
    index = read_parquet(index_path)
    extractor = Extractor(cfg)
    drops: Counter = Counter()
    rows: dict[str, list[Any]] = {c: [] for c in CARRIED + ["text"]}
    candidates = 0
    for rec in index.to_pylist():
        if rec["error"] is not None:
            continue  # counted as a drop by fetch; kept in its index for inspection
        candidates += 1
        resp = read_response_at(src_dir / rec["warc_file"], rec["warc_offset"])
        text = extractor(resp.body, rec["final_url"])
        if not text or len(text.strip()) < cfg.min_extracted_chars:
            drops["empty_extraction"] += 1
            continue
        for c in CARRIED:
            rows[c].append(rec[c])
        rows["text"].append(text.strip())
    schema = pa.schema([index.schema.field(c) for c in CARRIED] + [pa.field("text", pa.string())])
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(pa.table(rows, schema=schema), out)
    return finish_shard(task, [out], rows_in=candidates, rows_out=len(rows["text"]), drops=drops)


def run(cfg, runner, overwrite: bool = False) -> dict[str, Any]:
    return run_shardwise("extract", cfg, extract_shard, runner, overwrite, desc="pages")
