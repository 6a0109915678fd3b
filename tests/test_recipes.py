"""The two recipes of docs/ARCHITECTURE.md, followed literally in a copy of the project, then the demo chain run
with the result: adding a stage is a module, one entry in chain.PIPELINE (and its name on the import line above
it) and a config table; adding an annotator is a module and one line in ANNOTATORS. `git diff --stat` of what
each recipe wrote is printed (pytest -s) and bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import chain

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

STAGE_MODULE = '''"""lines: drop documents of fewer than `min_lines` lines of text."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
from pydantic import Field

from pipeline.core.config import StageConfig
from pipeline.core.dataset import read_parquet, write_parquet
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, ShardTask, finish_shard, run_shardwise


class LinesConfig(StageConfig):
    input: str
    output: str
    min_lines: int = Field(1, ge=0)


def lines_shard(task: ShardTask[LinesConfig, None]) -> Record:
    (path,) = task.inputs
    docs = read_parquet(path)
    keep = [sum(1 for ln in t.splitlines() if ln.strip()) >= task.config.min_lines for t in docs["text"].to_pylist()]
    kept = docs.filter(pa.array(keep, pa.bool_()))
    out = Path(task.output) / f"{task.name}.parquet"
    write_parquet(kept, out)
    return finish_shard(task, [out], docs.num_rows, kept.num_rows, Counter(few_lines=keep.count(False)))


