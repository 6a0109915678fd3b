"""The demo world through every stage on a real local Ray, then a few Ray Train steps; the funnel checked
against what the world planted, and the Ray run checked byte for byte against the in-process runner."""

import hashlib
import json
from pathlib import Path

import pytest

from model.train import TrainConfig
from model.train import run as train_run
from pipeline import chain
from pipeline.chain import run_stage
from pipeline.cli import main
from pipeline.core.dataset import read_parquet
from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.corpus.published import verify
from pipeline.corpus.whereis import REDDIT_KEYS, locate
from pipeline.stages.manifest import SEMVER, format_funnel
from pipeline.text.token_format import index_of

STAGES = chain.names()
DATASETS = [s.name for s in chain.PIPELINE if s.uses_ray]  # every stage but the manifest writes a dataset


def configs(world: Path, run_dir: Path, proxy: str) -> dict:
    settings = {
        "harvest": {"input": [str(world / "reddit")], "num_shards": 3},
        "fetch": {"proxy": proxy, "retries": 1, "allow_networks": ["127.0.0.1/32"], "min_host_delay_s": 0.0},
        "tokenize": {"val_fraction": 0.2, "shard_tokens": 4000},
        "manifest": {"name": "e2e"},
    }
    return {name: chain.config_for(name, root=str(run_dir), base=settings.get(name)) for name in STAGES}


