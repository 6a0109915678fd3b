"""quality: Gopher/C4-style text measurements (word count and length, symbol and bullet shares, repeated lines
and n-grams, stop words, lorem ipsum), one `quality_*` column each; filter's `quality_rules` threshold them."""

from __future__ import annotations

import pyarrow as pa

from pipeline.annotators.base import Annotator
from pipeline.text.quality import SIGNALS, signals


class QualitySignals(Annotator):
    name = "quality"

    def columns(self) -> pa.Schema:
        return pa.schema([(name, pa.type_for_alias(kind)) for name, kind in SIGNALS])

    def __call__(self, docs: pa.Table) -> pa.Table:
        rows = [signals(t) for t in docs.column("text").to_pylist()]
        return pa.table({name: [r[name] for r in rows] for name, _ in SIGNALS}, schema=self.columns())
