"""manifest: a JSON description of a finished corpus that others can verify: every stage's config and funnel,
the input dumps with sha256, and every output shard with sha256, bytes and counts.

Written to <output>/<name>/<version>/manifest.json. A version is immutable: writing the same version with
other content is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import field_validator

from pipeline.config import StageConfig
from pipeline.dataset import Dataset, code_version, read_json, write_json
from pipeline.errors import PipelineError
from pipeline.stage import now_iso

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")
FUNNEL = [
    ("harvest", "rows_in", "submissions read"),
    ("harvest", "rows_out", "unique URLs"),
    ("fetch", "rows_out", "pages fetched"),
    ("extract", "rows_out", "documents extracted"),
    ("filter", "rows_out", "documents kept by filter"),
    ("dedup", "rows_out", "documents after dedup"),
]


class ManifestConfig(StageConfig):
    input: str  # the tokenize output
    output: str = "data_manifests"
    name: str = "openwebtext"
    version: str = "0.1.0"
    license: str = (
        "Text belongs to the pages' authors; distributed for research under the terms of the source sites. "
        "Code: Apache-2.0."
    )

    @field_validator("version")
    @classmethod
    def _semver(cls, v: str) -> str:
        if not SEMVER.match(v):
            raise ValueError("must be a semantic version like 1.2.0")
        return v


def lineage(tokens_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The chain of finished datasets that led to `tokens_dir`, oldest first (harvest ... tokenize)."""
    chain = []
    path: Path | None = Path(tokens_dir)
    while path is not None:
        m = Dataset(path).manifest()
        chain.append((path, m))
        parents = [Path(p) for p in m["inputs"] if (Path(p) / "_stage.json").is_file()]
        path = parents[0] if parents else None
    return list(reversed(chain))


def funnel(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [{"step": label, "count": stages[s][key], "stage": s} for s, key, label in FUNNEL if s in stages]
    if "tokenize" in stages:
        t = stages["tokenize"]["tokens"]
        rows.append({"step": "GPT-2 tokens (train + val)", "count": t["train"] + t["val"], "stage": "tokenize"})
    return rows


def build(cfg: ManifestConfig) -> dict[str, Any]:
    chain = lineage(cfg.input)
    stages = {m["stage"]: m for _, m in chain}
    if "tokenize" not in stages:
        raise PipelineError(
            f"manifest input {cfg.input}: expected the output of `tokenize`, got {chain[-1][1]['stage']}"
        )
    tokens_dir = chain[-1][0].resolve()
    dest = (Path(cfg.output) / cfg.name / cfg.version).resolve()
    shards = []
    for rec in stages["tokenize"]["shards"]:
        for f in rec["files"]:
            shards.append(
                {
                    "path": os.path.relpath(tokens_dir / f["path"], dest),
                    "sha256": f["sha256"],
                    "bytes": f["bytes"],
                    "kind": f["path"].split("/")[0],
                    **(
                        {"tokens": rec["tokens"][f["path"].split("/")[0]]}
                        if f["path"].endswith(".arrow")
                        else {"rows": rec["rows_out"]}
                    ),
                }
            )
    tok = stages["tokenize"]
    return {
        "name": cfg.name,
        "version": cfg.version,
        "created": now_iso(),
        "code_version": code_version(),
        "license": cfg.license,
        "tokenizer": {"name": tok["config"]["tokenizer"], "eot_position": "after", "dtype": "uint16"},
        "inputs": stages.get("harvest", {}).get("dumps", []),
        "stages": [
            {
                "stage": m["stage"],
                "path": str(p.resolve()),
                "config": m["config"],
                "code_version": m["code_version"],
                "rows_in": m["rows_in"],
                "rows_out": m["rows_out"],
                "drops": m["drops"],
                "wall_time_s": m["wall_time_s"],
                "output_fingerprint": m["output_fingerprint"],
            }
            for p, m in chain
        ],
        "funnel": funnel(stages),
        "shards": shards,
        "totals": {
            "documents": tok["rows_out"],
            "tokens": tok["tokens"],
            "documents_by_split": tok["docs"],
            "bytes": sum(s["bytes"] for s in shards),
        },
    }


def run(cfg: ManifestConfig, runner=None, overwrite: bool = False) -> dict[str, Any]:
    manifest = build(cfg)
    path = Path(cfg.output) / cfg.name / cfg.version / "manifest.json"
    if path.is_file() and not overwrite:
        old = read_json(path)
        if [s["sha256"] for s in old.get("shards", [])] == [s["sha256"] for s in manifest["shards"]]:
            return old | {"reused": True, "path": str(path)}
        raise PipelineError(
            f"{path}: version {cfg.version} already describes other shards; bump manifest.version or pass --overwrite"
        )
    write_json(path, manifest)
    return manifest | {"path": str(path)}


def format_funnel(manifest: dict[str, Any]) -> str:
    lines = ["funnel:"]
    for row in manifest["funnel"]:
        lines.append(f"  {row['count']:>12,}  {row['step']}")
    lines.append("why the rest dropped:")
    for st in manifest["stages"]:
        if st["drops"]:
            reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(st["drops"].items(), key=lambda kv: -kv[1]))
            lines.append(f"  {st['stage']:<9} {reasons}")
    return "\n".join(lines)
