"""Airflow DAG: the OpenWebText stages in order, each submitted to a Ray cluster as a Ray job, then the corpus
verified and published.

Parameters:
- `ray_address`: the cluster's dashboard URL (http://head:8265); empty: $RAY_ADDRESS, else the local cluster of
  `make cluster-up`.
- `config`: a TOML file with a table per stage (options such as fetch politeness); the parameters below override it.
- `dumps`: the Reddit dump files, directories or globs for harvest.
- `output`: where every stage's dataset goes (`<output>/links`, `/fetched`, ..., `/tokens`, `/data_manifests`):
  storage every Ray node sees (a shared filesystem path).
- `name`, `version`: the dataset's name and semver version in its manifest.
- `publish_to`: a URI (s3://, gs://, file://) to publish the corpus to; empty: verify it only.
- `project_dir`: where the project is checked out on the Airflow worker (the jobs ship it to the cluster).

Each stage task reruns safely: a stage reuses a finished output and resumes a partial one, so Airflow's retries pick
up where a failed attempt stopped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

# stage -> (its input under `output`, its output under `output`); harvest reads the dumps
STAGES = {
    "harvest": (None, "links"),
    "fetch": ("links", "fetched"),
    "extract": ("fetched", "docs"),
    "filter": ("docs", "filtered"),
    "dedup": ("filtered", "deduped"),
    "tokenize": ("deduped", "tokens"),
    "manifest": ("tokens", "data_manifests"),
}
P = "{{ params.%s }}"
MANIFEST = P % "output" + "/data_manifests/" + P % "name" + "/" + P % "version" + "/manifest.json"


def stage_command(stage: str, source: str | None, target: str) -> str:
    sets = [f"--set {stage}.output={P % 'output'}/{target}"]
    if source is None:
        sets.append(f"--set '{stage}.input={{{{ params.dumps | tojson }}}}'")
    else:
        sets.append(f"--set {stage}.input={P % 'output'}/{source}")
    if stage == "manifest":
        sets += [f"--set manifest.name={P % 'name'}", f"--set manifest.version='\"{P % 'version'}\"'"]
    return (
        f"cd {P % 'project_dir'} && python -m pipeline submit {stage} --config {P % 'config'} "
        + " ".join(sets)
        + "{% if params.ray_address %} --address {{ params.ray_address }}{% endif %}"
    )


with DAG(
    dag_id="openwebtext_pipeline",
    description="Reddit dumps -> links -> pages -> text -> filtered -> deduplicated -> GPT-2 tokens -> manifest",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "ray_address": Param("", type="string"),
        "config": Param("pipeline/configs/demo.toml", type="string"),
        "dumps": Param(["runs/demo/world/reddit"], type="array"),
        "output": Param("runs/airflow", type="string"),
        "name": Param("owt", type="string"),
        "version": Param("0.1.0", type="string", pattern=r"^\d+\.\d+\.\d+"),
        "publish_to": Param("", type="string"),
        "project_dir": Param(".", type="string"),
    },
    tags=["openwebtext", "ray"],
) as dag:
    previous = None
    for stage, (source, target) in STAGES.items():
        task = BashOperator(task_id=stage, bash_command=stage_command(stage, source, target))
        if previous is not None:
            previous >> task
        previous = task
    publish = BashOperator(
        task_id="publish",
        bash_command=(
            f"cd {P % 'project_dir'} && python -m pipeline verify {MANIFEST}"
            "{% if params.publish_to %} && python -m pipeline publish " + MANIFEST + " --to {{ params.publish_to }}"
            " && python -m pipeline verify {{ params.publish_to }}/{{ params.name }}/{{ params.version }}/manifest.json"
            "{% endif %}"
        ),
    )
    previous >> publish
