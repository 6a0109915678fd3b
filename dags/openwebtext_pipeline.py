"""Airflow DAG: the OpenWebText stages in order (chain.PIPELINE, one task each), each submitted to a Ray cluster as
a Ray job, then the corpus verified and published.

Parameters:
- `ray_address`: the cluster's dashboard URL (http://head:8265); empty: $RAY_ADDRESS, else the local cluster of
  `make cluster-up`.
- `config`: a TOML file with a table per stage (options such as fetch politeness); the parameters below override
  its `[pipeline] root`, harvest's `input` and the manifest's `name` and `version` (a table that names its own
  `input` or `output` keeps it).
- `dumps`: the Reddit dump files, directories or globs for harvest.
- `output`: the pipeline's root: every stage's dataset goes to its folder under it (chain.py names them), on
  storage every Ray node sees (a shared filesystem path, or s3:// / gs:// for the stages before the manifest). A
  URI's query (s3://bucket/run?endpoint_override=host:9000&scheme=http) stays at its end: folders under the root,
  and the manifest the final task verifies, are joined before it (chain.under).
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

from pipeline.chain import PIPELINE, stage, under

# Parameters reach the shell as environment variables, never spliced into the command: a URI with `&` or `?`
# (s3://bucket/x?endpoint_override=...) or a path with a space stays one word. Config values are TOML literals
# (JSON strings and arrays are), so `--set key=$VAR` reads them back exactly.
COMMON_ENV = {
    "OWT_PROJECT": "{{ params.project_dir }}",
    "OWT_CONFIG": "{{ params.config }}",
    "OWT_RAY_ADDRESS": "{{ params.ray_address }}",
}
MANIFESTS = stage("manifest").output


def manifest_uri(root: str, name: str, version: str) -> str:
    """The manifest the manifest stage writes under `root`, joined as chain.py joins the stages' folders: a URI's
    query (s3://b/run?endpoint_override=...) stays at its end, not in the middle of the path."""
    return under(root, f"{MANIFESTS}/{name}/{version}/manifest.json")


MANIFEST = "{{ manifest_uri(params.output, params.name, params.version) }}"
SUBMIT = 'cd "$OWT_PROJECT" && python -m pipeline submit {stage} --config "$OWT_CONFIG" --root "$OWT_ROOT" {sets}'
SUBMIT += ' ${{OWT_RAY_ADDRESS:+--address "$OWT_RAY_ADDRESS"}}'


def stage_env(name: str, reads_dumps: bool) -> dict[str, str]:
    env = COMMON_ENV | {"OWT_ROOT": "{{ params.output }}"}
    if reads_dumps:
        env["OWT_INPUT"] = "{{ params.dumps | tojson }}"
    if name == "manifest":
        env |= {"OWT_NAME": "{{ params.name | tojson }}", "OWT_VERSION": "{{ params.version | tojson }}"}
    return env


def stage_command(name: str, reads_dumps: bool) -> str:
    sets = [f'--set "{name}.input=$OWT_INPUT"'] if reads_dumps else []
    if name == "manifest":
        sets += ['--set "manifest.name=$OWT_NAME"', '--set "manifest.version=$OWT_VERSION"']
    return SUBMIT.format(stage=name, sets=" ".join(sets))


# verify the corpus; with publish_to, publish it and verify the published copy at the URI publish printed.
PUBLISH = (
    'cd "$OWT_PROJECT" && python -m pipeline verify "$OWT_MANIFEST" && if [ -n "$OWT_PUBLISH_TO" ]; then '
    'uri=$(python -m pipeline publish "$OWT_MANIFEST" --to "$OWT_PUBLISH_TO" | sed -n "s/^published: //p") '
    '&& [ -n "$uri" ] && python -m pipeline verify "$uri"; fi'
)


with DAG(
    dag_id="openwebtext_pipeline",
    description=" -> ".join(["Reddit dumps", *(s.output for s in PIPELINE)]),
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
    user_defined_macros={"manifest_uri": manifest_uri},
) as dag:
    previous = None
    for s in PIPELINE:
        dumps = s.input is None  # the stage whose config names its input reads the Reddit dumps
        task = BashOperator(
            task_id=s.name, bash_command=stage_command(s.name, dumps), env=stage_env(s.name, dumps), append_env=True
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
    assert previous is not None  # the pipeline has stages
    previous >> publish
