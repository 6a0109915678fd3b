"""Airflow DAG: the OpenWebText stages in order, each submitted to a Ray cluster as a Ray job, then the corpus
verified and published.

Parameters:
- `ray_address`: the cluster's dashboard URL (http://head:8265); empty: $RAY_ADDRESS, else the local cluster of
  `make cluster-up`.
- `config`: a TOML file with a table per stage (options such as fetch politeness); the parameters below override it.
- `dumps`: the Reddit dump files, directories or globs for harvest.
- `output`: where every stage's dataset goes (`<output>/links`, `/fetched`, ..., `/tokens`, `/data_manifests`):
  storage every Ray node sees (a shared filesystem path, or s3:// / gs:// for the stages up to tokenize).
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
# Parameters reach the shell as environment variables, never spliced into the command: a URI with `&` or `?`
# (s3://bucket/x?endpoint_override=...) or a path with a space stays one word. Config values are TOML literals
# (JSON strings and arrays are), so `--set key=$VAR` reads them back exactly.
COMMON_ENV = {
    "OWT_PROJECT": "{{ params.project_dir }}",
    "OWT_CONFIG": "{{ params.config }}",
    "OWT_RAY_ADDRESS": "{{ params.ray_address }}",
}
MANIFEST = "{{ params.output }}/data_manifests/{{ params.name }}/{{ params.version }}/manifest.json"
SUBMIT = 'cd "$OWT_PROJECT" && python -m pipeline submit {stage} --config "$OWT_CONFIG" {sets}'
SUBMIT += ' ${{OWT_RAY_ADDRESS:+--address "$OWT_RAY_ADDRESS"}}'


def under_output(folder: str) -> str:
    return "{{ (params.output ~ '/" + folder + "') | tojson }}"


def stage_env(stage: str, source: str | None, target: str) -> dict[str, str]:
    env = COMMON_ENV | {"OWT_OUTPUT": under_output(target)}
    env["OWT_INPUT"] = "{{ params.dumps | tojson }}" if source is None else under_output(source)
    if stage == "manifest":
        env |= {"OWT_NAME": "{{ params.name | tojson }}", "OWT_VERSION": "{{ params.version | tojson }}"}
    return env


def stage_command(stage: str) -> str:
    sets = [f'--set "{stage}.input=$OWT_INPUT"', f'--set "{stage}.output=$OWT_OUTPUT"']
    if stage == "manifest":
        sets += ['--set "manifest.name=$OWT_NAME"', '--set "manifest.version=$OWT_VERSION"']
    return SUBMIT.format(stage=stage, sets=" ".join(sets))


# verify the corpus; with publish_to, publish it and verify the published copy at the URI publish printed.
PUBLISH = (
    'cd "$OWT_PROJECT" && python -m pipeline verify "$OWT_MANIFEST" && if [ -n "$OWT_PUBLISH_TO" ]; then '
    'uri=$(python -m pipeline publish "$OWT_MANIFEST" --to "$OWT_PUBLISH_TO" | sed -n "s/^published: //p") '
    '&& [ -n "$uri" ] && python -m pipeline verify "$uri"; fi'
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
        task = BashOperator(
            task_id=stage, bash_command=stage_command(stage), env=stage_env(stage, source, target), append_env=True
        )
        if previous is not None:
            previous >> task
        previous = task
    publish = BashOperator(
        task_id="publish",
        bash_command=PUBLISH,
        env=COMMON_ENV | {"OWT_MANIFEST": MANIFEST, "OWT_PUBLISH_TO": "{{ params.publish_to }}"},
        append_env=True,
    )
    previous >> publish
