"""Croissant 1.0 JSON-LD for a corpus, generated from its manifest (https://docs.mlcommons.org/croissant/).

    <folder>/croissant.json   beside manifest.json; every contentUrl is relative to this folder (manifest `root`)

One `cr:FileObject` per manifest file (sha256, size, format); `cr:FileSet`s per kind and per kind+split (globs, for
tools that read many files at once); RecordSets `documents` (one field per column of the documents Parquet files,
from `documents_schema`) and `token_index`. Token shards have no RecordSet: they are one uint16 array each, read by
memory-mapping (the description says how).

mlcroissant resolves a FileSet's globs only under the JSON-LD's own folder (it walks that folder; `../` never
matches), so FileSets and RecordSets are written only where the data lies under that folder. A local manifest's
corpus lies elsewhere (`root` "../../../tokens"): its folder gets a Croissant of the files alone (each contentUrl
resolves from there, with its sha256), and the whole one, record sets included, is written at the corpus root
(`<root>/croissant.json`, `root` "."), where every record reads back. A published corpus (`root` ".") has one.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from pathlib import Path
from typing import Any

from pipeline.core.dataset import write_json
from pipeline.core.errors import PipelineError
from pipeline.text.token_format import INDEX_SCHEMA

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
# The standard 1.0 @context (as in mlcommons/croissant datasets/1.0), with the two terms mlcroissant 1.1 also
# expects (equivalentProperty, samplingRate): without them it logs that the context is not standard.
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
FORMATS = {
    ".parquet": "application/x-parquet",
    ".arrow": "application/vnd.apache.arrow.file",
    ".json": "application/json",
}
INDEX_NOTES = {
    "token_start": "offset of the document's first token in the token shard this index file describes",
    "n_tokens": "the document's tokens, EOT included",
    "documents_file": "the documents Parquet file holding its text, relative to the dataset root",
    "documents_row": "its row in that file",
}


def croissant(manifest: dict[str, Any], *, url: str | None = None, creator: str | None = None) -> dict[str, Any]:
    """The Croissant JSON-LD of a corpus. `url` and `creator` default to the manifest's own keys, then to "."
    (the folder holding the JSON-LD, i.e. the corpus) and the pipeline's name."""
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": manifest["name"],
        "description": description(manifest),
        "license": manifest.get("license") or "unspecified",
        "url": url or manifest.get("url") or ".",
        "version": manifest["version"],
        "datePublished": manifest["created"],
        # Croissant 1.0 requires a creator; a manifest names none, so the software that built the corpus stands in.
        "creator": {"@type": "sc:Organization", "name": creator or manifest.get("creator") or "openwebtext-pipeline"},
        "citeAs": cite_as(manifest, url or manifest.get("url")),
        "keywords": ["language modeling", "web text", "OpenWebText", "Reddit", "GPT-2"],
        "inLanguage": languages(manifest),
        "rai:dataCollection": " ".join(build_steps(manifest)),
        "rai:dataCollectionRawData": raw_data(manifest),
        "rai:dataLimitations": limitations(manifest),
        "rai:dataBiases": biases(manifest),
        "rai:personalSensitiveInformation": personal_information(manifest),
        "distribution": distribution(manifest),
        "recordSet": [] if outside(manifest) else record_sets(manifest),
    }


def write_croissant(
    manifest: dict[str, Any], folder: Path, *, url: str | None = None, creator: str | None = None
) -> Path:
    """`folder`/croissant.json; for a corpus outside `folder`, also the whole one at its root (see above).
    Returns the path of the one whose records read back."""
    path = Path(folder) / "croissant.json"
    write_json(path, croissant(manifest, url=url, creator=creator))
    if not outside(manifest):
        return path
    whole = corpus_root(manifest, Path(folder)) / "croissant.json"
    write_json(whole, croissant(manifest | {"root": "."}, url=url, creator=creator))
    return whole


def outside(manifest: dict[str, Any]) -> bool:
    """Whether the corpus lies outside the manifest's folder, where mlcroissant's globs cannot reach it."""
    root = posixpath.normpath(manifest.get("root", "."))
    return posixpath.isabs(root) or root == ".." or root.startswith("../")


def corpus_root(manifest: dict[str, Any], folder: Path) -> Path:
    return Path(os.path.normpath(folder / manifest.get("root", ".")))


def content_url(manifest: dict[str, Any], path: str) -> str:
    """A file's path as seen from the manifest's folder: `root` joined, posix, normalized ("./a" -> "a")."""
    return posixpath.normpath(posixpath.join(manifest.get("root", "."), path))


def encoding_format(path: str) -> str:
    return FORMATS.get(posixpath.splitext(path)[1], "application/octet-stream")


