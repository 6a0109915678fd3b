"""croissant.json from a manifest, validated and read back by mlcroissant over a small real corpus on disk."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import PipelineError
from pipeline.corpus.croissant import CONFORMS_TO, content_url, croissant, data_type, includes, write_croissant
from pipeline.text.token_format import write_token_shard

mlc = pytest.importorskip("mlcroissant")
pytestmark = [
    pytest.mark.filterwarnings("ignore:ConjunctiveGraph is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index"),
]

DOCUMENTS_SCHEMA = pa.schema(
    [
        ("url_hash", pa.string()),
        ("url", pa.string()),
        ("final_url", pa.string()),
        ("domain", pa.string()),
        ("score", pa.int64()),
        ("n_submissions", pa.int32()),
        ("first_created_utc", pa.int64()),
        ("submission_ids", pa.list_(pa.string())),
        ("subreddits", pa.list_(pa.string())),
        ("text", pa.string()),
        ("html_lang", pa.string()),
        ("lang", pa.string()),
        ("lang_score", pa.float32()),
        ("n_tokens", pa.int64()),
        ("split", pa.string()),
    ]
)
INDEX_SCHEMA = pa.schema(
    [
        ("token_start", pa.int64()),
        ("n_tokens", pa.int64()),
        ("url_hash", pa.string()),
        ("documents_file", pa.string()),
        ("documents_row", pa.int64()),
    ]
)
EOT = 50256


def document(shard: int, i: int) -> dict[str, Any]:
    return {
        "url_hash": f"{shard:x}{i:015x}",
        "url": f"http://site{i}.example/{shard}/article",
        "final_url": None if i == 1 else f"https://site{i}.example/{shard}/article",
        "domain": f"site{i}.example",
        "score": 3 + i,
        "n_submissions": 1 + i,
        "first_created_utc": 1_120_000_000 + 60 * i,
        "submission_ids": [f"t3_{shard}{i}{k}" for k in range(i)],
        "subreddits": ["news", "science"][:i],
        "text": f"Document {shard}.{i}: naïve café | pipes\nsecond line",
        "html_lang": "en" if i == 0 else None,
        "lang": "en",
        "lang_score": 0.75,
        "n_tokens": 10 + i,
        "split": "val" if (shard, i) == (1, 2) else "train",
    }


def entry(root: Path, path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": path.relative_to(root).as_posix(), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def build_corpus(data: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Documents (two Parquet files, list columns, nulls), a token shard and an index per split.
    Returns (the manifest's files, the documents in file order)."""
    files, docs = [], []
    for shard in range(2):
        rows = [document(shard, i) for i in range(3)]
        path = data / "documents" / f"part-{shard:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENTS_SCHEMA), path)
        files.append({**entry(data, path), "kind": "documents", "rows": len(rows)})
        docs += rows
    for split in ("train", "val"):
        members = [(k, d) for k, d in enumerate(docs) if d["split"] == split]
        lengths = [d["n_tokens"] + 1 for _, d in members]
        tokens = np.concatenate([np.r_[np.arange(n - 1) % 1000, EOT] for n in lengths]).astype(np.uint16)
        shard_path = data / split / "tokens-00000.arrow"
        write_token_shard(shard_path, tokens, {"tokenizer": "gpt2"})
        files.append(
            {
                **entry(data, shard_path),
                "kind": "tokens",
                "split": split,
                "tokens": len(tokens),
                "documents": len(lengths),
            }
        )
        index = {
            "token_start": np.r_[0, np.cumsum(lengths)[:-1]].tolist(),
            "n_tokens": lengths,
            "url_hash": [d["url_hash"] for _, d in members],
            "documents_file": [f"documents/part-{k // 3:05d}.parquet" for k, _ in members],
            "documents_row": [k % 3 for k, _ in members],
        }
        index_path = data / "index" / f"{split}-00000.parquet"
        index_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(index, schema=INDEX_SCHEMA), index_path)
        files.append({**entry(data, index_path), "kind": "token_index", "split": split, "rows": len(lengths)})
    return files, docs


