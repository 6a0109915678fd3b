"""filter: drop Wikipedia, keep the chosen languages above a score, drop short documents.

Cheap by design: the language (`lang`, `lang_score`) and the length (`n_tokens`) were computed by extract, so this
stage only compares columns with thresholds and a rerun with another threshold never runs the model again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from pipeline.config import StageConfig
from pipeline.dataset import read_parquet, write_parquet
from pipeline.stage import ShardTask, finish_shard, run_shardwise
from pipeline.urls import host_of

# Wikimedia's other projects, dropped with `drop_wikimedia`: Wikipedia text in other clothes (and in eval sets).
WIKIMEDIA = ("wikimedia.org", "wiktionary.org", "wikibooks.org", "wikinews.org", "wikiquote.org", "wikisource.org",
             "wikiversity.org", "wikivoyage.org", "wikidata.org", "mediawiki.org", "wikifunctions.org")  # fmt: skip


class FilterConfig(StageConfig):
    input: str
    output: str
    drop_wikipedia: bool = True  # WebText removed Wikipedia (it is in most other eval sets)
    drop_wikimedia: bool = False  # also Wiktionary, Wikibooks, Wikisource, ... (WebText did not say)
    languages: list[str] = ["en"]
    # fastText lid.176 confidence; 0.5 keeps >= 99% of English documents and drops >= 99% of others (BENCHMARKS.md)
    min_lang_score: float = Field(0.5, ge=0.0, le=1.0)
    min_tokens: int = Field(128, ge=0)  # OpenWebText: documents under 128 GPT-2 tokens dropped


def _under(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def is_wikipedia(url: str | None) -> bool:
    """Every language and mobile host of wikipedia.org (en.wikipedia.org, de.m.wikipedia.org, ...)."""
    return _under(host_of(url or ""), ("wikipedia.org",))


def is_wikimedia(url: str | None) -> bool:
    return _under(host_of(url or ""), WIKIMEDIA)


def filter_table(table: pa.Table, cfg: FilterConfig) -> tuple[pa.Table, Counter]:
    """Pure core over one Arrow table of extracted documents: (kept rows, drops by reason). The first failing rule
    names the drop; the URL rules look at the linked and the final URL, so redirects to Wikipedia go too."""
    drops: Counter = Counter()
    urls, finals = table.column("url").to_pylist(), table.column("final_url").to_pylist()
    langs, scores = table.column("lang").to_pylist(), table.column("lang_score").to_pylist()
    tokens = table.column("n_tokens").to_pylist()
    wanted = set(cfg.languages)
    keep = []
    for url, final, lang, score, n in zip(urls, finals, langs, scores, tokens):
        if cfg.drop_wikipedia and (is_wikipedia(url) or is_wikipedia(final)):
            reason = "wikipedia"
        elif cfg.drop_wikimedia and (is_wikimedia(url) or is_wikimedia(final)):
            reason = "wikimedia"
        elif lang not in wanted:
            reason = "language"
        elif score < cfg.min_lang_score:
            reason = "language_score"
        elif n < cfg.min_tokens:
            reason = "too_short"
        else:
            keep.append(True)
            continue
        drops[reason] += 1
        keep.append(False)
    return table.filter(pa.array(keep, pa.bool_())) if keep else table, drops


def filter_shard(task: ShardTask) -> dict[str, Any]:
    cfg: FilterConfig = task.config
    (path,) = task.inputs
    table = read_parquet(path)
    kept, drops = filter_table(table, cfg)
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(kept, out)
    return finish_shard(task, [out], rows_in=table.num_rows, rows_out=kept.num_rows, drops=drops)


def run(cfg: FilterConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    return run_shardwise("filter", cfg, filter_shard, runner, overwrite, desc="documents")