def description(manifest: dict[str, Any]) -> str:
    text = manifest.get("description") or f"{manifest['name']}: web text linked from Reddit, GPT-2 tokenized."
    out = f"{text.strip()}\n\n{reading_note(manifest)}"
    if outside(manifest):
        whole = posixpath.join(posixpath.normpath(manifest["root"]), "croissant.json")
        out += (
            f"\n\nThe corpus lies outside this file's folder, where Croissant globs cannot reach it, so this file "
            f"lists its files only; the record sets are in {whole}, beside the data. A published copy "
            "(python -m pipeline publish) has both in one file."
        )
    return out


def reading_note(manifest: dict[str, Any]) -> str:
    tok = manifest.get("tokenizer", {})
    kinds = {e["kind"] for e in manifest.get("files", [])}
    eot = f"the end-of-text token {tok['eot_token']}" if "eot_token" in tok else "the end-of-text token"
    position = tok.get("eot_position", "after")
    where = {"after": "followed", "before": "preceded"}.get(position, f"{position} (eot_position)")
    parts = [
        f"Token shards ({tok.get('dtype', 'uint16')} Arrow IPC files, one column `tokens` in a single chunk, format "
        f"{tok.get('format', 'owt-tokens')} v{tok.get('format_version', '1')}) are read by memory-mapping: "
        "pyarrow.memory_map + pyarrow.ipc.open_file(...).read_all().column('tokens').chunk(0)"
        ".to_numpy(zero_copy_only=True).",
        f"Every document is {where} by {eot}.",
    ]
    if "token_index" in kinds:
        parts.append("The token_index Parquet files map each shard's token ranges back to documents (file, row).")
    if "documents" in kinds:
        parts.append("The documents Parquet files hold the text and its provenance.")
    return " ".join(parts)


def cite_as(manifest: dict[str, Any], url: str | None) -> str:
    key = "".join(c if c.isalnum() else "_" for c in f"{manifest['name']}_{manifest['version']}")
    fields = [
        f"title = {{{manifest['name']} (version {manifest['version']})}}",
        f"year = {{{str(manifest['created'])[:4]}}}",
    ]
    if manifest.get("code_version"):
        fields.append(f"note = {{Built with openwebtext-pipeline {manifest['code_version']}}}")
    if url:
        fields.append(f"howpublished = {{\\url{{{url}}}}}")
    return "@misc{" + key + ",\n  " + ",\n  ".join(fields) + "\n}"


def raw_data(manifest: dict[str, Any]) -> str:
    inputs = manifest.get("inputs", [])
    if not inputs:
        return "Reddit submissions; the dumps read are not listed in the manifest."
    names = ", ".join(i["name"] for i in inputs)
    return f"Reddit submission dumps ({len(inputs)}; sha256 of each in manifest.json): {names}."


# --- facts shared with the dataset card (pipeline/corpus/card.py) -----------------------------------------------------


def stage_config(manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    for st in manifest.get("stages", []):
        if st.get("stage") == stage:
            return st.get("config") or {}
    return {}


def languages(manifest: dict[str, Any]) -> list[str]:
    langs = stage_config(manifest, "filter").get("languages")
    return list(langs) if langs else ["en"]


def settings(keys: list[str], config: dict[str, Any]) -> str:
    shown = [f"{k}={fmt_value(config[k])}" for k in keys if config.get(k) is not None]
    return ", ".join(shown)


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, list) and all(isinstance(x, dict) and "op" in x for x in v) and v:
        return "[" + "; ".join(fmt_rule(x) for x in v) + "]"  # filter's rules
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) if isinstance(x, bool) else str(x) for x in v) + "]"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def build_steps(manifest: dict[str, Any]) -> list[str]:
    """One sentence per stage, oldest first, with the settings it ran with: the text and keys its entry in
    chain.py declares, as its stage manifest recorded them."""
    steps = []
    for st in manifest.get("stages", []):
        name = st.get("stage", "?")
        text = st.get("about") or f"Stage {name}."
        shown = settings(st.get("shown") or [], st.get("config") or {})
        steps.append(f"{name}: {text}" + (f" ({shown})" if shown else ""))
    return steps


def limitations(manifest: dict[str, Any]) -> list[str]:
    filt = stage_config(manifest, "filter")
    out = []
    if filt.get("languages"):
        score = filt.get("min_lang_score")
        rule = f" with a fastText lid.176 score of at least {score}" if score is not None else ""
        out.append(
            f"Language: only documents identified as {', '.join(filt['languages'])}{rule} are kept; language "
            "identification makes mistakes, and other languages are absent."
        )
    out.append(
        "Pages were fetched when the corpus was built, not when they were linked: some had changed or vanished; "
        "extraction can keep boilerplate or lose parts of the main text."
    )
    rules = filt.get("rules") or []
    if rules:
        shown = "; ".join(fmt_rule(r) for r in rules)
        out.append(f"Also dropped by these rules on the documents' annotations: {shown}.")
    if filt.get("quality_rules") is False and not rules:
        out.append("No quality or toxicity filter beyond language and length: offensive and low-quality text remains.")
    elif filt.get("quality_rules") is False:
        out.append("No filter beyond language, length and the rules above: offensive and low-quality text may remain.")
    return out


