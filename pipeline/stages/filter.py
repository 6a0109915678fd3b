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

from pipeline.core.config import StageConfig
from pipeline.core.dataset import read_parquet, write_parquet
from pipeline.core.stage import ShardTask, finish_shard, run_shardwise
from pipeline.text.quality import QualityThresholds, quality_reason
from pipeline.text.urls import host_of

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
    # Gopher/C4-style heuristics (pipeline/text/quality.py), each its own drop reason; OpenWebText used none.
    quality_rules: bool = False
    quality: QualityThresholds = QualityThresholds()  # [filter.quality] or --set quality.max_symbol_ratio=0.2
    keep_rejected: bool = False  # also write the dropped documents, with `drop_reason`, under rejected/


def _under(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def is_wikipedia(url: str | None) -> bool:
    """Every language and mobile host of wikipedia.org (en.wikipedia.org, de.m.wikipedia.org, ...)."""
    return _under(host_of(url or ""), ("wikipedia.org",))


def is_wikimedia(url: str | None) -> bool:
    return _under(host_of(url or ""), WIKIMEDIA)


def filter_table(table: pa.Table, cfg: FilterConfig) -> tuple[pa.Table, list[str | None]]:
    """Pure core over one Arrow table of extracted documents: (kept rows, each row's drop reason or None). The
    first failing rule names the drop; the URL rules look at the linked and the final URL, so redirects to
    Wikipedia go too."""
    urls, finals = table.column("url").to_pylist(), table.column("final_url").to_pylist()
    langs, scores = table.column("lang").to_pylist(), table.column("lang_score").to_pylist()
    tokens = table.column("n_tokens").to_pylist()
    texts = table.column("text").to_pylist() if cfg.quality_rules else [None] * table.num_rows
    wanted = set(cfg.languages)
    reasons: list[str | None] = []
    for url, final, lang, score, n, text in zip(urls, finals, langs, scores, tokens, texts):
        if cfg.drop_wikipedia and (is_wikipedia(url) or is_wikipedia(final)):
            reasons.append("wikipedia")
        elif cfg.drop_wikimedia and (is_wikimedia(url) or is_wikimedia(final)):
            reasons.append("wikimedia")
        elif lang not in wanted:
            reasons.append("language")
        elif score < cfg.min_lang_score:
            reasons.append("language_score")
        elif n < cfg.min_tokens:
            reasons.append("too_short")
        elif cfg.quality_rules:
            why = quality_reason(text, cfg.quality)
            reasons.append(f"quality_{why}" if why else None)
        else:
            reasons.append(None)
    return table.filter(pa.array([r is None for r in reasons], pa.bool_())), reasons


def filter_shard(task: ShardTask) -> dict[str, Any]:
    cfg: FilterConfig = task.config
    (path,) = task.inputs
    table = read_parquet(path)
    kept, reasons = filter_table(table, cfg)
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(kept, out)
    files = [out]
    if cfg.keep_rejected:
        dropped = pa.array([r is not None for r in reasons], pa.bool_())
        rejected = table.filter(dropped).append_column(
            "drop_reason", pa.array([r for r in reasons if r is not None], pa.string())
        )
        files.append(Path(task.output) / "rejected" / f"{task.name}.parquet")
        write_parquet(rejected, files[-1])
    drops = Counter(r for r in reasons if r is not None)
    return finish_shard(task, files, rows_in=table.num_rows, rows_out=kept.num_rows, drops=drops)


def run(cfg: FilterConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    return run_shardwise("filter", cfg, filter_shard, runner, overwrite, desc="documents")
