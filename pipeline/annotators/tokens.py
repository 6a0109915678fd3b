"""tokens: each document's length in tokens of a tiktoken vocabulary (`n_tokens`; GPT-2's by default)."""

from __future__ import annotations

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from pipeline.annotators.base import Annotator
from pipeline.text.vocab import token_counts


class TokenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokenizer: str = "gpt2"


class TokenCount(Annotator):
    name = "tokens"
    Options = TokenOptions

    def __init__(self, options: TokenOptions):
        super().__init__(options)
        self.tokenizer = options.tokenizer

    def columns(self) -> pa.Schema:
        return pa.schema([("n_tokens", pa.int64())])

    def __call__(self, docs: pa.Table) -> pa.Table:
        counts = token_counts(docs.column("text").to_pylist(), self.tokenizer)
        return pa.table({"n_tokens": counts}, schema=self.columns())