def fmt_rule(rule: dict[str, Any]) -> str:
    """A filter rule as the card says it: `classifier_score < 0.5 (low_quality)`."""
    return f"{rule.get('column')} {rule.get('op')} {fmt_value(rule.get('value'))} ({rule.get('reason')})"


def biases(manifest: dict[str, Any]) -> list[str]:
    harvest = stage_config(manifest, "harvest")
    score = f" with a score of at least {harvest['min_score']}" if "min_score" in harvest else ""
    out = [
        f"Sources are web pages linked from Reddit submissions{score}: topics, viewpoints and sites follow what "
        "Reddit users posted and upvoted, not the web at large."
    ]
    if len(manifest.get("domains") or {}) > 10 and (share := top_share(manifest, 10)):
        out.append(f"The 10 most frequent domains hold {share:.1%} of the documents.")
    return out


def personal_information(manifest: dict[str, Any]) -> list[str]:
    return [
        "No PII scrubbing: text is kept as published on the source pages and may contain names, contact details "
        "and other personal information; documents carry their URLs and Reddit submission ids."
    ]


def top_share(manifest: dict[str, Any], n: int) -> float | None:
    """Share of all documents in the n largest domains (`domains` lists at most 1000 of them)."""
    domains = manifest.get("domains") or {}
    total = manifest.get("totals", {}).get("documents") or sum(domains.values())
    if not domains or not total:
        return None
    return sum(sorted(domains.values(), reverse=True)[:n]) / total


# --- distribution ---------------------------------------------------------------------------------------------


