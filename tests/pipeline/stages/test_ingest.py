"""Bring your own text: Parquet and JSON Lines enter the pipeline after extraction, bad rows are counted and named,
ids are unique, and the chain runs on from the entry point (the trainer's use: tests/conftest.py's Shakespeare)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import chain
from pipeline.core.dataset import Dataset, read_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.ops.ingest import main as ingest_main
from pipeline.ops.ingest import plan
from pipeline.stages.ingest import CONTRACT, IngestConfig
from pipeline.stages.ingest import run as ingest_run


def sentences(shared: Path, lang: str, n: int, start: int = 0) -> str:
    lines = gzip.decompress((shared / "langid" / "sentences" / f"{lang}.txt.gz").read_bytes()).decode().splitlines()
    return " ".join(lines[start : start + n])


def rows_of(path: Path) -> list[dict]:
    return [r for f in Dataset(path).shard_files() for r in read_parquet(f).to_pylist()]


def test_json_lines_bad_rows_are_counted_and_named(tmp_path):
    src = tmp_path / "mine.jsonl.gz"
    lines = [
        json.dumps({"text": "first document", "author": "a"}),
        "{not json",
        json.dumps({"text": "   ", "author": "b"}),  # blank: no text
        json.dumps(["a", "list"]),
        "",
        json.dumps({"text": None, "author": "c"}),
        json.dumps({"text": "second document", "author": "d"}),
    ]
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    cfg = IngestConfig(input=[str(src)], output=str(tmp_path / "out"))
    m = ingest_run(cfg, LocalRunner())
    assert (m["rows_in"], m["rows_out"]) == (6, 2)  # the empty line is no row
    assert m["drops"] == {"bad_json": 1, "no_text": 2, "not_an_object": 1}
    assert len(m["examples"]) == 1 and m["examples"][0].startswith(f"{src.name}:2: bad JSON (")  # file:line
    rows = rows_of(tmp_path / "out")
    assert [r["text"] for r in rows] == ["first document", "second document"]
    assert [r["source_row"] for r in rows] == [1, 7] and {r["source"] for r in rows} == {src.name}
    assert [r["author"] for r in rows] == ["a", "d"]  # metadata kept
    assert read_parquet(Dataset(tmp_path / "out").shard_files()[0]).schema.names[: len(CONTRACT)] == CONTRACT.names


def test_parquet_with_ids_urls_and_shards_of_a_size(tmp_path):
    src = tmp_path / "mine.parquet"
    n = 25
    pq.write_table(
        pa.table(
            {
                "body": [f"document number {i}" for i in range(n)],
                "key": [f"k{i}" for i in range(n)],
                "link": [f"https://example.org/{i}" for i in range(n)],
                "year": list(range(2000, 2000 + n)),
            }
        ),
        src,
    )
    cfg = IngestConfig(
        input=[str(src)], output=str(tmp_path / "out"), text_column="body", id_column="key", url_column="link",
        shard_rows=10,
    )  # fmt: skip
    m = ingest_run(cfg, LocalRunner())
    assert [f["path"] for f in m["shards"][0]["files"]] == [f"part-00000-0000{k}.parquet" for k in range(3)]
    rows = rows_of(tmp_path / "out")
    assert len(rows) == n and len({r["url_hash"] for r in rows}) == n
    assert rows[3]["url"] == rows[3]["final_url"] == "https://example.org/3" and rows[3]["domain"] == "example.org"
    assert rows[3]["year"] == 2003 and rows[3]["score"] is None and "key" not in rows[3]
    # the same id gives the same url_hash (and so the same train/val split) in another run
    again = ingest_run(cfg.model_copy(update={"output": str(tmp_path / "again")}), LocalRunner())
    assert again["output_fingerprint"] == m["output_fingerprint"]


def test_duplicate_ids_and_reserved_columns_are_refused(tmp_path):
    src = tmp_path / "dup.jsonl"
    src.write_text(json.dumps({"id": 1, "text": "a"}) + "\n" + json.dumps({"id": 1, "text": "b"}) + "\n")
    with pytest.raises(PipelineError, match=r"dup.jsonl:1 and dup.jsonl:2 have the same id"):
        ingest_run(IngestConfig(input=[str(src)], output=str(tmp_path / "o1"), id_column="id"), LocalRunner())
    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"text": "a", "lang": "en"}) + "\n")
    with pytest.raises(PipelineError, match=r"metadata columns \['lang'\] are the pipeline's own"):
        ingest_run(IngestConfig(input=[str(clash)], output=str(tmp_path / "o2")), LocalRunner())
    with pytest.raises(PipelineError, match="no column 'body'"):
        ingest_run(IngestConfig(input=[str(clash)], output=str(tmp_path / "o3"), text_column="body"), LocalRunner())
    with pytest.raises(PipelineError, match="not Parquet or JSON Lines"):
        (tmp_path / "x.csv").write_text("text\nhello\n")
        ingest_run(IngestConfig(input=[str(tmp_path / "x.csv")], output=str(tmp_path / "o4")), LocalRunner())


def test_entry_points_follow_the_chain():
    names = chain.names()
    assert plan("filter", "tokenize")[0] == "annotate"  # filter thresholds annotate's columns
    assert plan("dedup", "manifest") == names[names.index("dedup") :]
    with pytest.raises(PipelineError, match="text enters at one of"):
        plan("fetch", "tokenize")
    with pytest.raises(PipelineError, match="at or after"):
        plan("tokenize", "dedup")


def test_the_command_runs_the_chain_from_the_entry_point(tmp_path, shared):
    """Real sentences in four languages, one of them twice: filtered by language, deduplicated, tokenized, and the
    manifest's funnel starts with the ingested documents."""
    docs = [sentences(shared, lang, 40) for lang in ("en", "de", "fr")] + [sentences(shared, "en", 40, 100)]
    docs.append(docs[0])  # an exact copy
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(docs)))
    root = tmp_path / "run"
    args = [str(src), "--root", str(root), "--at", "filter", "--through", "manifest", "--id-column", "id"]
    assert ingest_main([*args, "--runner", "local", "--set", "filter.min_tokens=16"]) == 0
    manifest = json.loads(next((root / chain.stage("manifest").output).rglob("manifest.json")).read_text())
    assert [s["stage"] for s in manifest["stages"]] == ["ingest", *plan("filter", "tokenize")]
    assert manifest["funnel"][:2] == [
        {"step": "rows read", "count": 5, "stage": "ingest"},
        {"step": "documents ingested", "count": 5, "stage": "ingest"},
    ]
    by_stage = {s["stage"]: s for s in manifest["stages"]}
    assert by_stage["filter"]["drops"] == {"language": 2}
    assert by_stage["dedup"]["drops"] == {"exact_duplicate": 1}
    assert manifest["totals"]["documents"] == 2


