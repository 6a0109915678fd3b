"""A corpus as its manifest describes it, wherever it lies: verify, publish to object storage, open from a URI.

    python -m pipeline verify  <manifest>                 re-hash every file; missing, corrupt, extra -> exit 1
    python -m pipeline publish <manifest> --to <uri>      copy files + manifest to s3://, gs://, file://
    python -m pipeline download <manifest-uri> --to <dir> a verified local copy (what the trainer reads)

A manifest names its files relative to `root`, itself relative to the manifest's folder, so the same manifest
works on any filesystem pyarrow.fs opens. S3-compatible stores take their endpoint from the URI
(`s3://bucket/prefix?endpoint_override=host:port&scheme=http`) or the usual AWS environment variables.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.core.dataset import RUN_FILE, SHARD_RECORDS, STAGE_FILE, atomic_path, sha256_file
from pipeline.core.errors import PipelineError
from pipeline.core.stage import now_iso
from pipeline.core.storage import Location, check_apart, locate, overlap

MANIFEST = "manifest.json"
# Files beside a published corpus that describe it and are not in its file list.
SIDECARS = {MANIFEST, "croissant.json", "README.md", "funnel.png", "domains.png"}
CHUNK = 8 << 20
STAGE_STATE = (RUN_FILE, SHARD_RECORDS)  # what a started, unfinished stage leaves in its output


def read_bytes(loc: Location) -> bytes:
    try:
        with loc.fs.open_input_stream(loc.path, compression=None) as f:
            return f.read()
    except FileNotFoundError:
        raise PipelineError(f"{loc.uri}: not found") from None
    except OSError as e:
        raise PipelineError(f"{loc.uri}: cannot read ({e})") from None


def write_bytes(loc: Location, data: bytes) -> None:
    if isinstance(loc.fs, pafs.LocalFileSystem):
        with atomic_path(loc.path) as tmp:
            tmp.write_bytes(data)
        return
    loc.fs.create_dir(posixpath.dirname(loc.path), recursive=True)
    with loc.fs.open_output_stream(loc.path, compression=None) as f:
        f.write(data)


@dataclass
class Corpus:
    manifest: dict[str, Any]
    at: Location  # the manifest file
    stage: dict[str, Any] | None = None  # the stage manifest, when the corpus is a stage's output folder

    @property
    def root(self) -> Location:
        return self.at.join("..", self.manifest.get("root", "."))

    def files(self, kind: str | None = None, split: str | None = None) -> list[dict[str, Any]]:
        return [
            f
            for f in self.manifest["files"]
            if (kind is None or f["kind"] == kind) and (split is None or f.get("split") == split)
        ]

    def location(self, entry: dict[str, Any]) -> Location:
        return self.root.join(entry["path"])


def open_manifest(uri: str | Path) -> Corpus:
    """A manifest file, or a folder holding manifest.json, on any filesystem. A stage's output folder (its
    `_stage.json`) is read as a corpus of the files its completion records name, so `verify` checks any
    intermediate dataset too."""
    loc = locate(uri)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.Directory:
        if loc.fs.get_file_info(loc.join(MANIFEST).path).type != pafs.FileType.File:
            stage = loc.join(STAGE_FILE)
            if loc.fs.get_file_info(stage.path).type == pafs.FileType.File:
                return stage_corpus(stage)
            if any(loc.fs.get_file_info(loc.join(n).path).type != pafs.FileType.NotFound for n in STAGE_STATE):
                raise PipelineError(
                    f"{loc.uri}: a stage's output, incomplete (no {STAGE_FILE}: the stage never finished); rerun "
                    "the stage to finish it, then verify"
                )
        loc = loc.join(MANIFEST)
    elif posixpath.basename(loc.path) == STAGE_FILE:
        return stage_corpus(loc)
    try:
        manifest = json.loads(read_bytes(loc))
    except json.JSONDecodeError as e:
        raise PipelineError(f"{loc.uri}: corrupt manifest at line {e.lineno} column {e.colno}: {e.msg}") from None
    if "files" not in manifest:
        raise PipelineError(f"{loc.uri}: not a corpus manifest (no 'files'); written by an older version?")
    return Corpus(manifest, loc)


def stage_corpus(stage: Location) -> Corpus:
    try:
        m = json.loads(read_bytes(stage))
    except json.JSONDecodeError as e:
        raise PipelineError(
            f"{stage.uri}: corrupt stage manifest at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    files = [f for s in m.get("shards", []) for f in s["files"]]
    return Corpus({"files": files, "root": ".", "stage": m.get("stage")}, stage, m)


def _chunks(loc: Location) -> Iterator[bytes]:
    try:
        f = loc.fs.open_input_stream(loc.path, compression=None)
    except FileNotFoundError:
        raise PipelineError(f"{loc.uri}: missing (`python -m pipeline verify` lists every problem)") from None
    with f:
        while block := f.read(CHUNK):
            yield block


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=not sys.stderr.isatty(), leave=False)


@dataclass
class Report:
    checked: int = 0
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    extra: list[str] = field(default_factory=list)
    counts: str | None = None  # the first count the manifest records that its files or its own sums contradict

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.extra or self.counts)

    def lines(self) -> list[str]:
        out = [f"missing  {p}" for p in self.missing]
        out += [f"corrupt  {p}: {why}" for p, why in self.corrupt]
        out += [f"extra    {p}" for p in self.extra]
        out += [f"counts   {self.counts}"] if self.counts else []
        summary = (
            f"{len(self.ok)}/{self.checked} files verified"
            + (f", {len(self.missing)} missing" if self.missing else "")
            + (f", {len(self.corrupt)} corrupt" if self.corrupt else "")
            + (f", {len(self.extra)} extra" if self.extra else "")
            + (", counts do not add up" if self.counts else "")
        )
        return out + [summary]


def _listed_under(root: Location) -> list[str]:
    """Every file under root, relative to it; bookkeeping (names starting with _ or .) and sidecars left out."""
    try:
        infos = root.fs.get_file_info(pafs.FileSelector(root.path, recursive=True, allow_not_found=True))
    except OSError:
        return []
    rels = []
    for info in infos:
        if info.type != pafs.FileType.File:
            continue
        rel = posixpath.relpath(info.path, root.path)
        if any(part.startswith(("_", ".")) for part in rel.split("/")) or rel in SIDECARS:
            continue
        rels.append(rel)
    return rels


def verify(uri: str | Path) -> Report:
    corpus = open_manifest(uri)
    entries = corpus.manifest["files"]
    report = Report(checked=len(entries))
    bar = _bar(sum(f["bytes"] for f in entries), "verify")
    for entry in entries:
        loc = corpus.location(entry)
        info = loc.fs.get_file_info(loc.path)
        if info.type != pafs.FileType.File:
            report.missing.append(entry["path"])
            continue
        if info.size != entry["bytes"]:
            report.corrupt.append((entry["path"], f"{info.size:,} bytes, manifest says {entry['bytes']:,}"))
            bar.update(entry["bytes"])
            continue
        h = hashlib.sha256()
        for block in _chunks(loc):
            h.update(block)
            bar.update(len(block))
        got = h.hexdigest()
        if got != entry["sha256"]:
            report.corrupt.append((entry["path"], f"sha256 {got[:16]}…, manifest says {entry['sha256'][:16]}…"))
        else:
            report.ok.append(entry["path"])
    bar.close()
    listed = {f["path"] for f in entries}
    report.extra = sorted(p for p in _listed_under(corpus.root) if p not in listed)
    report.counts = count_mismatch(corpus, set(report.ok))
    return report


def _rows_in_file(loc: Location) -> int | None:
    """Rows a file's own metadata records (a Parquet footer; a token shard's `n_tokens`): footers only, cheap."""
    try:
        if loc.path.endswith(".parquet"):
            with loc.fs.open_input_file(loc.path) as f:
                return int(pq.ParquetFile(f).metadata.num_rows)
        if loc.path.endswith(".arrow"):
            with loc.fs.open_input_file(loc.path) as f:
                meta = pa.ipc.open_file(f).schema.metadata or {}
            return int(meta[b"n_tokens"]) if b"n_tokens" in meta else None
    except (OSError, pa.ArrowInvalid, ValueError) as e:
        raise PipelineError(f"{loc.uri}: unreadable ({e})") from None
    return None


def _file_counts(corpus: Corpus) -> list[tuple[dict[str, Any], str, int]]:
    """(file entry, what is counted, the count its manifest records) for every file whose own metadata holds it."""
    if corpus.stage is None:  # a published manifest: rows per document and index file, tokens per token shard
        return [(f, k, f[k]) for f in corpus.manifest["files"] for k in ("rows", "tokens") if isinstance(f.get(k), int)]
    out = []
    for shard in corpus.stage.get("shards", []):
        # fetch's index keeps the failed URLs too; filter's rejected/ holds only some drops
        rows = shard.get("rows_in") if corpus.stage.get("stage") == "fetch" else shard.get("rows_out")
        for f in shard["files"]:
            if f["path"].endswith(".parquet") and not f["path"].startswith("rejected/") and isinstance(rows, int):
                out.append((f, "rows", rows))
            elif f["path"].endswith(".arrow") and isinstance(shard.get("tokens"), int):
                out.append((f, "tokens", shard["tokens"]))
    return out


def count_mismatch(corpus: Corpus, intact: set[str]) -> str | None:
    """The first count a manifest records that does not hold: a file's rows against its own metadata, a shard's or
    the stage's `rows_in - drops == rows_out`, the stage's totals against the sums of its shards."""
    for entry, what, want in _file_counts(corpus):
        if entry["path"] not in intact:
            continue  # already reported as missing or corrupt
        got = _rows_in_file(corpus.location(entry))
        if got is not None and got != want:
            return f"{entry['path']}: holds {got:,} {what}, its manifest records {want:,}"
    m = corpus.stage
    if m is None:
        totals = corpus.manifest.get("totals", {})
        docs = sum(f["rows"] for f in corpus.files("documents") if isinstance(f.get("rows"), int))
        if isinstance(totals.get("documents"), int) and docs != totals["documents"]:
            return f"totals.documents {totals['documents']:,} != {docs:,}, the sum of its document files' rows"
        for split, n in (totals.get("tokens") or {}).items():
            got = sum(f["tokens"] for f in corpus.files("tokens", split))
            if got != n:
                return f"totals.tokens.{split} {n:,} != {got:,}, the sum of its {split} token shards"
        return None
    return stage_count_mismatch(m)


def _balance(where: str, rec: dict[str, Any]) -> str | None:
    if not all(isinstance(rec.get(k), int) for k in ("rows_in", "rows_out")) or not isinstance(rec.get("drops"), dict):
        return None
    dropped = sum(rec["drops"].values())
    if rec["rows_in"] - dropped != rec["rows_out"]:
        return f"{where}: rows_in {rec['rows_in']:,} - drops {dropped:,} != rows_out {rec['rows_out']:,}"
    return None


def _sum_mismatch(m: dict[str, Any], key: str, shards: list[dict[str, Any]]) -> str | None:
    if isinstance(m.get(key), int) and shards and all(isinstance(s.get(key), int) for s in shards):
        got = sum(s[key] for s in shards)
        if got != m[key]:
            return f"stage {key} {m[key]:,} != {got:,}, the sum of its shards'"
    return None


def stage_count_mismatch(m: dict[str, Any]) -> str | None:
    shards = m.get("shards", [])
    for shard in shards:
        if why := _balance(f"shard {shard.get('name', '?')}", shard):
            return why
    if why := _balance("stage", m):
        return why
    stage = m.get("stage")
    # tokenize counts each document once, by its document shard (its token shards hold the same documents)
    counted = (
        [s for s in shards if any(f["path"].startswith("documents/") for f in s["files"])]
        if stage == "tokenize"
        else shards
    )
    if why := _sum_mismatch(m, "rows_out", counted):
        return why
    if stage == "harvest":  # its rows_in counts dump lines, its drops include the map phase's
        return None
    if isinstance(m.get("drops"), dict) and all(isinstance(s.get("drops"), dict) for s in shards):
        summed: dict[str, int] = {}
        for s in shards:
            for reason, n in s["drops"].items():
                summed[reason] = summed.get(reason, 0) + n
        if {k: v for k, v in summed.items() if v} != {k: v for k, v in m["drops"].items() if v}:
            return f"stage drops {m['drops']} != {summed}, the sum of its shards'"
    if why := _sum_mismatch(m, "rows_in", counted):
        return why
    if stage == "tokenize" and isinstance(m.get("tokens"), dict):
        for split, n in m["tokens"].items():
            got = sum(s["tokens"] for s in shards if s.get("split") == split and isinstance(s.get("tokens"), int))
            if got != n:
                return f"stage tokens.{split} {n:,} != {got:,}, the sum of its {split} token shards'"
    return None


def _copy_checked(src: Location, dst: Location, entry: dict[str, Any], bar: tqdm, action: str) -> None:
    h = hashlib.sha256()
    dst.fs.create_dir(posixpath.dirname(dst.path), recursive=True)
    with dst.fs.open_output_stream(dst.path, compression=None) as out:
        for block in _chunks(src):
            h.update(block)
            out.write(block)
            bar.update(len(block))
    if h.hexdigest() != entry["sha256"]:
        dst.fs.delete_file(dst.path)
        raise PipelineError(
            f"{src.uri}: sha256 differs from the manifest; {action} stopped (`python -m pipeline verify` lists all)"
        )


def publish(manifest_uri: str | Path, to: str) -> str:
    """Copy every file, then the sidecars, then the manifest last (a copy cut short has no manifest, so it never
    looks complete). Returns the published manifest's URI; the source manifest records it under `published`."""
    from pipeline.corpus.card import write_card
    from pipeline.corpus.croissant import write_croissant

    corpus = open_manifest(manifest_uri)
    m = corpus.manifest
    dest = locate(to).join(m["name"], m["version"])
    # Onto its own files, a copy would truncate each one before reading it; into its root, it would be extra files
    # of the corpus. (Beside or below the manifest's own folder is fine: only its manifest.json must not be hit.)
    check_apart("publish", dest.uri, [corpus.root.uri])
    if overlap(dest.uri, corpus.at.join("..").uri) == "is":
        raise PipelineError(f"publish: output {dest.uri} is the folder of its input's manifest {corpus.at.uri}")
    if dest.fs.get_file_info(dest.join(MANIFEST).path).type == pafs.FileType.File:
        there = open_manifest(dest.join(MANIFEST).uri).manifest
        if [f["sha256"] for f in there["files"]] != [f["sha256"] for f in m["files"]]:
            raise PipelineError(f"{dest.uri}: already holds {m['name']} {m['version']} with other files")
    entries = m["files"]
    bar = _bar(sum(f["bytes"] for f in entries), "publish")
    for entry in entries:
        _copy_checked(corpus.location(entry), dest.join(entry["path"]), entry, bar, "publish")
    bar.close()
    published = {k: v for k, v in m.items() if k != "published"} | {"root": "."}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_croissant(published, folder)
        write_card(published, folder)
        for p in sorted(folder.iterdir()):
            write_bytes(dest.join(p.name), p.read_bytes())
    write_bytes(dest.join(MANIFEST), (json.dumps(published, indent=2, sort_keys=True) + "\n").encode())
    uri = dest.join(MANIFEST).uri
    if isinstance(corpus.at.fs, pafs.LocalFileSystem):
        m.setdefault("published", []).append({"uri": uri, "at": now_iso()})
        write_bytes(corpus.at, (json.dumps(m, indent=2, sort_keys=True) + "\n").encode())
    return uri


