"""A careless user's mistakes, through `python -m pipeline` in-process: each ends with exit status 2 and one line
that names the problem (no traceback), or, for the mistakes that used to pass without a word, a refusal."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pyarrow as pa
import pytest

from pipeline import chain
from pipeline.cli import main
from pipeline.text.urls import url_hash


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "shard/s]" not in ln and "s/shard]" not in ln]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def docs_table(n: int = 3) -> pa.Table:
    """Documents in the contract extract (and ingest) writes, with annotate's columns."""
    from pipeline.stages.ingest import CONTRACT

    text = "A paragraph of plain English words, long enough to count as a document for every stage here. " * 8
    rows: list[dict[str, object]] = []
    for i in range(n):
        url = f"http://site{i}.example/page"
        rows.append({"url_hash": url_hash(url), "url": url, "final_url": url, "domain": f"site{i}.example",
                     "score": 3, "n_submissions": 1, "first_created_utc": 1_400_000_000 + i,
                     "submission_ids": [], "subreddits": [], "text": f"{text} {i}", "html_lang": "en",
                     "source": None, "source_row": i})  # fmt: skip
    docs = pa.Table.from_pylist(rows, schema=CONTRACT)
    docs = docs.append_column("lang", pa.array(["en"] * n)).append_column("lang_score", pa.array([0.95] * n))
    return docs.append_column("n_tokens", pa.array([300] * n))


def run_args(stage: str, src: Path | str, out: Path | str) -> list[str]:
    return [stage, "--runner", "local", "--set", f"input={src}", "--set", f"output={out}"]


# --- config files ---------------------------------------------------------------------------------------------