def make_manifest(files: list[dict[str, Any]], docs: list[dict[str, Any]], root: str) -> dict[str, Any]:
    tokens = {
        s: sum(f["tokens"] for f in files if f.get("split") == s and f["kind"] == "tokens") for s in ("train", "val")
    }
    return {
        "name": "owt-test",
        "version": "0.1.0",
        "created": "2026-11-23T10:00:00+00:00",
        "code_version": "0.1.0+gabc123",
        "description": "A tiny OpenWebText-style corpus for tests.",
        "license": "Text belongs to the pages' authors; research use under the source sites' terms.",
        "root": root,
        "tokenizer": {
            "name": "gpt2",
            "vocab_sha256": "0" * 64,
            "eot_token": EOT,
            "eot_position": "after",
            "dtype": "uint16",
            "format": "owt-tokens",
            "format_version": "1",
        },
        "inputs": [{"name": "RS_2005-06.zst", "bytes": 123, "sha256": "1" * 64}],
        "stages": [
            {
                "stage": "filter",
                "config": {"languages": ["en"], "min_lang_score": 0.5, "min_tokens": 128},
                "code_version": "0.1.0+gabc123",
                "rows_in": 8,
                "rows_out": 6,
                "drops": {"non_english": 1, "too_short": 1},
                "wall_time_s": 0.5,
                "output_fingerprint": "2" * 64,
            }
        ],
        "funnel": [{"step": "documents after dedup", "count": len(docs), "stage": "dedup"}],
        "files": files,
        "documents_schema": [{"name": f.name, "type": str(f.type)} for f in DOCUMENTS_SCHEMA],
        "domains": {"site0.example": 2, "site1.example": 2, "site2.example": 2},
        "totals": {
            "documents": len(docs),
            "tokens": tokens,
            "documents_by_split": {s: sum(d["split"] == s for d in docs) for s in ("train", "val")},
            "bytes": sum(f["bytes"] for f in files),
        },
        "published": [],
    }


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """A published corpus: manifest, croissant.json and data in one folder (root ".")."""
    folder = tmp_path_factory.mktemp("published")
    files, docs = build_corpus(folder)
    manifest = make_manifest(files, docs, ".")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    write_croissant(manifest, folder)
    return folder, manifest, docs


def decoded(value: Any) -> Any:
    # mlcroissant yields sc:Text as bytes (lists of bytes for repeated fields)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [decoded(v) for v in value]
    return value


def records(dataset: Any, record_set: str) -> list[dict[str, Any]]:
    prefix = f"{record_set}/"
    return [{k.removeprefix(prefix): decoded(v) for k, v in r.items()} for r in dataset.records(record_set)]


def load_clean(path: Path, caplog: pytest.LogCaptureFixture) -> Any:
    with caplog.at_level(logging.WARNING):
        ds = mlc.Dataset(jsonld=str(path))
    issues = ds.metadata.ctx.issues
    assert not issues.errors and not issues.warnings, issues.report()
    assert "not standard" not in caplog.text  # mlcroissant's check of the @context
    return ds


def with_probe(doc: dict[str, Any], file_id: str) -> dict[str, Any]:
    """The JSON-LD plus a RecordSet that reads one FileObject directly: mlcroissant then resolves that file's
    contentUrl itself and checks its sha256 (files read through a FileSet glob are not hashed)."""
    probe = copy.deepcopy(doc)
    probe["recordSet"].append(
        {
            "@type": "cr:RecordSet",
            "@id": "probe",
            "name": "probe",
            "field": [
                {
                    "@type": "cr:Field",
                    "@id": "probe/url",
                    "name": "url",
                    "dataType": "sc:Text",
                    "source": {"fileObject": {"@id": file_id}, "extract": {"column": "url"}},
                }
            ],
        }
    )
    return probe


def test_published_corpus_validates_without_warnings(published, caplog):
    folder, manifest, _ = published
    ds = load_clean(folder / "croissant.json", caplog)
    doc = json.loads((folder / "croissant.json").read_text())
    assert doc["conformsTo"] == CONFORMS_TO
    assert doc["@type"] == "sc:Dataset"
    for key in ("name", "description", "license", "url", "creator", "datePublished", "version", "citeAs"):
        assert doc[key], key
    assert doc["license"] == manifest["license"]  # free text, as Croissant allows
    assert "zero_copy_only=True" in doc["description"] and str(EOT) in doc["description"]
    objects = {f.id: f for f in ds.metadata.file_objects}
    assert set(objects) == {f["path"] for f in manifest["files"]}
    for f in manifest["files"]:
        obj = objects[f["path"]]
        assert obj.sha256 == f["sha256"] and obj.content_size == f"{f['bytes']} B"
        assert obj.content_url == f["path"]  # root "." normalized away
    formats = {f["kind"]: objects[f["path"]].encoding_formats for f in manifest["files"]}
    assert formats == {
        "documents": ["application/x-parquet"],
        "token_index": ["application/x-parquet"],
        "tokens": ["application/vnd.apache.arrow.file"],
    }
    sets = {s.id: s.includes for s in ds.metadata.file_sets}
    assert sets["documents-files"] == ["documents/*.parquet"]
    assert sets["tokens-train-files"] == ["train/*.arrow"] and sets["tokens-val-files"] == ["val/*.arrow"]
    assert sets["token_index-files"] == ["index/*.parquet"]


