"""The pipeline is declared once (pipeline/chain.py): the Makefile's stage targets match it, default folders follow
its order, and no product file spells the chain of stages out again."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from pipeline import chain
from pipeline.core.errors import PipelineError

ROOT = Path(__file__).resolve().parent.parent
NAMES = set(chain.names())
# Stage names joined as a sequence, in any case: two with a separator ("harvest, fetch", "dedup -> tokenize",
# "make harvest|fetch", "a/b", "a; b"), or three with spaces only ("harvest fetch extract", a Makefile list).
SEPARATOR = r"\s*(?:,|;|\||->|→|=>|<-|>>|/|\.\.\.|…|\s-\s)\s*"
NAME = "(?:" + "|".join(sorted(map(re.escape, NAMES), key=len, reverse=True)) + ")"
SEQUENCE = re.compile(rf"\b{NAME}{SEPARATOR}{NAME}\b|\b{NAME}\s+{NAME}\s+{NAME}\b", re.IGNORECASE)


def product_files() -> list[Path]:
    files = [*(ROOT / "pipeline").rglob("*.py"), *(ROOT / "model").rglob("*.py"), *(ROOT / "dags").glob("*.py")]
    files += [*(ROOT / "pipeline" / "configs").glob("*.toml"), *(ROOT / "deploy").glob("*.toml"), ROOT / "Makefile"]
    return sorted(p for p in files if p != ROOT / "pipeline" / "chain.py")


def spelled_chains(path: Path) -> list[str]:
    """Where a file lists two or more stage names together: in a Python literal, or as text joined by a separator."""
    text = path.read_text()
    found = []
    for i, line in enumerate(text.splitlines(), 1):
        if SEQUENCE.search(line):
            found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Dict):
                items = [*node.keys, *node.values]
            elif isinstance(node, ast.List | ast.Tuple | ast.Set):
                # an element may be a pair whose first item names the stage: [("harvest", f), ("fetch", g)]
                items = [e.elts[0] if isinstance(e, ast.Tuple) and e.elts else e for e in node.elts]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
                items = [ast.Constant(k.arg) for k in node.keywords]
            else:
                continue
            named = [n.value for n in items if isinstance(n, ast.Constant) and n.value in NAMES]
            if len(named) >= 2:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {named}")
    return found


def test_make_has_a_target_for_every_stage():
    for name in chain.names():
        r = subprocess.run(["make", "-n", name, "ROOT=runs/x"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and f"-m pipeline {name} --config" in r.stdout and "--root runs/x" in r.stdout, r


def test_no_product_file_spells_the_chain_out():
    found = [hit for p in product_files() for hit in spelled_chains(p)]
    assert not found, "stage chains outside pipeline/chain.py (derive them from chain.PIPELINE):\n" + "\n".join(found)


def test_the_detector_sees_a_chain(tmp_path):
    a, b, c = chain.names()[:3]
    py = tmp_path / "x.py"
    py.write_text(f"ORDER = [{a!r}, {b!r}]\n")
    assert spelled_chains_at(py) and spelled_chains_at(write(tmp_path / "Makefile", f"# make {a}|{b}|{c}\n"))
    assert spelled_chains_at(write(tmp_path / "M2", f"STAGES := {a} {b} {c}\n"))
    assert spelled_chains_at(write(tmp_path / "t.txt", f"# {a.title()}; {b}\n"))
    assert spelled_chains_at(write(tmp_path / "z.py", f"STEPS = [({a!r}, 1), ({b!r}, 2)]\n"))
    assert spelled_chains_at(write(tmp_path / "w.py", f"NEXT = {{{a!r}: {b!r}}}\nD = dict({a}=1, {b}=2)\n"))
    assert not spelled_chains_at(write(tmp_path / "y.py", f"X = {a!r}\nY = [{b!r}, 'other']\n"))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def spelled_chains_at(path: Path) -> list[str]:
    global ROOT
    saved, ROOT = ROOT, path.parent
    try:
        return spelled_chains(path)
    finally:
        ROOT = saved


def test_every_stage_reads_the_one_before_it():
    folders = chain.folders("runs/x")
    previous = None
    for s in chain.PIPELINE:
        source, target = folders[s.name]
        assert target == f"runs/x/{s.output}"
        assert source == (previous if s.input == "previous" else None)
        previous = target
    assert len({t for _, t in folders.values()}) == len(folders)  # one folder a stage


def test_folders_under_an_object_store_keep_its_options():
    root = "s3://bucket/run?endpoint_override=127.0.0.1:9000&scheme=http"
    _, target = chain.folders(root)[chain.names()[0]]
    assert target == f"s3://bucket/run/{chain.PIPELINE[0].output}?endpoint_override=127.0.0.1:9000&scheme=http"


def test_config_for_fills_folders_and_the_table_wins(tmp_path):
    first, second = chain.names()[:2]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[pipeline]\nroot = "{tmp_path}/r"\n[{second}]\noutput = "{tmp_path}/elsewhere"\n')
    loaded = chain.config_for(second, cfg)
    assert loaded.input == chain.folders(f"{tmp_path}/r")[first][1] and loaded.output == f"{tmp_path}/elsewhere"
    assert chain.config_for(second, cfg, root=str(tmp_path / "other")).input.startswith(str(tmp_path / "other"))
    with pytest.raises(PipelineError, match="unknown stage 'nope'"):
        chain.stage("nope")


def test_a_reused_stage_takes_its_current_description(tmp_path, finished_dataset):
    import json

    import pyarrow as pa

    from pipeline.core.runner import LocalRunner

    docs = pa.table({"url": ["http://a.example/"], "final_url": ["http://a.example/"], "lang": ["en"],
                     "lang_score": [0.9], "n_tokens": [500], "text": ["x"]})  # fmt: skip
    finished_dataset(tmp_path / "docs", [docs], stage="annotate")
    cfg = chain.stage("filter").config(input=str(tmp_path / "docs"), output=str(tmp_path / "out"))
    chain.stage("filter").run(cfg, LocalRunner(), False)  # as a program calling the stage module directly
    assert "about" not in json.loads((tmp_path / "out" / "_stage.json").read_text())
    again = chain.run_stage("filter", cfg, LocalRunner())
    assert again["reused"] and again["about"] == chain.stage("filter").described()
    assert json.loads((tmp_path / "out" / "_stage.json").read_text())["about"]["about"] == chain.stage("filter").about
