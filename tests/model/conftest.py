import pyarrow as pa
import pytest

from pipeline.runner import LocalRunner
from pipeline.tokenize import TokenizeConfig
from pipeline.tokenize import run as tokenize_run
from pipeline.urls import url_hash


@pytest.fixture(scope="session")
def shakespeare_tokens(tmp_path_factory, shared, finished_dataset):
    """Tiny Shakespeare, cut into 'documents' and tokenized by the real tokenize stage."""
    root = tmp_path_factory.mktemp("shakespeare")
    text = next((shared / "text").glob("*.txt")).read_text()
    paras = [p for p in text.split("\n\n") if p.strip()]
    chunks = ["\n\n".join(paras[i : i + 40]) for i in range(0, len(paras), 40)]
    tables = []
    for s in range(2):
        part = chunks[s::2]
        urls = [f"http://shakespeare.example/{s}/{i}" for i in range(len(part))]
        tables.append(pa.table({"url_hash": [url_hash(u) for u in urls], "url": urls, "text": part}))
    finished_dataset(root / "docs", tables)
    tokenize_run(
        TokenizeConfig(input=str(root / "docs"), output=str(root / "tokens"), val_fraction=0.1, shard_tokens=100_000),
        LocalRunner(),
    )
    return root / "tokens"