def download(manifest_uri: str | Path, to: str | Path) -> Path:
    """A local, verified copy of a corpus (every file hashed on the way); a local manifest is verified in place.
    Returns the local manifest path. Files already there with the right hash are not downloaded again."""
    corpus = open_manifest(manifest_uri)
    if isinstance(corpus.at.fs, pafs.LocalFileSystem):
        report = verify(corpus.at.path)
        if report.missing or report.corrupt:
            raise PipelineError(f"{corpus.at.uri}: " + "; ".join(report.lines()[:3]))
        return Path(corpus.at.path)
    m = corpus.manifest
    folder = Path(to) / m["name"] / m["version"]
    check_apart("download", folder, [corpus.root.uri])
    if overlap(folder, corpus.at.join("..").uri) == "is":
        raise PipelineError(f"download: output {folder} is the folder of its input's manifest {corpus.at.uri}")
    local = Location(pafs.LocalFileSystem(), str(folder.resolve()))
    bar = _bar(sum(f["bytes"] for f in m["files"]), "download")
    for entry in m["files"]:
        target = local.join(entry["path"])
        if Path(target.path).is_file() and sha256_file(target.path) == entry["sha256"]:
            bar.update(entry["bytes"])
            continue
        with atomic_path(target.path) as tmp:
            _copy_checked(corpus.location(entry), Location(local.fs, str(tmp)), entry, bar, "download")
    bar.close()
    path = folder / MANIFEST
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(m | {"root": ".", "fetched_from": corpus.at.uri}, indent=2, sort_keys=True) + "\n")
    return path


