import numpy as np
import pyarrow as pa
import pytest

from pipeline.dataset import read_parquet, shard_name, write_parquet
from pipeline.errors import PipelineError
from pipeline.resources import tokenizer, vocab_sha256
from pipeline.stage import ShardTask
from pipeline.token_format import check_metadata, mmap_tokens, read_metadata
from pipeline.tokenize import TokenizeConfig, split_of, tokenize_shard
from pipeline.urls import url_hash


def test_vocabulary_is_gpt2():
    enc = tokenizer("gpt2")
    assert enc.encode("hello world") == [31373, 995] and enc.eot_token == 50256


def test_split_by_hash_is_stable_and_proportional():
    ids = [url_hash(f"http://example.com/{i}") for i in range(20000)]
    val = [i for i in ids if split_of(i, 0.1) == "val"]
    assert 1700 < len(val) < 2300
    assert all(split_of(i, 0.2) == "val" for i in val)  # a bigger val fraction only adds documents


def test_shards_round_trip_with_eot_after_each_document(tmp_path):
    texts = ["First document.", "Second one, a little longer.", "Third."]
    ids = ["00" + "1" * 14, "ff" + "2" * 14, "10" + "3" * 14]  # first and last go to val at val_fraction=0.1
    src = tmp_path / "in" / "part-00000.parquet"
    write_parquet(pa.table({"url_hash": ids, "url": ["u1", "u2", "u3"], "text": texts}), src)
    cfg = TokenizeConfig(input=str(src.parent), output=str(tmp_path / "tok"), val_fraction=0.1)
    rec = tokenize_shard(ShardTask(shard_name(0), [str(src)], cfg.output, cfg))
    enc = tokenizer("gpt2")
    train = mmap_tokens(tmp_path / "tok" / "train" / "part-00000.arrow")
    val = mmap_tokens(tmp_path / "tok" / "val" / "part-00000.arrow")
    assert not train.flags.owndata and train.dtype == np.uint16  # memory-mapped, not copied
    assert enc.decode(train.tolist()) == "Second one, a little longer.<|endoftext|>"
    assert enc.decode(val.tolist()) == "First document.<|endoftext|>Third.<|endoftext|>"
    docs = read_parquet(tmp_path / "tok" / "docs" / "part-00000.parquet").to_pylist()
    third = [d for d in docs if d["url"] == "u3"][0]
    assert (
        enc.decode(val[third["token_start"] : third["token_start"] + third["n_tokens"]].tolist())
        == "Third.<|endoftext|>"
    )
    assert rec["tokens"] == {"train": len(train), "val": len(val)}
    meta = read_metadata(tmp_path / "tok" / "train" / "part-00000.arrow")
    assert meta["vocab_sha256"] == vocab_sha256("gpt2") and meta["eot_position"] == "after"
    check_metadata("x", meta, "gpt2", vocab_sha256("gpt2"))
    with pytest.raises(PipelineError, match="tokenized with 'gpt2' but the model expects 'cl100k_base'"):
        check_metadata("x", meta, "cl100k_base", None)
    with pytest.raises(PipelineError, match="format version 0"):
        check_metadata("x", meta | {"format_version": "0"}, "gpt2", None)


@pytest.mark.parametrize("threads", [1, 3])
def test_tokens_are_encode_ordinary_of_real_text(tmp_path, shared, threads):
    import json

    pages = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    texts = [p["articleBody"] for p in pages.values()][:40] + ["a literal <|endoftext|> is text here", ""]
    src = tmp_path / "in" / "part-00000.parquet"
    ids = [f"{i:016x}" for i in range(len(texts))]
    write_parquet(pa.table({"url_hash": ids, "url": ids, "text": texts}), src)
    cfg = TokenizeConfig(input=str(src.parent), output=str(tmp_path / "tok"), val_fraction=0.0, threads=threads)
    tokenize_shard(ShardTask(shard_name(0), [str(src)], cfg.output, cfg))
    enc = tokenizer("gpt2")
    expected = [tok for t in texts for tok in enc.encode_ordinary(t) + [enc.eot_token]]
    assert mmap_tokens(tmp_path / "tok" / "train" / "part-00000.arrow").tolist() == expected
