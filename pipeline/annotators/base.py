"""What an annotator is: a class that loads its model once and maps an Arrow table of documents to new columns.

    class MyScore(Annotator):
        name = "my_score"                  # its name in [annotate] annotators
        version = "1"                      # bump when the same options give other values
        Options = MyOptions                # a pydantic model: its table [annotate.options.my_score]
        def __init__(self, options): ...   # load the model (once per worker process)
        def columns(self) -> pa.Schema: ...
        def __call__(self, docs: pa.Table) -> pa.Table: ...   # same rows, the columns of columns()

The annotate stage caches each annotator's columns under its fingerprint (name, version, options, and what
`identity` adds, such as a model file's sha256), so adding or changing one annotator recomputes only that one.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from pipeline.core.dataset import sha256_file
from pipeline.core.errors import PipelineError


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Annotator(ABC):
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel):
        self.options = options

    @classmethod
    def identity(cls, options: BaseModel) -> dict[str, Any]:
        """What else decides this annotator's values beside its options: a model file's sha256, say."""
        return {}

    @classmethod
    def fingerprint(cls, options: BaseModel) -> str:
        key = {"name": cls.name, "version": cls.version, "options": options.model_dump(mode="json")}
        key |= cls.identity(options)
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    @abstractmethod
    def columns(self) -> pa.Schema:
        """The columns this annotator adds (names and types)."""

    @abstractmethod
    def __call__(self, docs: pa.Table) -> pa.Table:
        """docs (at least url_hash and text) -> a table of columns(), one row per document, in order."""

    def annotate(self, docs: pa.Table) -> pa.Table:
        """__call__, checked: one row per document, exactly the declared columns."""
        out = self(docs)
        if out.num_rows != docs.num_rows or out.schema != self.columns():
            raise PipelineError(
                f"annotator {self.name}: returned {out.num_rows} rows of {out.schema.names} for {docs.num_rows} "
                f"documents, declared {self.columns().names}"
            )
        return out


def file_identity(path: str) -> dict[str, Any]:
    """A model file by content: the same path holding another model gives another fingerprint."""
    return {"model_sha256": sha256_file(path)}
