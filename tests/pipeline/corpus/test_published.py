"""verify, publish and download, on the local filesystem and on an S3-compatible server (moto) on loopback."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from model.data import TokenData
from pipeline.chain import run_stage
from pipeline.cli import main
from pipeline.core.dataset import read_json
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.corpus.published import download, open_manifest, publish, verify
from pipeline.stages.manifest import ManifestConfig
from pipeline.stages.tokenize import TokenizeConfig
from pipeline.text.token_format import mmap_tokens
from pipeline.text.urls import url_hash


@pytest.fixture()
def corpus(tmp_path, shared, finished_dataset) -> Path:
    """A real tokenize output (3 document shards, several token shards) and its manifest."""
    pages = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    texts = [p["articleBody"] for p in pages.values()][:60]
    tables = []
    for s in range(3):
        urls = [f"http://news{s}.example.com/{i}" for i in range(20)]
        tables.append(
            pa.table(
                {
                    "url_hash": [url_hash(u) for u in urls],
                    "url": urls,
                    "domain": [f"news{s}.example.com"] * 20,
                    "text": texts[s * 20 : (s + 1) * 20],
                }
            )
        )
    src = finished_dataset(tmp_path / "deduped", tables)
    tok = TokenizeConfig(input=str(src), output=str(tmp_path / "tokens"), val_fraction=0.2, shard_tokens=6000)
    run_stage("tokenize", tok, LocalRunner())
    m = run_stage(
        "manifest",
        ManifestConfig(input=tok.output, output=str(tmp_path / "manifests"), name="t", version="1.0.0"),
        None,
    )
    return Path(m["path"])


def flip_byte(loc, offset: int = 100) -> None:
    with loc.fs.open_input_stream(loc.path, compression=None) as f:
        data = bytearray(f.read())
    data[offset % len(data)] ^= 0xFF
    with loc.fs.open_output_stream(loc.path, compression=None) as f:
        f.write(bytes(data))


def test_manifest_lists_every_file_and_verify_finds_each_kind_of_damage(corpus, capsys):
    m = read_json(corpus)
    kinds = {f["kind"] for f in m["files"]}
    assert kinds == {"documents", "tokens", "token_index"}
    assert m["totals"]["files"] == len(m["files"]) and m["root"].startswith("..")
    assert sum(f["tokens"] for f in m["files"] if f["kind"] == "tokens") == sum(m["totals"]["tokens"].values())
    assert m["tokenizer"]["eot_token"] == 50256 and len(m["tokenizer"]["vocab_sha256"]) == 64
    assert {c["name"] for c in m["documents_schema"]} >= {"url", "text", "split"}
    assert m["domains"] == {"news0.example.com": 20, "news1.example.com": 20, "news2.example.com": 20}
    assert (corpus.parent / "croissant.json").is_file() and (corpus.parent / "README.md").is_file()
    assert verify(corpus).clean and main(["verify", str(corpus)]) == 0

    corpus_ = open_manifest(corpus)
    tokens = corpus_.files("tokens", "train")
    flip_byte(corpus_.location(tokens[0]))  # same size, other bytes
    truncated = corpus_.location(tokens[1])
    Path(truncated.path).write_bytes(Path(truncated.path).read_bytes()[:-10])
    Path(corpus_.location(corpus_.files("documents")[0]).path).unlink()
    (Path(corpus_.root.path) / "train" / "stray.arrow").write_bytes(b"not listed")
    report = verify(corpus)
    assert [p for p, _ in report.corrupt] == [tokens[0]["path"], tokens[1]["path"]]
    assert "sha256" in report.corrupt[0][1] and "bytes" in report.corrupt[1][1]
    assert report.missing == ["documents/part-00000.parquet"] and report.extra == ["train/stray.arrow"]
    capsys.readouterr()
    assert main(["verify", str(corpus)]) == 1
    out = capsys.readouterr().out
    assert f"corrupt  {tokens[0]['path']}" in out and "missing  documents/part-00000.parquet" in out
    assert "extra    train/stray.arrow" in out and "2 corrupt" in out
    with pytest.raises(PipelineError, match="part-00000.parquet: missing"):
        publish(corpus, str(corpus.parent / "published"))  # a damaged corpus is not published


def test_publish_to_a_folder_then_train_from_the_published_manifest(corpus, tmp_path):
    uri = publish(corpus, f"file://{tmp_path / 'pub'}")
    assert uri == str(tmp_path / "pub" / "t" / "1.0.0" / "manifest.json")
    assert verify(uri).clean
    published = read_json(uri)
    assert published["root"] == "." and "published" not in published
    assert [p["uri"] for p in read_json(corpus)["published"]] == [uri]
    assert {p.name for p in Path(uri).parent.iterdir()} >= {"croissant.json", "README.md", "funnel.png", "train"}
    local = TokenData(corpus, "train")
    again = TokenData(uri, "train")
    assert again.n_tokens == local.n_tokens
    assert all(np.array_equal(a, b) for a, b in zip(local.arrays, again.arrays))
    assert publish(corpus, f"file://{tmp_path / 'pub'}") == uri  # the same version again: the same files


def test_publish_to_s3_verify_there_download_and_detect_a_corrupted_object(corpus, s3, tmp_path, capsys):
    base, bucket = s3
    uri = publish(corpus, base)
    assert uri.startswith("s3://corpora/t/1.0.0/manifest.json?endpoint_override=")
    listed = bucket.fs.get_file_info(pafs.FileSelector("corpora/t/1.0.0", recursive=True))
    names = {posix.path.split("corpora/t/1.0.0/")[1] for posix in listed if posix.type == pafs.FileType.File}
    assert {f["path"] for f in read_json(corpus)["files"]} | {"manifest.json", "croissant.json", "README.md"} <= names
    assert verify(uri).clean and main(["verify", uri]) == 0

    local = download(uri, tmp_path / "cache")
    assert local == tmp_path / "cache" / "t" / "1.0.0" / "manifest.json" and verify(local).clean
    data = TokenData(local, "val")
    first = open_manifest(local).files("tokens", "val")[0]
    assert np.array_equal(data.arrays[0], mmap_tokens(local.parent / first["path"]))

    victim = open_manifest(uri).files("documents")[1]
    flip_byte(bucket.join("t", "1.0.0", victim["path"]), offset=500)
    report = verify(uri)
    assert [p for p, _ in report.corrupt] == [victim["path"]] and not report.missing
    assert main(["verify", uri]) == 1
    assert f"corrupt  {victim['path']}" in capsys.readouterr().out
    with pytest.raises(PipelineError, match="sha256 differs"):
        download(uri, tmp_path / "cache2")

    # An object gone and one that the manifest does not name: both reported from the store.
    gone = open_manifest(uri).files("tokens", "train")[0]["path"]
    bucket.fs.delete_file(bucket.join("t", "1.0.0", gone).path)
    with bucket.fs.open_output_stream(bucket.join("t", "1.0.0", "train", "stray.arrow").path) as f:
        f.write(b"not part of the corpus")
    report = verify(uri)
    assert report.missing == [gone] and report.extra == ["train/stray.arrow"], report.lines()


def test_the_trainer_reads_a_published_corpus_from_its_manifest_uri(corpus, s3, tmp_path, monkeypatch):
    from model.train import local_data

    base, _ = s3
    uri = publish(corpus, base)
    monkeypatch.chdir(tmp_path)  # local_data downloads under runs/corpora of the working directory
    data = local_data(uri)
    assert Path(data) == (tmp_path / "runs" / "corpora" / "t" / "1.0.0" / "manifest.json").resolve()
    remote, here = TokenData(data, "train"), TokenData(corpus, "train")
    assert remote.n_tokens == here.n_tokens
    assert all(np.array_equal(a, b) for a, b in zip(remote.arrays, here.arrays))
