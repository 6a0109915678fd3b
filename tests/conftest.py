from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

# tiktoken cannot download GPT-2's files here; the Makefile sets this too, this covers a bare `pytest`.
if not os.environ.get("TIKTOKEN_CACHE_DIR") and (SHARED / "gpt2" / "tiktoken-cache").is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED / "gpt2" / "tiktoken-cache")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Object-storage tests talk to moto's S3 server on loopback, which takes any credentials. Set here, before any test
# starts Ray, so Ray's workers inherit them too; and never ask a cloud metadata service for real ones.
for key, value in (
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(key, value)
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared test data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def ray_runner():
    """One embedded local Ray for the whole session (starting Ray costs seconds)."""
    from pipeline.core.runner import RayRunner

    runner = RayRunner(num_cpus=2)
    yield runner
    runner.close()


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory) -> Path:
    from pipeline.ops.demo_world import generate

    out = tmp_path_factory.mktemp("world")
    generate(out, articles=60, seed=3)
    return out


@pytest.fixture()
def replay(demo_world):
    from pipeline.web.replay import ReplayServer, warc_files_in

    with ReplayServer(warc_files_in([demo_world / "web"])) as url:
        yield url


@pytest.fixture(scope="session")
def finished_dataset():
    """Write tables as the shards of a finished dataset (as if `stage` had written them): parquet + _stage.json."""
    from pipeline.core.dataset import file_entry, shard_name, write_json, write_parquet

    def make(path: Path, tables: list, stage: str = "dedup") -> Path:
        shards = []
        for i, table in enumerate(tables):
            f = path / f"{shard_name(i)}.parquet"
            write_parquet(table, f)
            shards.append({"name": shard_name(i), "files": [file_entry(f, path)], "rows_out": table.num_rows})
        fingerprint = "-".join(s["files"][0]["sha256"][:8] for s in shards)
        rows = sum(t.num_rows for t in tables)
        manifest = {"stage": stage, "output_fingerprint": fingerprint, "inputs": {}, "shards": shards, "config": {}}
        manifest |= {"code_version": "test", "rows_in": rows, "rows_out": rows, "drops": {}, "wall_time_s": 0.0}
        write_json(path / "_stage.json", manifest)
        return path

    return make


@pytest.fixture(scope="session")
def shakespeare_tokens(tmp_path_factory, shared):
    """Tiny Shakespeare, cut into 'documents' in two JSON Lines files, brought in with `pipeline ingest` and
    tokenized by the real tokenize stage: a corpus that is not from Reddit, as a user would bring one."""
    import json

    from pipeline import chain
    from pipeline.ops.ingest import main as ingest

    root = tmp_path_factory.mktemp("shakespeare")
    text = next((shared / "text").glob("*.txt")).read_text()
    paras = [p for p in text.split("\n\n") if p.strip()]
    chunks = ["\n\n".join(paras[i : i + 40]) for i in range(0, len(paras), 40)]
    files = []
    for s in range(2):
        files.append(root / f"plays-{s}.jsonl")
        lines = [json.dumps({"id": f"{s}/{i}", "text": c, "part": s}) for i, c in enumerate(chunks[s::2])]
        files[-1].write_text("\n".join(lines) + "\n")
    args = [*map(str, files), "--root", str(root), "--at", "tokenize", "--id-column", "id", "--runner", "local"]
    args += ["--set", "tokenize.val_fraction=0.1", "--set", "tokenize.shard_tokens=100000"]
    assert ingest(args) == 0
    return Path(chain.corpus_folder(str(root)))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3():
    """moto's S3 server on loopback; yields (URI of an empty bucket, its Location)."""
    import logging

    from moto.server import ThreadedMotoServer

    from pipeline.core.storage import locate

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        base = f"s3://corpora?endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
        locate(base + "&allow_bucket_creation=true").fs.create_dir("corpora")
        yield base, locate(base)
    finally:
        server.stop()