def test_json_lines_columns_are_the_union_of_keys_and_chunks_stream(tmp_path):
    src = tmp_path / "sparse.jsonl"
    rows = [{"text": "one"}, {"text": "two", "tag": "b"}, {"text": 3}, {"text": "four", "tag": None}]
    rows += [{"id": None, "text": "five", "tag": "e"}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = IngestConfig(input=[str(src)], output=str(tmp_path / "out"), shard_rows=10)
    m = ingest_run(cfg, LocalRunner())
    assert m["drops"] == {"no_text": 1}  # a number is no text
    docs = rows_of(tmp_path / "out")
    assert [d["tag"] for d in docs] == [None, "b", None, "e"]  # a key absent from the first line is kept
    # streamed in chunks of shard_rows: the same documents, several shards, one schema
    small = ingest_run(cfg.model_copy(update={"output": str(tmp_path / "small"), "shard_rows": 2}), LocalRunner())
    assert len(small["shards"][0]["files"]) == 3 and small["rows_out"] == 4


def test_null_ids_fall_back_and_same_named_files_do_not_collide(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "data.jsonl").write_text(json.dumps({"id": None, "text": f"text in {folder}"}) + "\n")
    cfg = IngestConfig(
        input=[str(tmp_path / f / "data.jsonl") for f in ("a", "b")], output=str(tmp_path / "out"), id_column="id"
    )
    ingest_run(cfg, LocalRunner())
    docs = rows_of(tmp_path / "out")
    assert [d["source"] for d in docs] == ["a/data.jsonl", "b/data.jsonl"] and len({d["url_hash"] for d in docs}) == 2


def test_files_with_other_columns_or_a_json_array_are_refused_clearly(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"text": "a", "year": 2001}) + "\n")
    (tmp_path / "y.jsonl").write_text(json.dumps({"text": "b", "year": "2001"}) + "\n")
    files = [str(tmp_path / "x.jsonl"), str(tmp_path / "y.jsonl")]
    with pytest.raises(PipelineError, match=r"differ in their metadata columns \(year: string vs int64\)"):
        ingest_run(IngestConfig(input=files, output=str(tmp_path / "o1")), LocalRunner())
    m = ingest_run(IngestConfig(input=files, output=str(tmp_path / "o2"), metadata=False), LocalRunner())
    assert m["rows_out"] == 2 and "year" not in rows_of(tmp_path / "o2")[0]
    (tmp_path / "array.json").write_text(json.dumps([{"text": "a"}, {"text": "b"}]) + "\n")
    with pytest.raises(PipelineError, match="not a JSON array"):
        ingest_run(IngestConfig(input=[str(tmp_path / "array.json")], output=str(tmp_path / "o3")), LocalRunner())
