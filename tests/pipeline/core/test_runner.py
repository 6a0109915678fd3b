"""A stage's resources reach Ray: each task holds what its config asks for, tokenize asks for its threads, and a
task no node can hold is refused with the setting to change instead of waiting forever."""

from __future__ import annotations

import pytest

from pipeline.core.config import Resources
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.stages.filter import FilterConfig
from pipeline.stages.tokenize import TokenizeConfig


def assigned_fn():
    """A task that reports what Ray gave it (made here, so Ray ships it by value: workers cannot import tests)."""

    def assigned(_: int) -> dict[str, float]:
        import ray

        return ray.get_runtime_context().get_assigned_resources()

    return assigned


def test_ray_tasks_hold_the_resources_asked_for(ray_runner):
    assigned = assigned_fn()
    got = ray_runner.map(assigned, [0, 1], desc="test", resources=Resources(cpus=2, memory_gb=0.25))
    assert [g["CPU"] for g in got] == [2.0, 2.0]
    assert all(g["memory"] == 0.25 * 2**30 for g in got)
    assert ray_runner.map(assigned, [0], desc="test")[0]["CPU"] == 1.0  # the default: one CPU a task


def test_a_task_no_node_can_hold_is_refused(ray_runner):
    assigned = assigned_fn()
    with pytest.raises(PipelineError, match=r"each task asks for 64 CPUs.*the largest node has 2 CPUs"):
        ray_runner.map(assigned, [0], desc="tokenize documents", resources=Resources(cpus=64))
    with pytest.raises(PipelineError, match=r"1 GPUs.*0 GPUs.*\[filter.resources\]"):
        ray_runner.map(assigned, [0], desc="filter documents", resources=Resources(gpus=1))


def test_on_a_cluster_that_may_grow_a_task_too_big_is_a_warning(ray_runner, monkeypatch, capsys):
    monkeypatch.setattr(ray_runner, "_embedded", False)  # as when joining a cluster by address
    ray_runner.check_fits(Resources(cpus=64), "tokenize documents")
    assert "warning: tokenize documents: each task asks for 64 CPUs" in capsys.readouterr().err


def test_tokenize_asks_for_its_threads_and_resources_stay_out_of_the_fingerprint():
    cfg = TokenizeConfig(input="i", output="o", threads=3)
    assert cfg.task_resources() == Resources(cpus=3) and cfg.encode_threads == 3
    default = TokenizeConfig(input="i", output="o")  # one thread, one CPU: fits a 1-CPU node
    assert default.task_resources() == Resources() and default.encode_threads == 1
    wide = TokenizeConfig(input="i", output="o", resources=Resources(cpus=4))
    assert wide.encode_threads == 4 and wide.task_resources().cpus == 4
    assert TokenizeConfig(input="i", output="o", threads=1).fingerprint() == cfg.fingerprint()
    f = FilterConfig(input="i", output="o")
    assert f.task_resources() == Resources()
    assert f.model_copy(update={"resources": Resources(cpus=4, gpus=1)}).fingerprint() == f.fingerprint()


class Recording(LocalRunner):
    def __init__(self) -> None:
        self.asked: list[Resources | None] = []

    def map(self, fn, items, *, desc, resources=None):  # type: ignore[no-untyped-def]
        self.asked.append(resources)
        return super().map(fn, items, desc=desc, resources=resources)


def test_a_stage_run_passes_its_config_resources(tmp_path, finished_dataset):
    import pyarrow as pa

    from pipeline.stages.filter import run

    docs = pa.table({"url": ["http://a.example/"], "final_url": ["http://a.example/"], "lang": ["en"],
                     "lang_score": [0.9], "n_tokens": [500], "text": ["x"]})  # fmt: skip
    finished_dataset(tmp_path / "docs", [docs])
    runner = Recording()
    asks = Resources(cpus=1.5, memory_gb=2)
    run(FilterConfig(input=str(tmp_path / "docs"), output=str(tmp_path / "out"), resources=asks), runner)
    assert runner.asked == [asks]
