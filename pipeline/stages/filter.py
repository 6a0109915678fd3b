"""filter: drop Wikipedia, then every document a rule drops: `column op value`, each rule with its drop reason.

Cheap by design: the columns are annotate's (language, length, quality signals, a classifier's score), so this
stage only compares them with thresholds and a rerun with another threshold never runs a model again. The rules
that reproduce OpenWebText (language, its score, length) are spelled as three keys; `rules` adds any others:

    [[filter.rules]]
    column = "classifier_score"
    op = "<"
    value = 0.5
    reason = "low_quality"

A document is dropped for the first rule it fails, in this order: Wikipedia, Wikimedia, the language, its score,
the length, the quality rules, then `rules` in their order. A missing value (null) is as Python has None: equal to
nothing and in no set (so `==` and `in` keep it, `!=` and `not in` drop it), and it fails every threshold
(`<`, `<=`, `>`, `>=` drop it: a score that was never computed does not pass).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.config import StageConfig
from pipeline.core.dataset import read_parquet, write_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, finish_shard, run_shardwise
from pipeline.text.quality import QualityThresholds, threshold_rules
from pipeline.text.urls import host_of

# Wikimedia's other projects, dropped with `drop_wikimedia`: Wikipedia text in other clothes (and in eval sets).
WIKIMEDIA = ("wikimedia.org", "wiktionary.org", "wikibooks.org", "wikinews.org", "wikiquote.org", "wikisource.org",
             "wikiversity.org", "wikivoyage.org", "wikidata.org", "mediawiki.org", "wikifunctions.org")  # fmt: skip
Scalar = bool | int | float | str
Value = Scalar | list[Scalar]


class Rule(BaseModel):
    """Drop a document when `column op value`; the drop is counted under `reason`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    op: Literal["<", "<=", ">", ">=", "==", "!=", "in", "not in"]
    value: Value
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]*$")


class FilterConfig(StageConfig):
    input: str
    output: str
    drop_wikipedia: bool = True  # WebText removed Wikipedia (it is in most other eval sets)
    drop_wikimedia: bool = False  # also Wiktionary, Wikibooks, Wikisource, ... (WebText did not say)
    languages: list[str] = ["en"]  # drop reason "language": `lang` (annotate's language) not among these
    # fastText lid.176 confidence; 0.5 keeps >= 99% of English documents and drops >= 99% of others (BENCHMARKS.md).
    # Compared as stored (a float32, widened): a score shown as 0.7 is 0.69999999 and fails min_lang_score = 0.7.
    min_lang_score: float = Field(0.5, ge=0.0, le=1.0)  # "language_score"
    min_tokens: int = Field(128, ge=0)  # "too_short": OpenWebText dropped documents under 128 GPT-2 tokens
    # Gopher/C4-style heuristics on the quality annotator's columns, each its own drop reason; OpenWebText used none.
    quality_rules: bool = False
    quality: QualityThresholds = QualityThresholds()  # [filter.quality] or --set quality.max_symbol_ratio=0.2
    rules: list[Rule] = []  # more rules, after the ones above
    keep_rejected: bool = False  # also write the dropped documents, with `drop_reason`, under rejected/

    def all_rules(self) -> list[Rule]:
        """Every column rule, in the order they apply."""
        rules = [
            Rule(column="lang", op="not in", value=list(self.languages), reason="language"),
            Rule(column="lang_score", op="<", value=self.min_lang_score, reason="language_score"),
            Rule(column="n_tokens", op="<", value=self.min_tokens, reason="too_short"),
        ]
        if self.quality_rules:
            rules += [Rule(column=c, op=op, value=v, reason=r) for c, op, v, r in threshold_rules(self.quality)]
        return rules + self.rules


def _under(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def is_wikipedia(url: str | None) -> bool:
    """Every language and mobile host of wikipedia.org (en.wikipedia.org, de.m.wikipedia.org, ...)."""
    return _under(host_of(url or ""), ("wikipedia.org",))


def is_wikimedia(url: str | None) -> bool:
    return _under(host_of(url or ""), WIKIMEDIA)


COMPARE = {"<": pc.less, "<=": pc.less_equal, ">": pc.greater, ">=": pc.greater_equal, "==": pc.equal,
           "!=": pc.not_equal}  # fmt: skip


NULL_DROPS = {"<": True, "<=": True, ">": True, ">=": True, "==": False, "!=": True}


def fails(table: pa.Table, rule: Rule) -> np.ndarray:
    """(rows,) bool: where the rule drops the document."""
    if rule.column not in table.column_names:
        raise PipelineError(
            f"filter rule {rule.reason!r} reads column {rule.column!r}, which the documents lack (they have "
            f"{', '.join(table.column_names)}); add the annotator that writes it to [annotate] annotators"
        )
    col = table.column(rule.column)
    try:
        if rule.op in ("in", "not in"):
            values = rule.value if isinstance(rule.value, list) else [rule.value]
            found = pc.is_in(col, value_set=pa.array(values).cast(col.type)).fill_null(False)  # null: in no set
            hit = found if rule.op == "in" else pc.invert(found)
        else:
            if isinstance(rule.value, list):
                raise PipelineError(f"filter rule {rule.reason!r}: {rule.op} compares with one value, got a list")
            if pa.types.is_floating(col.type) or isinstance(rule.value, float):
                # as Python compares: the stored value, widened to a double, against the threshold
                col = col.cast(pa.float64())
            hit = COMPARE[rule.op](col, pa.scalar(rule.value).cast(col.type)).fill_null(NULL_DROPS[rule.op])
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as e:
        raise PipelineError(
            f"filter rule {rule.reason!r}: column {rule.column!r} holds {col.type}, which does not compare "
            f"{rule.op} {rule.value!r} ({e})"
        ) from None
    return hit.to_numpy(zero_copy_only=False).astype(bool)


def filter_table(table: pa.Table, cfg: FilterConfig) -> tuple[pa.Table, list[str | None]]:
    """Pure core over one Arrow table of annotated documents: (kept rows, each row's drop reason or None). The
    first failing rule names the drop; the URL rules look at the linked and the final URL, so redirects to
    Wikipedia go too."""
    reasons: list[str | None] = [None] * table.num_rows
    if cfg.drop_wikipedia or cfg.drop_wikimedia:
        urls, finals = table.column("url").to_pylist(), table.column("final_url").to_pylist()
        for i, (url, final) in enumerate(zip(urls, finals)):
            if cfg.drop_wikipedia and (is_wikipedia(url) or is_wikipedia(final)):
                reasons[i] = "wikipedia"
            elif cfg.drop_wikimedia and (is_wikimedia(url) or is_wikimedia(final)):
                reasons[i] = "wikimedia"
    for rule in cfg.all_rules():
        open_rows = np.array([r is None for r in reasons], dtype=bool)
        if not open_rows.any():
            break
        for row in np.flatnonzero(fails(table, rule) & open_rows).tolist():
            reasons[row] = rule.reason
    return table.filter(pa.array([r is None for r in reasons], pa.bool_())), reasons


def filter_shard(task: ShardTask[FilterConfig, None]) -> Record:
    cfg = task.config
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


def run(cfg: FilterConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    return run_shardwise("filter", cfg, filter_shard, runner, overwrite, desc="documents")