def run(cfg: LinesConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    return run_shardwise("lines", cfg, lines_shard, runner, overwrite, desc="documents")
'''
STAGE_ENTRY = (
    '    Stage("lines", lines.LinesConfig, lines.run, "lined", funnel=(("rows_out", "documents of 3+ lines"),), '
    'about="Documents of fewer than min_lines lines dropped.", shown=("min_lines",)),\n'
)
ANNOTATOR_MODULE = '''"""caps: the share of a document's letters that are capitals (`caps_share`)."""

from __future__ import annotations

import pyarrow as pa

from pipeline.annotators.base import Annotator


class CapsShare(Annotator):
    name = "caps"

    def columns(self) -> pa.Schema:
        return pa.schema([("caps_share", pa.float64())])

    def __call__(self, docs: pa.Table) -> pa.Table:
        shares = []
        for text in docs["text"].to_pylist():
            letters = [c for c in text if c.isalpha()]
            shares.append(sum(c.isupper() for c in letters) / len(letters) if letters else 0.0)
        return pa.table({"caps_share": shares}, schema=self.columns())
'''


def git(project: Path, *args: str) -> str:
    env = os.environ | {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", *args], cwd=project, env=env, capture_output=True, text=True, check=True).stdout


def project_copy(tmp: Path) -> Path:
    """The project as a checkout has it (tracked and new files, nothing ignored), committed in a repo of its own."""
    files = git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard").splitlines()
    project = tmp / "project"
    for rel in files:
        if (ROOT / rel).is_file():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, project / rel)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "before")
    return project


def diff_stat(project: Path) -> tuple[int, int, int, str]:
    git(project, "add", "-A")
    stat = git(project, "diff", "--cached", "--stat")
    last = stat.strip().splitlines()[-1]
    files, added, removed = (int(m) if m else 0 for m in re.match(
        r" (\d+) files? changed(?:, (\d+) insertions?\(\+\))?(?:, (\d+) deletions?\(-\))?", last).groups())  # fmt: skip
    return files, added, removed, stat


def demo(project: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipeline", "demo", "--run-dir", "runs/r", "--articles", "40", "--skip-train", *extra]
    env = os.environ | {"PYTHONPATH": str(project)}
    r = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r


def add_stage(project: Path) -> None:
    """The recipe: a module, an entry before tokenize (its name on the import line), a config table."""
    (project / "pipeline" / "stages" / "lines.py").write_text(STAGE_MODULE)
    path = project / "pipeline" / "chain.py"
    text = path.read_text()
    imports = re.search(r"^from pipeline\.stages import (.+)$", text, re.M)
    assert imports
    names = sorted([*imports[1].split(", "), "lines"])
    text = text.replace(imports[0], "from pipeline.stages import " + ", ".join(names))
    at = text.index('    Stage(\n        "tokenize",')
    path.write_text(text[:at] + STAGE_ENTRY + text[at:])
    with open(project / "pipeline" / "configs" / "demo.toml", "a") as f:
        f.write("\n[lines]\nmin_lines = 3\n")


def test_adding_a_stage_between_dedup_and_tokenize(tmp_path):
    project = project_copy(tmp_path)
    add_stage(project)
    files, added, removed, stat = diff_stat(project)
    print(f"\nadd a stage:\n{stat}")
    assert files == 3 and removed <= 1 and added <= 40, stat

    r = demo(project)
    run = project / "runs" / "r"
    lines = json.loads((run / "lined" / "_stage.json").read_text())
    deduped = run / chain.stage("dedup").output
    assert lines["stage"] == "lines" and list(lines["inputs"]) == [str(deduped.resolve())]
    tokens = json.loads((run / chain.stage("tokenize").output / "_stage.json").read_text())
    assert list(tokens["inputs"]) == [str((run / "lined").resolve())]  # tokenize now reads the new stage
    assert lines["rows_in"] - lines["drops"].get("few_lines", 0) == lines["rows_out"] == tokens["rows_in"]
    manifest = json.loads(next((run / chain.stage("manifest").output).rglob("manifest.json")).read_text())
    assert [s["stage"] for s in manifest["stages"]][-3:] == ["dedup", "lines", "tokenize"]
    assert {"step": "documents of 3+ lines", "count": lines["rows_out"], "stage": "lines"} in manifest["funnel"]
    folder = next((run / chain.stage("manifest").output).rglob("manifest.json")).parent
    assert "Documents of fewer than min_lines lines dropped. (min_lines=3)" in (folder / "README.md").read_text()
    assert "lines: Documents of fewer than" in (folder / "croissant.json").read_text()
    assert "lines: " in r.stdout  # its summary line
    # make has a target for it, the CLI a subcommand
    m = subprocess.run(["make", "-n", "lines"], cwd=project, capture_output=True, text=True, timeout=60)
    assert "-m pipeline lines --config" in m.stdout, m.stdout + m.stderr


def test_adding_an_annotator_reruns_neither_extraction_nor_the_others(tmp_path):
    project = project_copy(tmp_path)
    first = demo(project)
    assert "annotate: " in first.stdout
    (project / "pipeline" / "annotators" / "caps.py").write_text(ANNOTATOR_MODULE)
    registry = project / "pipeline" / "annotators" / "__init__.py"
    text = registry.read_text()
    at = text.index("}\n", text.index("ANNOTATORS"))
    registry.write_text(text[:at] + '    "caps": "pipeline.annotators.caps:CapsShare",\n' + text[at:])
    files, added, removed, stat = diff_stat(project)
    print(f"\nadd an annotator:\n{stat}")
    assert (files, removed) == (2, 0) and added <= 30, stat

    # Using it is configuration: list it, and give filter a rule on its column.
    use = ['annotate.annotators=["language", "tokens", "caps"]']
    use += ['filter.rules=[{column = "caps_share", op = ">", value = 0.5, reason = "shouting"}]']
    second = demo(project, "--overwrite", *(a for u in use for a in ("--set", u)))
    assert "extract: reusing" in second.stdout and "fetch: reusing" in second.stdout
    run = project / "runs" / "r"
    annotated = json.loads((run / chain.stage("annotate").output / "_stage.json").read_text())
    assert {s["annotators"]["caps"] for s in annotated["shards"]} == {"computed"}
    assert {s["annotators"]["language"] for s in annotated["shards"]} == {"cached"}  # not recomputed
    assert {s["annotators"]["tokens"] for s in annotated["shards"]} == {"cached"}
    import pyarrow.parquet as pq

    shard = run / chain.stage("annotate").output / annotated["shards"][0]["files"][0]["path"]
    assert pq.read_schema(shard).names[-1] == "caps_share"
    filtered = json.loads((run / chain.stage("filter").output / "_stage.json").read_text())
    assert filtered["config"]["rules"][0]["reason"] == "shouting"
