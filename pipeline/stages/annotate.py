"""annotate: extracted documents -> the same documents with a column or more from each annotator (language,
length in tokens, quality signals, a classifier's score...). Score, then decide: the filter stage thresholds these
columns, so trying another threshold never runs a model again, and adding a score never extracts again.

Each annotator's columns are cached per input shard under `_annotations/<name>-<fingerprint>/`, the fingerprint
covering its name, version, options and model file: adding or changing one annotator computes only that one, even
after `--overwrite` (the cache is kept; it is content-addressed, so it cannot be stale). The annotators'
fingerprints are part of the stage's input, so a model file replaced under the same path redoes the stage (and its
other annotators come from the cache) without `--overwrite`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, model_validator

from pipeline.annotators import annotator_class
from pipeline.annotators.base import Annotator
from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import Dataset, read_parquet, write_parquet
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, StageRun, combined_fingerprint, finish_shard, verify_entries

CACHE = "_annotations"


class AnnotateConfig(StageConfig):
    input: str
    output: str
    # OpenWebText's scores: fastText lid.176's language and the length in GPT-2 tokens (filter's defaults use both).
    annotators: list[str] = ["language", "tokens"]
    # Each annotator's options, by name: [annotate.options.language] model = "lid.176.bin"
    options: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _known(self) -> AnnotateConfig:
        if len(set(self.annotators)) != len(self.annotators):
            raise ValueError(f"annotators listed twice: {self.annotators}")
        for name in set(self.options) - set(self.annotators):
            raise ValueError(f"options for {name!r}, which is not in annotators {self.annotators}")
        for name in self.annotators:
            self.options_of(name)  # unknown annotators and bad options fail here, before any task runs
        return self

    def options_of(self, name: str) -> BaseModel:
        cls = annotator_class(name)
        try:
            return cls.Options.model_validate(self.options.get(name, {}))
        except ValueError as e:  # pydantic's ValidationError, as one line
            detail = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in getattr(e, "errors", list)())
            raise ConfigError(f"[annotate.options.{name}]: {detail or e}") from None


@dataclass(frozen=True)
class Chosen:
    name: str
    cls: type[Annotator]
    options: BaseModel
    fingerprint: str

    @property
    def folder(self) -> str:
        return f"{CACHE}/{self.name}-{self.fingerprint[:16]}"


@dataclass(frozen=True)
class Plan:
    """The payload of an annotate task: the annotators (fingerprinted once, by the driver) and the sha256 of the
    input shard, which names its cache files."""

    annotators: tuple[Chosen, ...]
    input_sha256: str


def chosen(cfg: AnnotateConfig) -> list[Chosen]:
    out = []
    for name in cfg.annotators:
        cls, options = annotator_class(name), cfg.options_of(name)
        out.append(Chosen(name, cls, options, cls.fingerprint(options)))
    return out


@lru_cache(maxsize=8)
def _loaded(name: str, fingerprint: str, cls: type[Annotator], options_json: str) -> Annotator:
    """Once per worker process and annotator: a model is loaded for the first shard, reused for the next."""
    return cls(cls.Options.model_validate_json(options_json))


def annotator(c: Chosen) -> Annotator:
    return _loaded(c.name, c.fingerprint, c.cls, c.options.model_dump_json())


def annotate_table(docs: pa.Table, cfg: AnnotateConfig) -> pa.Table:
    """Pure core: the documents with every annotator's columns appended, in the order of `annotators`."""
    for c in chosen(cfg):
        docs = _append(docs, annotator(c).annotate(docs), c.name)
    return docs


def _append(docs: pa.Table, columns: pa.Table, name: str) -> pa.Table:
    for field in columns.schema:
        if field.name in docs.column_names:
            raise PipelineError(f"annotator {name}: column {field.name!r} is already in the documents")
        docs = docs.append_column(field, columns.column(field.name))
    return docs


def cached_columns(path: Path, rows: int) -> pa.Table | None:
    """A cache file, if it is there and whole; a damaged one is computed again (it is only a cache)."""
    if not storage.is_file(path):
        return None
    try:
        columns = read_parquet(path)
    except PipelineError:
        return None
    return columns if columns.num_rows == rows else None


def annotate_shard(task: ShardTask[AnnotateConfig, Plan]) -> Record:
    (path,) = task.inputs
    docs = read_parquet(path)
    out = Path(task.output)
    table, how = docs, {}
    for c in task.payload.annotators:
        # By the input shard's content: the same documents give the same columns, whichever run asks.
        cache = out / c.folder / f"{task.payload.input_sha256}.parquet"
        columns = cached_columns(cache, docs.num_rows)
        if columns is None:
            columns = annotator(c).annotate(docs)
            write_parquet(columns, cache)
            how[c.name] = "computed"
        else:
            how[c.name] = "cached"
        table = _append(table, columns, c.name)
    target = out / f"{task.name}.parquet"
    write_parquet(table, target)
    return finish_shard(task, [target], rows_in=docs.num_rows, rows_out=docs.num_rows, extra={"annotators": how})


def run(cfg: AnnotateConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    src = Dataset(cfg.input)
    annotators = tuple(chosen(cfg))  # here, once: a model file is hashed by the driver, not by every task
    fingerprints = {c.name: c.fingerprint for c in annotators}
    scores = combined_fingerprint([f"{c.name}:{c.fingerprint}" for c in annotators])
    # The annotators are an input like the documents: another model under the same path redoes every shard.
    inputs = {src.uri: src.fingerprint(), "annotators": scores}
    run_ = StageRun("annotate", cfg, cfg.output, inputs, runner, overwrite, keep=(CACHE,))
    if run_.reused:
        return run_.out.manifest() | {"reused": True}
    out = str(run_.out.path.resolve())
    tasks = [
        ShardTask(
            p.stem,
            [str(p.resolve())],
            out,
            cfg,
            Plan(annotators, e["sha256"]),
            f"{e['sha256']}:{scores}",
            verify_entries(src.path, [e]),
        )  # fmt: skip
        for p, e in src.shard_entries(".parquet")
    ]
    shards = run_.map(annotate_shard, tasks, "documents")
    return run_.finish(shards, extra={"annotators": fingerprints})
