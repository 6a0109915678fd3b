"""manifest: a JSON description of a finished corpus that others can verify: every stage's config and funnel,
the input dumps with sha256, and every output shard with sha256, bytes and counts.

Written to <output>/<name>/<version>/: manifest.json (file paths relative to `root`, the tokenize output), a
Croissant JSON-LD file (croissant.json) and a dataset card (README.md, funnel.png, domains.png). A version is
immutable: writing the same version with other files is refused.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import field_validator
from tqdm import tqdm

from pipeline.core import storage
from pipeline.core.config import StageConfig
from pipeline.core.dataset import code_version, lineage, read_json, read_parquet, write_json
from pipeline.core.errors import PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import check_file, now_iso
from pipeline.text.token_format import EOT_POSITION, FORMAT, FORMAT_VERSION, INDEX_SCHEMA
from pipeline.text.vocab import tokenizer, vocab_sha256

SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


class ManifestConfig(StageConfig):
    input: str  # the tokenize output
    output: str = "data_manifests"
    name: str = "openwebtext"
    version: str = "0.1.0"
    description: str = (
        "Web pages linked from Reddit submissions with a score of at least 3, main text extracted, Wikipedia "
        "removed, English kept, exact and near duplicates removed, tokenized with GPT-2's BPE: a reproduction of "
        "OpenAI's WebText, built by the open OpenWebText pipeline."
    )
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


def funnel(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The funnel rows each stage declared (chain.py), recorded in its stage manifest, oldest stage first."""
    rows = []
    for m in manifests:
        for key, label in (m.get("about") or {}).get("funnel", []):
            count = sum(m[key].values()) if isinstance(m[key], dict) else m[key]  # tokens: train + val
            rows.append({"step": label, "count": count, "stage": m["stage"]})
    return rows


