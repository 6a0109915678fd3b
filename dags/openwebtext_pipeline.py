"""Airflow DAG: the OpenWebText stages in order, each as `python -m pipeline <stage>` against a Ray cluster.

Parameters: `config` (a TOML file with a table per stage), `ray_address` (empty: embedded Ray on the worker),
`project_dir` (where the project is checked out on the Airflow worker). Each task reruns safely: a stage reuses a
finished output and resumes a partial one, so Airflow's retries pick up where a failed attempt stopped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Param

STAGES = ["harvest", "fetch", "extract", "filter", "dedup", "tokenize", "manifest"]

with DAG(
    dag_id="openwebtext_pipeline",
    description="Reddit dumps -> links -> pages -> text -> filtered -> deduplicated -> GPT-2 tokens -> manifest",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    params={
        "config": Param("pipeline/configs/demo.toml", type="string"),
        "ray_address": Param("", type="string"),
        "project_dir": Param(".", type="string"),
    },
    tags=["openwebtext", "ray"],
) as dag:
    previous = None
    for stage in STAGES:
        task = BashOperator(
            task_id=stage,
            bash_command=(
                "cd {{ params.project_dir }} && "
                f"python -m pipeline {stage} --config {{{{ params.config }}}}"
                "{% if params.ray_address %} --address {{ params.ray_address }}{% endif %}"
            ),
        )
        if previous is not None:
            previous >> task
        previous = task