@pytest.mark.slow
def test_demo_world_end_to_end_on_ray(tmp_path, demo_world, replay, ray_runner):
    world = json.loads((demo_world / "WORLD.json").read_text())["planted"]
    cfgs = configs(demo_world, tmp_path, replay)
    results = {name: run_stage(name, cfgs[name], ray_runner) for name in STAGES}
    print(format_funnel(results["manifest"]))
    assert verify(results["manifest"]["path"]).clean

    h, f, fl, d, t = (results[s] for s in ("harvest", "fetch", "filter", "dedup", "tokenize"))
    assert h["drops"]["bad_json"] == world["bad_json_lines"]
    assert h["drops"]["self_post"] == world["self_posts"]
    assert h["drops"]["after_cutoff"] == world["after_cutoff"]
    assert h["drops"]["no_score"] == world["null_score"]
    assert h["drops"]["low_score"] == world["low_score_submissions"]
    assert h["drops"]["blocked_domain"] + h["drops"]["blocked_extension"] == world["media_links"]
    assert h["drops"]["duplicate_url"] == world["repeat_submissions_with_tracking_params"]
    assert h["drops"]["nsfw"] == world["nsfw_submissions"]
    assert f["drops"] == {
        "http_404": world["dead_links"],
        "http_500": world["server_errors"],
        "not_html": world["non_html"],
    }
    assert fl["drops"]["wikipedia"] == world["wikipedia"]
    assert fl["drops"]["too_short"] == world["short_pages"]
    non_english = sum(v for k, v in world.items() if k.startswith("articles_") and k != "articles_en")
    assert fl["drops"]["language"] >= non_english
    assert d["drops"]["exact_duplicate"] >= world["exact_duplicates"]
    assert d["drops"]["near_duplicate"] >= world["near_duplicates"] - 1  # a near copy may hit an exact copy's keeper
    assert t["tokens"]["train"] > 5000 and t["tokens"]["val"] > 0
    # Every stage's rows are accounted for: rows_in - dropped = rows_out; each stage reads what the last one wrote.
    ran = [results[s] for s in DATASETS]
    for m in ran[:-1]:
        assert m["rows_in"] - sum(m["drops"].values()) == m["rows_out"], m["stage"]
    for upstream, downstream in zip(ran, ran[1:]):
        assert upstream["rows_out"] == downstream["rows_in"]

    # Any token position leads back to its document, URL and Reddit submissions.
    assert t["token_shards"]["train"] >= 2  # cut by token count, not one per input shard
    tokens = Path(cfgs["tokenize"].output)
    shard = sorted((tokens / "train").glob("*.arrow"))[1]
    entry = read_parquet(index_of(shard)).to_pylist()[1]
    second = read_parquet(tokens / entry["documents_file"]).to_pylist()[entry["documents_row"]]
    assert second["split"] == "train" and second["url_hash"] == entry["url_hash"]
    where = locate(shard, entry["token_start"] + 3)
    assert where["document"]["url"] == second["url"] and where["document"]["offset_in_document"] == 3
    assert where["reddit"]["score"] >= 3 and where["reddit"]["submission_ids"]
    links = read_parquet(where["reddit"]["links_shard"]).to_pylist()
    assert {r["url"] for r in links if r["url_hash"] == second["url_hash"]} == {second["url"]}
    assert main(["whereis", str(shard), str(entry["token_start"])]) == 0
    with pytest.raises(PipelineError, match="outside the shard"):
        locate(shard, 10**9)

    # The manifest of this real chain: identity, every stage's resolved config, the dumps it was built from.
    m = json.loads(Path(results["manifest"]["path"]).read_text())
    assert SEMVER.match(m["version"]) and m["created"] and m["code_version"]
    assert [s["stage"] for s in m["stages"]] == DATASETS
    assert [s["config"] for s in m["stages"]] == [results[s]["config"] for s in DATASETS]
    assert [s["about"] for s in m["stages"]] == [chain.stage(s).about for s in DATASETS]
    assert [r["step"] for r in m["funnel"]] == [label for s in chain.PIPELINE for _, label in s.funnel]
    dumps = sorted((demo_world / "reddit").iterdir())
    assert m["inputs"] == [
        {"name": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size} for p in dumps
    ]

    # Published with the CLI, the copy (no stage manifests) still answers whereis from its document rows, and its
    # Croissant file, written from this run, validates with mlcroissant and reads back every document.
    pub = tmp_path / "published"
    assert main(["publish", results["manifest"]["path"], "--to", f"file://{pub}"]) == 0
    folder = pub / m["name"] / m["version"]
    there = locate(folder / shard.relative_to(tokens), entry["token_start"] + 3)
    assert there["document"] == where["document"] and "links_shard" not in there["reddit"]
    assert {k: there["reddit"][k] for k in REDDIT_KEYS} == {k: where["reddit"][k] for k in REDDIT_KEYS}
    import mlcroissant as mlc

    ds = mlc.Dataset(jsonld=str(folder / "croissant.json"))
    assert not ds.metadata.ctx.issues.errors and not ds.metadata.ctx.issues.warnings, ds.metadata.ctx.issues.report()
    assert sum(1 for _ in ds.records("documents")) == t["rows_out"]

    # The same data through the in-process runner gives byte-identical datasets.
    local = LocalRunner()
    for name in DATASETS[DATASETS.index("extract") :]:  # from the fetched pages on
        c = cfgs[name].model_copy(update={"output": cfgs[name].output + "-local"})
        if name != "extract":
            c = c.model_copy(update={"input": cfgs[name].input + "-local"})
        assert run_stage(name, c, local)["output_fingerprint"] == results[name]["output_fingerprint"], name

    # A second run reuses every stage.
    again = {name: run_stage(name, cfgs[name], ray_runner) for name in STAGES}
    assert all(m.get("reused") for m in again.values())

    summary = train_run(
        TrainConfig(
            **chain.train_folders(str(tmp_path)),
            model="tiny",
            batch_size=4,
            max_steps=4,
            eval_interval=2,
            eval_iters=1,
            warmup_steps=1,
            sample_tokens=5,
            cpus_per_worker=1,
        )
    )
    assert summary["steps"] == 4 and summary["last_loss"] < summary["first_loss"]
    assert list((tmp_path / "train" / "ray").rglob("ckpt.pt"))  # checkpoints reported through Ray Train