def token_files(manifest_path: str | Path, split: str) -> list[tuple[Path, dict[str, Any]]]:
    """The local token shards of one split with their manifest entries (sha256, bytes), in order (for the
    trainer)."""
    corpus = open_manifest(manifest_path)
    if not isinstance(corpus.at.fs, pafs.LocalFileSystem):
        raise PipelineError(f"{corpus.at.uri}: download the corpus first (python -m pipeline download URI --to DIR)")
    return [(Path(corpus.location(f).path), f) for f in corpus.files("tokens", split)]


def main_verify(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline verify", description="re-hash every file of a corpus")
    ap.add_argument(
        "manifest",
        help="manifest.json (or its folder), or a stage's output folder: a path or a URI (s3://, gs://, file://)",
    )
    args = ap.parse_args(argv)
    report = verify(args.manifest)
    for line in report.lines():
        print(line)
    return 0 if report.clean else 1


def main_publish(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline publish", description="copy a corpus to object storage")
    ap.add_argument("manifest")
    ap.add_argument("--to", required=True, help="destination folder URI; the corpus goes to <to>/<name>/<version>/")
    args = ap.parse_args(argv)
    print(f"published: {publish(args.manifest, args.to)}")
    return 0


def main_download(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline download", description="a verified local copy of a corpus")
    ap.add_argument("manifest", help="manifest URI")
    ap.add_argument("--to", default="runs/corpora", help="local folder (default: runs/corpora)")
    args = ap.parse_args(argv)
    print(f"local manifest: {download(args.manifest, args.to)}")
    return 0
