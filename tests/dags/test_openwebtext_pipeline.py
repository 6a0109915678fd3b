"""The Airflow DAG, with a real Airflow: it imports cleanly, chains the stages, and a run completes them all."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline import chain

ROOT = Path(__file__).resolve().parents[2]
STAGES = chain.names()
TASKS = STAGES + ["publish"]


@pytest.fixture()
def airflow_env(tmp_path):
    env = os.environ | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = str(Path(sys.executable).parent / "airflow")
    r = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return airflow, env


def test_dag_imports_and_chains_the_stages(airflow_env):
    airflow, env = airflow_env
    code = (
        "from airflow.dag_processing.dagbag import DagBag; b = DagBag(); "
        "import json; d = b.get_dag('openwebtext_pipeline'); "
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, "
        "'tasks': {t.task_id: sorted(t.downstream_task_ids) for t in d.tasks}, "
        "'retries': [t.retries for t in d.tasks]}))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert out["tasks"] == {s: ([TASKS[i + 1]] if i + 1 < len(TASKS) else []) for i, s in enumerate(TASKS)}
    assert all(n >= 1 for n in out["retries"])


RENDER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("owt_dag", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
dag = module.dag
out = {}
for output in json.loads(sys.argv[2]):
    params = dict(dag.params.dump()) | {"output": output}
    out[output] = {
        t.task_id: t.render_template(t.env, {"params": params}, jinja_env=dag.get_template_env()) for t in dag.tasks
    }
print(json.dumps(out))
"""


def test_the_final_verify_finds_the_manifest_under_a_uri_with_a_query(tmp_path):
    """The manifest's URI is the output's folder joined as the stages join theirs: a query (endpoint options) stays
    at the end. Appended after it, the path became part of the query and verify looked for the wrong object."""
    outputs = [
        "s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http",
        "gs://bucket/run/",
        str(tmp_path / "corpus & co"),
    ]
    env = os.environ | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    r = subprocess.run(
        [sys.executable, "-c", RENDER, str(ROOT / "dags" / "openwebtext_pipeline.py"), json.dumps(outputs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rendered = json.loads(r.stdout.strip().splitlines()[-1])
    manifests = chain.stage("manifest").output
    want = {
        outputs[
            0
        ]: f"s3://bucket/prefix/{manifests}/owt/0.1.0/manifest.json?endpoint_override=127.0.0.1:9000&scheme=http",
        outputs[1]: f"gs://bucket/run/{manifests}/owt/0.1.0/manifest.json",
        outputs[2]: f"{tmp_path}/corpus & co/{manifests}/owt/0.1.0/manifest.json",
    }
    for output, tasks in rendered.items():
        assert tasks["publish"]["OWT_MANIFEST"] == want[output]
        assert all(tasks[s]["OWT_ROOT"] == output for s in STAGES)  # the stages join their folders themselves
    parts = urlsplit(rendered[outputs[0]]["publish"]["OWT_MANIFEST"])
    assert parts.path == f"/prefix/{manifests}/owt/0.1.0/manifest.json"
    assert parse_qs(parts.query) == {"endpoint_override": ["127.0.0.1:9000"], "scheme": ["http"]}


@pytest.mark.slow
def test_dag_run_submits_every_stage_to_a_ray_head_and_publishes(airflow_env, demo_world, replay, tmp_path):
    """`airflow dags test` (dag.test()) with a real local Ray head: every stage a Ray job, the corpus published."""
    from pipeline.ops.cluster import cluster_down, cluster_up

    airflow, env = airflow_env
    config = (ROOT / "pipeline" / "configs" / "demo.toml").read_text()
    config = config.replace("[fetch]\n", f'[fetch]\nproxy = "{replay}"\n')
    assert f'proxy = "{replay}"' in config
    (tmp_path / "config.toml").write_text(config)
    out = tmp_path / "corpus & co"  # parameters reach the shell as variables: a space or `&` stays in the path
    head = cluster_up(tmp_path / "ray", workers=0, cpus=2, memory_gb=4)
    try:
        conf = {
            "ray_address": head["dashboard"],
            "config": str(tmp_path / "config.toml"),
            "dumps": [str(demo_world / "reddit")],
            "output": str(out),
            "name": "owt-dag",
            "version": "1.2.3",
            "publish_to": f"file://{tmp_path / 'published'}",
            "project_dir": str(ROOT),
        }
        r = subprocess.run(
            [airflow, "dags", "test", "openwebtext_pipeline", "-c", json.dumps(conf)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        cluster_down(tmp_path / "ray")
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "state=success" in log
    for stage in STAGES:  # each stage went to the cluster as a job, and that job succeeded
        assert re.search(rf"submit: {stage}: job \S+ SUCCEEDED", log), stage
    manifests = out / chain.stage("manifest").output
    manifest = json.loads((manifests / "owt-dag" / "1.2.3" / "manifest.json").read_text())
    assert [s["stage"] for s in manifest["stages"]] == [s.name for s in chain.PIPELINE if s.uses_ray]
    assert manifest["totals"]["tokens"]["train"] > 0
    published = json.loads((tmp_path / "published" / "owt-dag" / "1.2.3" / "manifest.json").read_text())
    assert published["version"] == "1.2.3" and published["files"] == manifest["files"]
