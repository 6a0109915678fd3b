"""What `pipeline submit` sends: a stage's resolved config as `--set` values that read back to the same config."""

import os
import shlex
from pathlib import Path

import pytest

from pipeline.chain import stage
from pipeline.core.config import load_config
from pipeline.core.errors import PipelineError
from pipeline.ops.cluster import entrypoint, job_address, job_client, submit


def sets_of(command: str) -> list[str]:
    words = shlex.split(command)
    return [words[i + 1] for i, w in enumerate(words) if w == "--set"]


def test_the_job_reads_back_the_config_resolved_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text('[filter]\ninput = "docs"\noutput = "s3://bucket/filtered"\nlanguages = ["en", "de"]\n')
    overrides = ["filter.quality.min_stop_words=1", "filter.min_tokens=64", "extract.timeout_s=1"]
    command = entrypoint("filter", str(config), overrides)
    assert command.startswith("python -m pipeline filter ")
    sets = sets_of(command)
    assert "quality.min_stop_words=1" in sets  # nested tables as dotted keys
    assert not any(s.startswith("timeout_s") for s in sets)  # another stage's override stays out
    cls = stage("filter").config
    here = load_config(cls, "filter", str(config), [o.split(".", 1)[1] for o in overrides if o.startswith("filter.")])
    there = load_config(cls, "filter", None, sets)
    assert there.input == str(tmp_path / "docs")  # relative paths made absolute
    assert there.output == "s3://bucket/filtered"  # URIs untouched
    assert there.model_copy(update={"input": "docs"}) == here


def test_tables_in_lists_and_annotator_models_travel_as_toml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rules = '[{column = "caps_share", op = ">", value = 0.5, reason = "shouting"}, {column = "x", op = "in", '
    rules += 'value = ["a", "b"], reason = "listed"}]'
    cls = stage("filter").config
    here = load_config(cls, "filter", None, ["input=i", "output=o", f"rules={rules}"])
    there = load_config(cls, "filter", None, sets_of(entrypoint("filter", None, ["filter.input=i", "filter.output=o",
                                                                               f"filter.rules={rules}"])))  # fmt: skip
    assert there.rules == here.rules and len(there.rules) == 2
    sets = sets_of(entrypoint("annotate", None, ["annotate.annotators=[\"language\"]",
                                                 "annotate.options.language.model=lid.176.bin"]))  # fmt: skip
    assert f'options.language.model="{tmp_path / "lid.176.bin"}"' in sets


def test_train_and_unknown_targets(tmp_path):
    sets = sets_of(entrypoint("train", None, [f"train.data={tmp_path}", "train.out_dir=o", "train.num_workers=2"]))
    assert f"out_dir={Path('o').resolve()}" in [s.replace('"', "") for s in sets] and "num_workers=2" in sets
    with pytest.raises(PipelineError, match="unknown target"):
        entrypoint("bogus", None, [])


def test_no_address_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(PipelineError, match="make cluster-up"):
        job_address(None, tmp_path)


def test_no_wait_takes_one_target():
    with pytest.raises(PipelineError, match="single target"):
        submit(["all"], None, [], "http://127.0.0.1:1", wait=False)  # fails before any connection


def test_an_explicit_address_wins_over_ray_address(tmp_path, monkeypatch):
    # Ray's JobSubmissionClient reads $RAY_ADDRESS over the address it is given (tests/test_cluster.py shows it with
    # a real cluster); job_client builds it with the variable out of the way, and puts it back.
    monkeypatch.setenv("RAY_ADDRESS", "http://from-env:8265")
    assert job_address(None, tmp_path) == "http://from-env:8265"
    seen = {}

    class Recorder:
        def __init__(self, address: str):
            seen.update(address=address, env=os.environ.get("RAY_ADDRESS"))

    job_client(Recorder, job_address("http://from-flag:8265", tmp_path))
    assert seen == {"address": "http://from-flag:8265", "env": None}
    assert os.environ["RAY_ADDRESS"] == "http://from-env:8265"


def test_a_clusters_ports_are_all_different(monkeypatch):
    """The OS may hand the port it just gave back to the next bind (it did: two agents on one port stopped
    `ray start`); a node's ports are drawn so that none repeats."""
    import pipeline.ops.cluster as cluster

    offered = iter([41000, 41000, 41000, 41001, 41001, 41002])

    class Socket:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def bind(self, address):
            self.port = next(offered)

        def getsockname(self):
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(cluster.socket, "socket", Socket)
    taken: set[int] = set()
    assert [cluster.free_port(taken) for _ in range(3)] == [41000, 41001, 41002]
