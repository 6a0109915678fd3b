"""classifier: the probability a fastText classifier gives one label, for any supervised `.bin`/`.ftz` model
(a quality classifier in the style of GPT-3's or DCLM's, a topic or toxicity model...); filter's rules decide."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from pipeline.annotators.base import Annotator, file_identity
from pipeline.core.errors import PipelineError
from pipeline.text.langid import fasttext_model

COLUMN = re.compile(r"^[a-z][a-z0-9_]*$")


class ClassifierOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str  # a supervised fastText model file
    label: str  # the label whose probability is written ("hq" or "__label__hq")
    column: str = Field("classifier_score", pattern=COLUMN.pattern)  # the column it goes to


class FastTextClassifier(Annotator):
    name = "classifier"
    Options = ClassifierOptions

    def __init__(self, options: ClassifierOptions):
        super().__init__(options)
        if not Path(options.model).is_file():
            raise PipelineError(f"classifier model not found: {options.model} ([annotate.options.classifier] model)")
        self.model = fasttext_model(options.model)
        self.label = options.label if options.label.startswith("__label__") else f"__label__{options.label}"
        labels = self.model.get_labels()
        if self.label not in labels:
            raise PipelineError(f"{options.model}: no label {self.label!r} (it has {', '.join(labels[:10])})")
        self.column = options.column

    @classmethod
    def identity(cls, options: BaseModel) -> dict[str, Any]:
        assert isinstance(options, ClassifierOptions)
        if not Path(options.model).is_file():
            raise PipelineError(f"classifier model not found: {options.model} ([annotate.options.classifier] model)")
        return file_identity(options.model)

    def columns(self) -> pa.Schema:
        return pa.schema([(self.column, pa.float32())])

    def __call__(self, docs: pa.Table) -> pa.Table:
        texts = [" ".join(t.split()) for t in docs.column("text").to_pylist()]  # fastText reads one line
        scores = np.zeros(len(texts), dtype=np.float32)
        if texts:
            # k=-1: every label's probability, so the one asked for is there even when it is not the top one.
            labels, probs = self.model.predict(texts, k=-1)
            for i, (ls, ps) in enumerate(zip(labels, probs)):
                scores[i] = dict(zip(ls, ps)).get(self.label, 0.0)
        return pa.table({self.column: scores}, schema=self.columns())
