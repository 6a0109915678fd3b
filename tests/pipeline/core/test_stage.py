"""The dataset-directory contract: atomic shards, resume after a kill, reuse, refusal of stale or partial data."""

import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline.core.dataset import STAGE_FILE, Dataset, file_entry, shard_name, write_json, write_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.core.stage import StageRun
from pipeline.stages.annotate import AnnotateConfig, annotate_table
from pipeline.stages.filter import FilterConfig
from pipeline.stages.filter import run as filter_run
from pipeline.stages.tokenize import TokenizeConfig
from pipeline.stages.tokenize import run as tokenize_run
from pipeline.text.urls import url_hash

ROOT = Path(__file__).resolve().parents[3]


def make_docs(path: Path, shared: Path, shards: int = 30, per_shard: int = 40) -> Path:
    """A finished 'extract' dataset of real sentences in several languages."""
    langs = ["en", "en", "de", "fr", "en", "es"]
    pools = {
        lang: gzip.decompress((shared / "langid" / "sentences" / f"{lang}.txt.gz").read_bytes()).decode().splitlines()
        for lang in set(langs)
    }
    records = []
    for s in range(shards):
        rows = []
        for i in range(per_shard):
            lang = langs[(s + i) % len(langs)]
            start = (s * per_shard + i) % (len(pools[lang]) - 12)
            url = f"http://site{s}.example.com/{i}"
            rows.append(
                {
                    "url_hash": url_hash(url),
                    "url": url,
                    "final_url": url,
                    "domain": f"site{s}.example.com",
                    "score": i,
                    "n_submissions": 1,
                    "first_created_utc": 1,
                    "submission_ids": ["x"],
                    "subreddits": ["s"],
                    "text": " ".join(pools[lang][start : start + 12]),
                }
            )
        table = pa.Table.from_pylist([r | {"html_lang": None} for r in rows])
        p = path / f"{shard_name(s)}.parquet"
        write_parquet(annotate_table(table, AnnotateConfig(input="-", output="-")), p)  # as annotate writes it
        records.append(
            {
                "name": shard_name(s),
                "rows_in": per_shard,
                "rows_out": per_shard,
                "drops": {},
                "files": [file_entry(p, path)],
            }
        )
    write_json(
        path / STAGE_FILE,
        {
            "stage": "annotate",
            "shards": records,
            "output_fingerprint": "docs-v1",
            "inputs": {},
            "drops": {},
            "rows_in": 0,
            "rows_out": 0,
        },
    )
    return path


def filter_cmd(src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pipeline",
        "filter",
        "--runner",
        "local",
        "--set",
        f"input={src}",
        "--set",
        f"output={out}",
    ]


def test_killed_stage_resumes_to_identical_output(tmp_path, shared):
    src = make_docs(tmp_path / "docs", shared)
    ref = filter_run(FilterConfig(input=str(src), output=str(tmp_path / "ref")), LocalRunner())

    out = tmp_path / "killed"
    proc = subprocess.Popen(filter_cmd(src, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / "_shards").glob("*.json")) and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, no finally blocks: as a lost machine
    proc.wait()
    done = len(list((out / "_shards").glob("*.json")))
    assert 0 < done < 30, "the kill must land part-way through the stage"
    assert not (out / STAGE_FILE).exists()
    # The next stage refuses the half-written dataset instead of reading it as if it were complete.
    with pytest.raises(PipelineError, match="incomplete"):
        tokenize_run(TokenizeConfig(input=str(out), output=str(tmp_path / "tok")), LocalRunner())

    rerun = subprocess.run(filter_cmd(src, out), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "already done, resuming" in rerun.stdout
    m = Dataset(out).manifest()
    assert m["output_fingerprint"] == ref["output_fingerprint"]  # byte-identical shards
    assert m["resumed_shards"] == done and m["rows_out"] == ref["rows_out"] and m["drops"] == ref["drops"]
    assert not [p for p in out.rglob(".*tmp-*")]


def test_same_input_and_config_give_identical_bytes_and_are_reused(tmp_path, shared):
    src = make_docs(tmp_path / "docs", shared, shards=3, per_shard=10)
    a = filter_run(FilterConfig(input=str(src), output=str(tmp_path / "a")), LocalRunner())
    b = filter_run(FilterConfig(input=str(src), output=str(tmp_path / "b")), LocalRunner())
    assert a["output_fingerprint"] == b["output_fingerprint"]
    for fa, fb in zip(sorted((tmp_path / "a").glob("*.parquet")), sorted((tmp_path / "b").glob("*.parquet"))):
        assert fa.read_bytes() == fb.read_bytes()
    again = filter_run(FilterConfig(input=str(src), output=str(tmp_path / "a")), LocalRunner())
    assert again.get("reused") is True


def test_other_config_into_the_same_output_is_refused(tmp_path, shared):
    src = make_docs(tmp_path / "docs", shared, shards=2, per_shard=5)
    filter_run(FilterConfig(input=str(src), output=str(tmp_path / "a")), LocalRunner())
    with pytest.raises(PipelineError, match="different config or input; choose another output or pass --overwrite"):
        filter_run(FilterConfig(input=str(src), output=str(tmp_path / "a"), min_tokens=5), LocalRunner())
    m = filter_run(
        FilterConfig(input=str(src), output=str(tmp_path / "a"), min_tokens=5), LocalRunner(), overwrite=True
    )
    assert m["config"]["min_tokens"] == 5


def test_foreign_directory_and_missing_input_are_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(PipelineError, match="was not written by this pipeline"):
        StageRun("filter", FilterConfig(input="i", output="o"), tmp_path / "mine", {}, LocalRunner())
    with pytest.raises(PipelineError, match="no such dataset directory"):
        filter_run(FilterConfig(input=str(tmp_path / "nope"), output=str(tmp_path / "o")), LocalRunner())


def test_deleted_shard_file_is_named(tmp_path, shared):
    src = make_docs(tmp_path / "docs", shared, shards=2, per_shard=5)
    (src / "part-00001.parquet").unlink()
    with pytest.raises(PipelineError, match="shard file part-00001.parquet is missing"):
        filter_run(FilterConfig(input=str(src), output=str(tmp_path / "o")), LocalRunner())


def test_side_outputs_are_not_shards_for_the_next_stage(tmp_path, shared):
    src = make_docs(tmp_path / "docs", shared, shards=2, per_shard=12)
    out = tmp_path / "filtered"
    filter_run(FilterConfig(input=str(src), output=str(out), keep_rejected=True), LocalRunner())
    shards = Dataset(out).shard_files()
    assert [p.parent for p in shards] == [out, out]
    assert len(Dataset(out).shard_files(subdir="rejected")) == 2  # asked for by name only
