import json

import numpy as np
import pyarrow as pa
import pytest

from model.data import TokenData
from model.train import TrainConfig, lr_at, run
from pipeline.errors import PipelineError
from pipeline.runner import LocalRunner
from pipeline.tokenize import TokenizeConfig
from pipeline.tokenize import run as tokenize_run
from pipeline.urls import url_hash


@pytest.fixture(scope="module")
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


def cfg(tokens, out, **kw) -> TrainConfig:
    base = dict(
        data=str(tokens),
        out_dir=str(out),
        model="tiny",
        mode="local",
        batch_size=4,
        max_steps=12,
        lr=3e-3,
        warmup_steps=2,
        eval_interval=6,
        eval_iters=2,
        log_interval=1,
        sample_tokens=8,
        cpus_per_worker=2,
    )
    return TrainConfig(**(base | kw))


def losses(out) -> list[float]:
    return [
        r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "train"
    ]


def test_lr_schedule():
    c = TrainConfig(data="d", out_dir="o", lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, c) < lr_at(9, c) < 1.0
    assert lr_at(10, c) == pytest.approx(1.0) and lr_at(110, c) == pytest.approx(0.1)
    assert lr_at(60, c) == pytest.approx(0.55)


def test_token_data_windows(shakespeare_tokens):
    d = TokenData(shakespeare_tokens, "train")
    x, y = d.get_batch(3, 16, np.random.default_rng(0))
    assert x.shape == y.shape == (3, 16) and (x[:, 1:] == y[:, :-1]).all()
    x2, _ = d.get_batch(3, 16, np.random.default_rng(0))
    assert (x == x2).all()


def test_trains_and_resumes_exactly(shakespeare_tokens, tmp_path):
    full = run(cfg(shakespeare_tokens, tmp_path / "full"))
    assert full["steps"] == 12 and full["last_loss"] < full["first_loss"]
    # Stop after 6 steps (as a preemption after the step-6 checkpoint would), then resume to 12.
    stopped = run(cfg(shakespeare_tokens, tmp_path / "split", stop_at=6))
    assert stopped["stopped_at"] == 6 and not (tmp_path / "split" / "final.json").exists()
    resumed = run(cfg(shakespeare_tokens, tmp_path / "split"))
    assert resumed["val_loss"] == pytest.approx(full["val_loss"], abs=1e-6)
    a, b = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert len(a) == len(b) == 12
    assert np.allclose(a, b, atol=1e-6, rtol=0), (a, b)
    assert (tmp_path / "full" / "loss.png").stat().st_size > 1000


def test_wrong_tokenizer_is_explained(shakespeare_tokens):
    with pytest.raises(PipelineError, match="tokenized with 'gpt2' but the model expects 'r50k_base'"):
        TokenData(shakespeare_tokens, "train", tokenizer="r50k_base")
