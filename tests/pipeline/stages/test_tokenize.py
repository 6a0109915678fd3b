import json

import numpy as np
import pyarrow as pa
import pytest

from pipeline.core.dataset import Dataset, read_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.stages.tokenize import Piece, TokenizeConfig, layout, split_of
from pipeline.stages.tokenize import run as tokenize_run
from pipeline.text.token_format import check_metadata, index_of, mmap_tokens, read_metadata
from pipeline.text.urls import url_hash
from pipeline.text.vocab import tokenizer, vocab_sha256


def test_vocabulary_is_gpt2():
    enc = tokenizer("gpt2")
    assert enc.encode("hello world") == [31373, 995] and enc.eot_token == 50256


def test_split_by_hash_is_stable_and_proportional():
    ids = [url_hash(f"http://example.com/{i}") for i in range(20000)]
    val = [i for i in ids if split_of(i, 0.1) == "val"]
    assert 1700 < len(val) < 2300
    assert all(split_of(i, 0.2) == "val" for i in val)  # a bigger val fraction only adds documents


def test_layout_cuts_at_document_boundaries_near_the_target():
    rng = np.random.default_rng(0)
    encoded = []
    for s in range(5):
        n = int(rng.integers(0, 40))
        lengths = rng.integers(1, 300, size=n)
        t = pa.table({"row": np.arange(n), "n_tokens": lengths})
        encoded.append((f"part-{s:05d}", {"train": t}))
    target = 1000
    shards = layout(encoded, "train", target)
    sizes = [sum(p.token_hi - p.token_lo for p in shard) for shard in shards]
    assert all(target <= n < target + 300 for n in sizes[:-1]) and 0 < sizes[-1] < target + 300
    pieces = [p for shard in shards for p in shard]
    # every document exactly once, in input order, and the token ranges tile each encoded shard
    assert [(p.source, r) for p in pieces for r in p.rows] == [
        (name, r) for name, by in encoded for r in by["train"].column("row").to_pylist()
    ]
    for name, by in encoded:
        mine = [p for p in pieces if p.source == name]
        ends = [p.token_hi for p in mine]
        assert [p.token_lo for p in mine] == [0] + ends[:-1]
        assert all(p.lengths for p in mine)
        assert (ends[-1] if ends else 0) == sum(by["train"].column("n_tokens").to_pylist())
    assert layout(encoded, "train", 10**9) == [pieces_of_all(encoded)]


def pieces_of_all(encoded):
    out = []
    for name, by in encoded:
        lengths = by["train"].column("n_tokens").to_pylist()
        if lengths:
            rows = by["train"].column("row").to_pylist()
            out.append(Piece(name, 0, sum(lengths), rows, lengths))
    return out


def corpus(shared, n_shards=3, per_shard=30):
    pages = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    texts = ["a literal <|endoftext|> is text here", ""] + [p["articleBody"] for p in pages.values()]
    tables = []
    for s in range(n_shards):
        part = texts[s * per_shard : (s + 1) * per_shard]
        urls = [f"http://example.com/{s}/{i}" for i in range(len(part))]
        tables.append(
            pa.table(
                {
                    "url_hash": [url_hash(u) for u in urls],
                    "url": urls,
                    "domain": ["example.com"] * len(part),
                    "score": list(range(len(part))),
                    "subreddits": [["news"]] * len(part),
                    "text": part,
                }
            )
        )
    return tables


@pytest.fixture()
def tokenized(tmp_path, shared, finished_dataset):
    src = finished_dataset(tmp_path / "deduped", corpus(shared))
    cfg = TokenizeConfig(input=str(src), output=str(tmp_path / "tok"), val_fraction=0.2, shard_tokens=5000)
    return tokenize_run(cfg, LocalRunner()), cfg, src


@pytest.mark.parametrize("threads", [1, 3])
def test_token_shards_are_encode_ordinary_with_eot_after_each_document(tmp_path, shared, finished_dataset, threads):
    src = finished_dataset(tmp_path / "deduped", corpus(shared))
    cfg = TokenizeConfig(
        input=str(src), output=str(tmp_path / "tok"), val_fraction=0.2, shard_tokens=5000, threads=threads
    )
    m = tokenize_run(cfg, LocalRunner())
    enc = tokenizer("gpt2")
    docs = [read_parquet(p) for p in Dataset(src).shard_files()]
    for split in ("train", "val"):
        expected = [
            t
            for d in docs
            for h, text in zip(d.column("url_hash").to_pylist(), d.column("text").to_pylist())
            if split_of(h, 0.2) == split
            for t in enc.encode_ordinary(text) + [enc.eot_token]
        ]
        files = Dataset(cfg.output).shard_files(".arrow", subdir=split)
        got = np.concatenate([mmap_tokens(f) for f in files])
        assert got.tolist() == expected
        assert m["tokens"][split] == len(expected) and m["token_shards"][split] == len(files)
    assert m["token_shards"]["train"] >= 3 and m["rows_out"] == sum(d.num_rows for d in docs)
    assert not (tmp_path / "tok" / "_work").exists()