def file_object(manifest: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    obj = {
        "@type": "cr:FileObject",
        "@id": entry["path"],
        "name": entry["path"],
        "contentUrl": content_url(manifest, entry["path"]),
        "encodingFormat": encoding_format(entry["path"]),
        "contentSize": f"{entry['bytes']} B",
        "sha256": entry["sha256"],
    }
    if note := file_note(entry):
        obj["description"] = note
    return obj


def file_note(entry: dict[str, Any]) -> str:
    parts = [entry.get("kind", ""), f"split {entry['split']}" if entry.get("split") else ""]
    for unit in ("tokens", "documents", "rows"):
        if unit in entry:
            parts.append(f"{entry[unit]:,} {unit}")
    return ", ".join(p for p in parts if p)


def file_groups(manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """FileSet id -> its files: one set per kind, and one per kind and split where a kind has several splits."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest.get("files", []):
        groups.setdefault(fileset_id(entry["kind"]), []).append(entry)
    for kind in sorted({e["kind"] for e in manifest.get("files", [])}):
        splits = sorted({e["split"] for e in manifest["files"] if e["kind"] == kind and e.get("split")})
        if len(splits) > 1:
            for split in splits:
                groups[fileset_id(kind, split)] = [
                    e for e in manifest["files"] if e["kind"] == kind and e.get("split") == split
                ]
    return groups


def fileset_id(kind: str, split: str | None = None) -> str:
    return f"{kind}-{split}-files" if split else f"{kind}-files"


def includes(manifest: dict[str, Any], group: list[dict[str, Any]]) -> list[str]:
    """Globs for a group of files: `folder/*.ext`, else `folder/<name prefix>*.ext` (index/train-*.parquet beside
    index/val-*.parquet), else the exact paths: the first that takes no file of another group."""
    urls = [content_url(manifest, e["path"]) for e in group]
    others = {content_url(manifest, e["path"]) for e in manifest.get("files", [])} - set(urls)
    for named in (False, True):
        globs = sorted({glob_for(u, urls, named) for u in urls})
        # fnmatchcase, as mlcroissant matches: `*` also crosses '/'.
        if not any(fnmatch.fnmatchcase(o, g) for o in others for g in globs):
            return globs
    return sorted(urls)


def glob_for(url: str, group: list[str], named: bool) -> str:
    folder, name = posixpath.split(url)
    stem, ext = posixpath.splitext(name)
    prefix = ""
    if named:
        stems = [posixpath.splitext(posixpath.basename(u))[0] for u in group if posixpath.dirname(u) == folder]
        common = posixpath.commonprefix(stems)
        # cut back to a separator, so shards added later (train-00010 after train-00009) still match
        cut = max(common.rfind("-"), common.rfind("_"), common.rfind("."))
        prefix = common[: cut + 1] if cut >= 0 else ""
    return posixpath.join(folder, f"{prefix}*{ext}")


def file_set(manifest: dict[str, Any], set_id: str, group: list[dict[str, Any]]) -> dict[str, Any]:
    formats = sorted({encoding_format(e["path"]) for e in group})
    return {
        "@type": "cr:FileSet",
        "@id": set_id,
        "name": set_id,
        "description": f"{len(group)} files, {sum(e['bytes'] for e in group):,} bytes",
        "encodingFormat": formats[0] if len(formats) == 1 else formats,
        "includes": includes(manifest, group),
    }


def distribution(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    objects = [file_object(manifest, e) for e in manifest.get("files", [])]
    if outside(manifest):
        return objects  # globs out of the folder would validate, then match nothing
    sets = [file_set(manifest, set_id, group) for set_id, group in file_groups(manifest).items()]
    return objects + sets


# --- record sets ----------------------------------------------------------------------------------------------


def data_type(arrow_type: str) -> tuple[str, bool]:
    """str(pyarrow type) -> (Croissant dataType, repeated). Lists are repeated fields of their item type."""
    t = arrow_type.strip()
    for prefix in ("list<", "large_list<", "list_view<", "large_list_view<"):
        if t.startswith(prefix) and t.endswith(">"):
            item = t[len(prefix) : -1].split(":", 1)[-1]
            inner, nested = data_type(item)
            if nested:
                raise PipelineError(f"Croissant: nested list type {arrow_type!r} has no mapping")
            return inner, True
    if t in ("string", "large_string", "utf8", "large_utf8", "string_view"):
        return "sc:Text", False
    if t.startswith(("int", "uint")):
        return "sc:Integer", False
    if t in ("float", "double", "halffloat", "float16", "float32", "float64") or t.startswith("decimal"):
        return "sc:Float", False
    if t in ("bool", "boolean"):
        return "sc:Boolean", False
    # A timestamp is a point in time (sc:DateTime); a date32/date64 is a calendar day (sc:Date).
    if t.startswith("timestamp"):
        return "sc:DateTime", False
    if t.startswith("date"):
        return "sc:Date", False
    raise PipelineError(f"Croissant: no dataType for Arrow type {arrow_type!r}; add a mapping in corpus/croissant.py")


def column_field(record_set: str, set_id: str, column: dict[str, str], note: str | None = None) -> dict[str, Any]:
    dtype, repeated = data_type(column["type"])
    field: dict[str, Any] = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{column['name']}",
        "name": column["name"],
        "dataType": dtype,
        "source": {"fileSet": {"@id": set_id}, "extract": {"column": column["name"]}},
    }
    if note:
        field["description"] = note
    if repeated:
        field["repeated"] = True
    return field


def documents_record_set(manifest: dict[str, Any]) -> dict[str, Any] | None:
    schema = manifest.get("documents_schema") or []
    if not schema or not any(e["kind"] == "documents" for e in manifest.get("files", [])):
        return None
    rs: dict[str, Any] = {
        "@type": "cr:RecordSet",
        "@id": "documents",
        "name": "documents",
        "description": "One record per document: its text, URL, language scores and the Reddit submissions "
        "that linked it; `split` says whether its tokens are in train or val.",
        "field": [column_field("documents", fileset_id("documents"), c) for c in schema],
    }
    if any(c["name"] == "url_hash" for c in schema):
        rs["key"] = {"@id": "documents/url_hash"}
    return rs


def token_index_record_set(manifest: dict[str, Any]) -> dict[str, Any] | None:
    if not any(e["kind"] == "token_index" for e in manifest.get("files", [])):
        return None
    set_id = fileset_id("token_index")
    fields = [
        column_field("token_index", set_id, c, INDEX_NOTES.get(c["name"]))
        for c in manifest.get("token_index_schema") or [{"name": f.name, "type": str(f.type)} for f in INDEX_SCHEMA]
    ]
    # Which index file a row came from: token_start counts within the token shard that file describes.
    fields.append(
        {
            "@type": "cr:Field",
            "@id": "token_index/index_file",
            "name": "index_file",
            "description": "the index file of this row: index/<split>-NNNNN.parquet describes "
            "<split>/tokens-NNNNN.arrow",
            "dataType": "sc:Text",
            "source": {"fileSet": {"@id": set_id}, "extract": {"fileProperty": "fullpath"}},
        }
    )
    return {
        "@type": "cr:RecordSet",
        "@id": "token_index",
        "name": "token_index",
        "description": "Per document in each token shard: where its tokens start, how many, and where its text is.",
        "field": fields,
    }


def record_sets(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [rs for rs in (documents_record_set(manifest), token_index_record_set(manifest)) if rs]