def corpus_files(tok: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of the corpus, from tokenize's shard records: document shards, then token shards with their
    indexes, in shard order."""
    docs, tokens = [], []
    for rec in tok["shards"]:
        for f in rec["files"]:
            entry = {"path": f["path"], "sha256": f["sha256"], "bytes": f["bytes"]}
            if f["path"].startswith("documents/"):
                docs.append(entry | {"kind": "documents", "rows": rec["rows_out"]})
            elif f["path"].endswith(".arrow"):
                tokens.append(
                    entry
                    | {"kind": "tokens", "split": rec["split"], "tokens": rec["tokens"], "documents": rec["documents"]}
                )
            else:
                tokens.append(entry | {"kind": "token_index", "split": rec["split"], "rows": rec["documents"]})
    return docs + tokens


def documents_profile(root: Path, files: list[dict[str, Any]], top: int = 1000) -> tuple[list, dict[str, int]]:
    """The documents' columns (name, Arrow type) and documents per domain (most frequent first)."""
    domains: Counter = Counter()
    schema = None
    for f in files:
        if f["kind"] != "documents":
            continue
        path = storage.pull(root / f["path"])
        schema = schema or pq.read_schema(path)
        if "domain" in schema.names:
            domains.update(read_parquet(path, ["domain"]).column(0).to_pylist())
    columns = [{"name": fld.name, "type": str(fld.type)} for fld in schema] if schema else []
    return columns, dict(sorted(domains.items(), key=lambda kv: (-kv[1], kv[0]))[:top])


def folder_of(cfg: ManifestConfig) -> Path:
    """Where <output>/<name>/<version> is written: a local folder, or the mirror of an object-storage prefix."""
    return storage.local_view(cfg.output) / cfg.name / cfg.version


def store_of(path: Path) -> tuple[str, str] | None:
    remote = storage.remote_of(path)
    return None if remote is None else (remote.scheme, remote.query)


def build(cfg: ManifestConfig) -> dict[str, Any]:
    chain = lineage(cfg.input)
    stages = {m["stage"]: m for _, m in chain}
    if "tokenize" not in stages:
        raise PipelineError(
            f"manifest input {cfg.input}: expected the output of `tokenize`, got {chain[-1][1]['stage']}"
        )
    tokens_dir = chain[-1][0].path
    dest = folder_of(cfg)
    # The card, Croissant and manifest written into a dataset it describes would be extra files there.
    storage.check_apart("manifest", dest, [cfg.input] + [ds.path for ds, _ in chain])
    if store_of(tokens_dir) != store_of(dest):
        # The manifest names its files relative to its own folder, which only works within one store.
        raise PipelineError(
            f"manifest: output {cfg.output} is on another store than its input {cfg.input}; write the manifest "
            "beside the corpus, then `python -m pipeline publish` it anywhere"
        )
    tok = stages["tokenize"]
    if "token_shards" not in tok:
        raise PipelineError(f"{tokens_dir}: written by an older tokenize (no token shards by size); rerun tokenize")
    files = corpus_files(tok)
    # Re-hash what the manifest will vouch for: a shard damaged since tokenize finished is refused by name here,
    # not published under a manifest that looks complete.
    for f in tqdm(files, desc="manifest: re-hash", unit="file", disable=not sys.stderr.isatty(), leave=False):
        check_file(tokens_dir / f["path"], f["sha256"], f["bytes"], hint="rerun tokenize")
    columns, domains = documents_profile(tokens_dir, files)
    tcfg = tok["config"]
    enc = tokenizer(tcfg["tokenizer"])
    return {
        "name": cfg.name,
        "version": cfg.version,
        "created": now_iso(),
        "code_version": code_version(),
        "description": cfg.description,
        "license": cfg.license,
        "root": os.path.relpath(tokens_dir, dest),
        "tokenizer": {
            "name": tcfg["tokenizer"],
            "vocab_sha256": vocab_sha256(tcfg["tokenizer"]),
            "eot_token": enc.eot_token,
            "eot_position": EOT_POSITION,
            "dtype": "uint16",
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
        },
        "inputs": stages.get("harvest", {}).get("dumps", []),
        "stages": [
            {
                "stage": m["stage"],
                "about": (m.get("about") or {}).get("about", ""),
                "shown": (m.get("about") or {}).get("shown", []),
                "path": ds.uri,
                "config": m["config"],
                "code_version": m["code_version"],
                "rows_in": m["rows_in"],
                "rows_out": m["rows_out"],
                "drops": m["drops"],
                "wall_time_s": m["wall_time_s"],
                "output_fingerprint": m["output_fingerprint"],
            }
            for ds, m in chain
        ],
        "funnel": funnel([m for _, m in chain]),
        "files": files,
        "documents_schema": columns,
        "token_index_schema": [{"name": f.name, "type": str(f.type)} for f in INDEX_SCHEMA],
        "domains": domains,
        "totals": {
            "documents": tok["rows_out"],
            "tokens": tok["tokens"],
            "documents_by_split": tok["docs"],
            "token_shards": tok["token_shards"],
            "files": len(files),
            "bytes": sum(f["bytes"] for f in files),
        },
        "published": [],
    }


def run(cfg: ManifestConfig, runner: Runner | None = None, overwrite: bool = False) -> dict[str, Any]:
    from pipeline.corpus.card import write_card
    from pipeline.corpus.croissant import write_croissant

    manifest = build(cfg)
    folder = folder_of(cfg)
    path = folder / "manifest.json"
    if storage.is_file(path) and not overwrite:
        old = read_json(path)
        if [f["sha256"] for f in old.get("files", [])] == [f["sha256"] for f in manifest["files"]]:
            return old | {"reused": True, "path": storage.uri_of(path)}
        raise PipelineError(
            f"{path}: version {cfg.version} already describes other files; bump manifest.version or pass --overwrite"
        )
    # Sidecars first, manifest last: a folder with a manifest.json is a finished one.
    write_croissant(manifest, folder)
    write_card(manifest, folder)
    write_json(path, manifest)
    return manifest | {"path": storage.uri_of(path)}


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