def test_shards_are_memory_mapped_with_metadata_and_an_index_back_to_documents(tokenized):
    m, cfg, _ = tokenized
    out = Dataset(cfg.output)
    enc = tokenizer("gpt2")
    for shard in out.shard_files(".arrow", subdir="train"):
        before = pa.total_allocated_bytes()
        tokens = mmap_tokens(shard)
        assert not tokens.flags.owndata and tokens.dtype == np.uint16
        # a view of the mapped file: Arrow allocated nothing for it (a read into memory would allocate 2 B/token)
        assert pa.total_allocated_bytes() - before < 1024 < tokens.nbytes
        meta = read_metadata(shard)
        check_metadata(shard, meta, "gpt2", vocab_sha256("gpt2"))
        assert meta["eot_position"] == "after" and meta["split"] == "train"
        index = read_parquet(index_of(shard)).to_pylist()
        assert int(meta["n_docs"]) == len(index) and sum(d["n_tokens"] for d in index) == len(tokens)
        for d in index[:5] + index[-2:]:
            row = read_parquet(out.path / d["documents_file"]).to_pylist()[d["documents_row"]]
            assert row["url_hash"] == d["url_hash"] and row["split"] == "train"
            piece = tokens[d["token_start"] : d["token_start"] + d["n_tokens"]].tolist()
            assert enc.decode(piece) == row["text"] + "<|endoftext|>"
    with pytest.raises(PipelineError, match="tokenized with 'gpt2' but the model expects 'cl100k_base'"):
        check_metadata("x", read_metadata(shard), "cl100k_base", None)
    with pytest.raises(PipelineError, match="format version 0"):
        check_metadata("x", read_metadata(shard) | {"format_version": "0"}, "gpt2", None)
    with pytest.raises(PipelineError, match="vocabulary hash differs"):  # same name, other BPE files
        check_metadata("x", read_metadata(shard) | {"vocab_sha256": "0" * 64}, "gpt2", vocab_sha256("gpt2"))
    with pytest.raises(PipelineError, match="dtype 'uint32', expected uint16"):
        check_metadata("x", read_metadata(shard) | {"dtype": "uint32"}, "gpt2", None)
    with pytest.raises(PipelineError, match="EOT 'before' each document"):
        check_metadata("x", read_metadata(shard) | {"eot_position": "before"}, "gpt2", None)
    with pytest.raises(PipelineError, match="EOT token 50256, the model's gpt2 uses 0"):
        check_metadata("x", read_metadata(shard), "gpt2", None, eot_token=0)
    check_metadata("x", read_metadata(shard), "gpt2", vocab_sha256("gpt2"), eot_token=enc.eot_token)


def test_documents_open_in_datasets_pandas_and_duckdb(tokenized):
    import datasets
    import duckdb
    import pandas as pd

    m, cfg, src = tokenized
    files = [str(p) for p in Dataset(cfg.output).shard_files(".parquet", subdir="documents")]
    n = sum(read_parquet(p).num_rows for p in Dataset(src).shard_files())
    assert len(files) == 3 and m["rows_out"] == n
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert ds.num_rows == n and set(ds.column_names) >= {"url", "text", "split", "subreddits", "score"}
    assert ds[0]["subreddits"] == ["news"]
    frame = pd.read_parquet(cfg.output + "/documents")
    assert len(frame) == n and (frame["split"] == "val").sum() == m["docs"]["val"]
    (count,) = duckdb.sql(f"select count(*) from read_parquet('{cfg.output}/documents/*.parquet')").fetchone()
    assert count == n


def test_resumes_after_a_crash_while_packing(tmp_path, shared, finished_dataset, monkeypatch):
    import pipeline.stages.tokenize as tok

    src = finished_dataset(tmp_path / "deduped", corpus(shared))
    clean = tokenize_run(
        TokenizeConfig(input=str(src), output=str(tmp_path / "clean"), val_fraction=0.2, shard_tokens=5000),
        LocalRunner(),
    )
    cfg = TokenizeConfig(input=str(src), output=str(tmp_path / "tok"), val_fraction=0.2, shard_tokens=5000)
    real, calls = tok.pack_shard, []

    def dies_on_the_third(task):
        calls.append(task.name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a killed driver
        return real(task)

    monkeypatch.setattr(tok, "pack_shard", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        tokenize_run(cfg, LocalRunner())
    assert not Dataset(cfg.output).is_complete()
    monkeypatch.setattr(tok, "pack_shard", real)
    again = tokenize_run(cfg, LocalRunner())
    assert again["resumed_shards"] == 3 + 2  # every encoded shard and the two packed ones
    assert again["output_fingerprint"] == clean["output_fingerprint"]
    assert tokenize_run(cfg, LocalRunner()).get("reused")