def test_a_misspelt_table_is_refused_with_the_close_match(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[pipeline]\nroot = "{tmp_path}/run"\n\n[extrat]\ninclude_tables = true\n')
    msg = one_line_error(capsys, ["extract", "--config", str(cfg), "--runner", "local"])
    assert str(cfg) in msg and "[extrat]" in msg and "did you mean [extract]" in msg
    # also when another stage runs, and from the trainer's loader
    assert "[extrat]" in one_line_error(capsys, ["dedup", "--config", str(cfg), "--runner", "local"])
    from model.train import load_train_config
    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[extrat\]"):
        load_train_config(cfg)


def test_an_unknown_key_of_the_pipeline_table_and_a_key_outside_tables_are_refused(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[pipeline]\nrot = "{tmp_path}/run"\n')
    msg = one_line_error(capsys, ["extract", "--config", str(cfg), "--runner", "local"])
    assert "[pipeline]" in msg and "'rot'" in msg and "root" in msg
    cfg.write_text(f'root = "{tmp_path}/run"\n[extract]\n')
    msg = one_line_error(capsys, ["extract", "--config", str(cfg), "--runner", "local"])
    assert "'root'" in msg and "outside any table" in msg


def test_the_demo_checks_its_config_file_too(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[tokenise]\nval_fraction = 0.1\n")
    msg = one_line_error(capsys, ["demo", "--config", str(cfg), "--run-dir", str(tmp_path / "d"), "--skip-train"])
    assert "[tokenise]" in msg and "did you mean [tokenize]" in msg
    assert not (tmp_path / "d").exists()  # refused before the demo world is made


# --- an input of the wrong kind ---------------------------------------------------------------------------------


def test_tokenize_refuses_extracts_output(tmp_path, capsys, finished_dataset):
    docs = finished_dataset(tmp_path / "docs", [docs_table()], stage="extract")
    msg = one_line_error(capsys, run_args("tokenize", docs, tmp_path / "tokens"))
    assert str(docs) in msg and "extract's output" in msg and "dedup's" in msg
    assert "annotate, filter and dedup" in msg  # what it skipped
    assert not (tmp_path / "tokens").exists()


def test_extract_refuses_a_links_dataset(tmp_path, capsys, finished_dataset):
    from pipeline.stages.harvest import LINK_SCHEMA

    row: dict[str, object] = {
        "url_hash": "0" * 16,
        "url": "http://a.example/",
        "domain": "a.example",
        "registered_domain": "a.example",
    }
    row |= {"score": 5, "score_sum": 5, "n_submissions": 1, "first_created_utc": 0}
    row |= {"submission_ids": ["x"], "subreddits": ["r"]}
    links = finished_dataset(tmp_path / "links", [pa.Table.from_pylist([row], schema=LINK_SCHEMA)], stage="harvest")
    msg = one_line_error(capsys, run_args("extract", links, tmp_path / "docs"))
    assert "harvest's output" in msg and "fetch's" in msg and "run fetch on it first" in msg


def test_dedup_refuses_fetched_pages(tmp_path, capsys, shared):
    from bench.pages import fetched_dataset
    from pipeline.web.replay import html_benchmark_pages

    pages = list(html_benchmark_pages(shared / "html-benchmark"))[:2]
    fetched = fetched_dataset(pages, tmp_path / "fetched", shards=2)
    msg = one_line_error(capsys, run_args("dedup", fetched, tmp_path / "deduped"))
    assert "fetch's output" in msg and "filter's" in msg and "extract, annotate and filter" in msg


def test_an_unfinished_input_of_the_wrong_kind_is_named_by_its_kind(tmp_path, capsys, finished_dataset):
    docs = finished_dataset(tmp_path / "docs", [docs_table()], stage="extract")
    (docs / "_stage.json").rename(docs / "_run.json.bak")
    (docs / "_run.json").write_text('{"identity": {"stage": "extract", "config": "x", "inputs": {}}}\n')
    msg = one_line_error(capsys, run_args("tokenize", docs, tmp_path / "tokens"))
    assert "unfinished" in msg and "extract's output" in msg


def test_a_stage_going_backwards_is_refused(tmp_path, capsys, finished_dataset):
    deduped = finished_dataset(tmp_path / "deduped", [docs_table()], stage="dedup")
    msg = one_line_error(capsys, run_args("filter", deduped, tmp_path / "filtered"))
    assert "dedup's output" in msg and "annotate's" in msg


def test_ingested_text_enters_after_extract(tmp_path, capsys, finished_dataset):
    ingested = finished_dataset(tmp_path / "ingested", [docs_table()], stage="ingest")
    assert main(run_args("tokenize", ingested, tmp_path / "tokens") + ["--set", "val_fraction=0.5"]) == 0
    assert main(run_args("dedup", ingested, tmp_path / "deduped")) == 0
    # not where the corpus is described: manifest reads tokenize's output
    msg = one_line_error(capsys, ["manifest", "--set", f"input={ingested}", "--set", f"output={tmp_path}/m"])
    assert "ingest's output" in msg and "tokenize's" in msg


def test_a_dataset_another_program_wrote_is_left_to_the_stage(tmp_path, finished_dataset):
    generated = finished_dataset(tmp_path / "generated", [docs_table()], stage="generated")  # a benchmark's
    assert main(run_args("tokenize", generated, tmp_path / "tokens") + ["--set", "val_fraction=0.5"]) == 0


# --- the disk says no -------------------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_naming_the_shard_and_file(tmp_path, capsys, finished_dataset, monkeypatch):
    import pipeline.core.dataset as dataset

    annotated = finished_dataset(tmp_path / "annotated", [docs_table(), docs_table()], stage="annotate")

    def full(*args: object, **kwargs: object) -> None:  # what pyarrow raises when write(2) gets ENOSPC
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(dataset.pq, "write_table", full)
    out = tmp_path / "filtered"
    msg = one_line_error(capsys, run_args("filter", annotated, out))
    assert f"cannot write {out}/part-00000.parquet" in msg and "[Errno 28] No space left on device" in msg
    assert "part-00000" in msg and "part-00001" in msg and "rerun" in msg
    assert "Detail" not in msg  # the OS's words, once


def test_a_bug_in_a_task_keeps_its_traceback():
    from pipeline.core.runner import LocalRunner

    def buggy(item: int) -> int:
        table: dict[int, int] = {}
        return table[item]

    with pytest.raises(KeyError):
        LocalRunner().map(buggy, [1], desc="x y")


def test_a_full_disk_on_the_driver_names_the_file(tmp_path, capsys, finished_dataset, monkeypatch):
    annotated = finished_dataset(tmp_path / "annotated", [docs_table()], stage="annotate")
    write_text = Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.name.startswith("._stage.json.tmp-"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full)
    msg = one_line_error(capsys, run_args("filter", annotated, tmp_path / "filtered"))
    assert f"cannot write {tmp_path / 'filtered' / '_stage.json'}: [Errno 28] No space left on device" in msg


def test_a_read_only_output_folder(tmp_path, capsys, finished_dataset, monkeypatch):
    annotated = finished_dataset(tmp_path / "annotated", [docs_table()], stage="annotate")
    out = tmp_path / "filtered"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # the mode does not bind root: the kernel's answer, as it gives it to anyone else
        write_text = Path.write_text

        def denied(self: Path, *args: object, **kwargs: object) -> int:
            if self.parent == out:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return write_text(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "write_text", denied)
    try:
        msg = one_line_error(capsys, run_args("filter", annotated, out))
    finally:
        out.chmod(0o755)
    assert f"{out / '_run.json'}: [Errno 13] Permission denied" in msg and ".tmp-" not in msg


@pytest.mark.parametrize("under", [True, False])
def test_an_output_path_through_a_file(tmp_path, capsys, finished_dataset, under):
    annotated = finished_dataset(tmp_path / "annotated", [docs_table()], stage="annotate")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = blocker / "filtered" if under else blocker
    msg = one_line_error(capsys, run_args("filter", annotated, out))
    assert str(out) in msg
    assert ("Not a directory" if under else "exists") in msg


def test_replay_on_a_busy_port(tmp_path, capsys, shared):
    from pipeline.text.warc import write_pages_warc
    from pipeline.web.replay import html_benchmark_pages

    warc = tmp_path / "web.warc.gz"
    write_pages_warc(list(html_benchmark_pages(shared / "html-benchmark"))[:1], warc)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        msg = one_line_error(capsys, ["replay", str(warc), "--port", str(port)])
    assert f"127.0.0.1:{port}" in msg and "Address already in use" in msg and "--port" in msg


# --- the fastText model ---------------------------------------------------------------------------------------


def test_a_missing_language_model_names_the_annotate_key(tmp_path, capsys, finished_dataset, monkeypatch):
    docs = finished_dataset(tmp_path / "docs", [docs_table()], stage="extract")
    monkeypatch.delenv("OWT_FASTTEXT_MODEL", raising=False)
    args = run_args("annotate", docs, tmp_path / "annotated")
    msg = one_line_error(capsys, [*args, "--set", f'options.language.model="{tmp_path}/lid.176.bin"'])
    assert f"{tmp_path}/lid.176.bin" in msg and "[annotate.options.language] model" in msg and "filter." not in msg
    # the same file named by the environment: the message says where the path came from
    monkeypatch.setenv("OWT_FASTTEXT_MODEL", f"{tmp_path}/lid.176.bin")
    msg = one_line_error(capsys, args)
    assert f"$OWT_FASTTEXT_MODEL={tmp_path}/lid.176.bin" in msg and "[annotate.options.language] model" in msg


def test_the_chain_still_reads_the_stage_before(tmp_path, finished_dataset):
    for before, stage in zip(chain.names(), chain.names()[1:]):
        assert chain.accepted_inputs(stage)[0] == before
    assert "ingest" in chain.accepted_inputs("tokenize") and "ingest" not in chain.accepted_inputs("extract")