def test_documents_record_set_reads_back_what_was_written(published, caplog):
    folder, manifest, docs = published
    ds = load_clean(folder / "croissant.json", caplog)
    fields = {f.id: f for rs in ds.metadata.record_sets if rs.id == "documents" for f in rs.fields}
    assert [f.removeprefix("documents/") for f in fields] == [c["name"] for c in manifest["documents_schema"]]
    assert fields["documents/subreddits"].repeated and not fields["documents/url"].repeated
    got = records(ds, "documents")
    assert len(got) == len(docs)
    for row, want in zip(got, docs):
        assert row["lang_score"] == pytest.approx(want["lang_score"])  # float32 on disk
        exact = {k: v for k, v in want.items() if k != "lang_score"}
        assert {k: row[k] for k in exact} == exact  # texts, URLs, nulls and list columns as written


def test_token_index_record_set_points_into_the_token_shards(published, caplog):
    folder, manifest, docs = published
    ds = load_clean(folder / "croissant.json", caplog)
    rows = records(ds, "token_index")
    assert len(rows) == len(docs)
    for row in rows:
        split = row["index_file"].split("/")[-1].split("-")[0]
        source = pa.memory_map(str(folder / split / "tokens-00000.arrow"))
        tokens = pa.ipc.open_file(source).read_all().column("tokens").chunk(0).to_numpy(zero_copy_only=True)
        span = tokens[row["token_start"] : row["token_start"] + row["n_tokens"]]
        assert span[-1] == EOT and EOT not in span[:-1]
        doc = docs[int(row["documents_file"][-13:-8]) * 3 + row["documents_row"]]
        assert doc["url_hash"] == row["url_hash"] and doc["split"] == split


def local_layout(tmp_path: Path) -> tuple[Path, Path, dict[str, Any], list[dict[str, Any]]]:
    """A manifest folder beside the corpus it describes, as `manifest` writes it in a run folder."""
    data, meta = tmp_path / "tokens", tmp_path / "data_manifests" / "owt-test" / "0.1.0"
    files, docs = build_corpus(data)
    manifest = make_manifest(files, docs, os.path.relpath(data, meta))
    assert manifest["root"] == "../../../tokens"
    return data, meta, manifest, docs


def test_a_local_manifest_has_a_croissant_that_reads_back_every_record(tmp_path, caplog):
    data, meta, manifest, docs = local_layout(tmp_path)
    whole = write_croissant(manifest, meta)
    for path in (meta / "croissant.json", data / "croissant.json"):
        ds = load_clean(path, caplog)
        if ds.metadata.record_sets:  # globs outside the JSON-LD's folder would validate, then read 0 records
            assert len(records(ds, "documents")) == len(docs) == manifest["totals"]["documents"]
            assert len(records(ds, "token_index")) == sum(f["rows"] for f in files_of(manifest, "token_index"))
        else:
            assert path == meta / "croissant.json" and not ds.metadata.file_sets
            with pytest.raises(ValueError, match="declares no record sets"):
                list(ds.records("documents"))
    assert whole == data / "croissant.json"
    beside = json.loads((meta / "croissant.json").read_text())
    assert "../../../tokens/croissant.json" in beside["description"]
    assert {r["@id"] for r in json.loads(whole.read_text())["recordSet"]} == {"documents", "token_index"}


def test_the_manifest_stage_writes_a_croissant_that_reads_back_where_it_stands(tmp_path, finished_dataset, caplog):
    """A real run: tokenize, then the manifest in its own folder (root ../../../tokens), then a published copy."""
    from pipeline.chain import run_stage
    from pipeline.cli import main
    from pipeline.core.runner import LocalRunner
    from pipeline.stages.manifest import ManifestConfig
    from pipeline.stages.tokenize import TokenizeConfig
    from pipeline.text.urls import url_hash

    tables = []
    for s in range(2):
        urls = [f"http://news{s}.example.com/{i}" for i in range(12)]
        texts = [f"Story {s}.{i}: " + "the council met and voted on the budget again. " * (5 + i) for i in range(12)]
        tables.append(pa.table({"url_hash": [url_hash(u) for u in urls], "url": urls, "text": texts}))
    src = finished_dataset(tmp_path / "deduped", tables)
    tok = TokenizeConfig(input=str(src), output=str(tmp_path / "tokens"), val_fraction=0.2, shard_tokens=600)
    run_stage("tokenize", tok, LocalRunner())
    cfg = ManifestConfig(input=tok.output, output=str(tmp_path / "data_manifests"), name="t", version="1.0.0")
    m = run_stage("manifest", cfg, None)
    folder = Path(m["path"]).parent
    assert m["root"] == "../../../tokens" and m["totals"]["documents"] == 24
    assert main(["verify", m["path"]]) == 0  # the Croissant at the corpus root is a sidecar, not an extra file
    pub = tmp_path / "published"
    assert main(["publish", m["path"], "--to", str(pub)]) == 0
    # Every Croissant written reads back every record it declares, where it stands; the one beside the local
    # manifest declares none (its data lies outside its folder) and lists the files.
    for path in (folder, tmp_path / "tokens", pub / "t" / "1.0.0"):
        ds = load_clean(path / "croissant.json", caplog)
        if path == folder and not ds.metadata.record_sets:
            assert len(ds.metadata.file_objects) == len(m["files"]) and not ds.metadata.file_sets
            continue
        assert len(records(ds, "documents")) == m["totals"]["documents"], path
        assert len(records(ds, "token_index")) == sum(f["rows"] for f in files_of(m, "token_index")), path


def files_of(manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [f for f in manifest["files"] if f["kind"] == kind]


def test_relative_root_resolves_from_the_manifest_folder(tmp_path, caplog):
    _, meta, manifest, docs = local_layout(tmp_path)
    path = meta / "croissant.json"
    write_croissant(manifest, meta)
    ds = load_clean(path, caplog)
    for obj in ds.metadata.file_objects:
        assert obj.content_url.startswith("../../../tokens/")
        local = meta / obj.content_url
        assert hashlib.sha256(local.read_bytes()).hexdigest() == obj.sha256
    doc = json.loads(path.read_text())
    probe = meta / "probe.json"
    probe.write_text(json.dumps(with_probe(doc, "documents/part-00001.parquet")))
    urls = [r["url"] for r in records(mlc.Dataset(jsonld=str(probe)), "probe")]
    assert urls == [d["url"] for d in docs[3:]]


def test_mlcroissant_rejects_a_wrong_sha256(published, tmp_path):
    folder, manifest, _ = published
    bad = copy.deepcopy(manifest)
    bad["files"][0]["sha256"] = "0" * 64
    probe = folder / "probe-bad.json"
    probe.write_text(json.dumps(with_probe(croissant(bad), bad["files"][0]["path"])))
    try:
        with pytest.raises(mlc.GenerationError) as err:
            list(mlc.Dataset(jsonld=str(probe)).records("probe"))
    finally:
        probe.unlink()
    assert "Hash of downloaded file" in str(err.value.__cause__)


def test_write_is_atomic_and_deterministic(published, tmp_path):
    _, manifest, _ = published
    first = write_croissant(manifest, tmp_path).read_bytes()
    assert write_croissant(manifest, tmp_path).read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["croissant.json"]


@pytest.mark.parametrize(
    ("arrow", "want"),
    [
        ("string", ("sc:Text", False)),
        ("large_string", ("sc:Text", False)),
        ("int32", ("sc:Integer", False)),
        ("uint16", ("sc:Integer", False)),
        ("float", ("sc:Float", False)),
        ("double", ("sc:Float", False)),
        ("bool", ("sc:Boolean", False)),
        ("timestamp[us, tz=UTC]", ("sc:DateTime", False)),
        ("date32[day]", ("sc:Date", False)),
        ("list<item: string>", ("sc:Text", True)),
        ("large_list<item: int64>", ("sc:Integer", True)),
    ],
)
def test_arrow_types_map_to_croissant_data_types(arrow, want):
    assert data_type(arrow) == want


@pytest.mark.parametrize("arrow", ["struct<a: int64>", "list<item: list<item: string>>", "binary"])
def test_unmapped_arrow_types_fail_with_the_type_named(arrow):
    with pytest.raises(PipelineError, match="no"):
        data_type(arrow)


def test_content_urls_and_globs():
    m = {"root": "../../runs/demo/tokens/", "files": []}
    assert content_url(m, "train/tokens-00000.arrow") == "../../runs/demo/tokens/train/tokens-00000.arrow"
    assert content_url({"root": "."}, "./documents/a.parquet") == "documents/a.parquet"

    # the widest glob that takes no file of another group: folder, then name prefix, then the exact paths
    def group_globs(*paths: str) -> list[str]:
        files = [{"path": p, "kind": "a" if i == 0 else "b"} for i, p in enumerate(paths)]
        return includes({"root": ".", "files": files}, files[:1])

    assert group_globs("index/train-00000.parquet") == ["index/*.parquet"]
    assert group_globs("index/train-00000.parquet", "index/val-00000.parquet") == ["index/train-*.parquet"]
    assert group_globs("index/train-00000.parquet", "train/tokens-00000.arrow") == ["index/*.parquet"]
    assert group_globs("a/0.parquet", "a/1.parquet") == ["a/0.parquet"]
