"""The dataset card of a corpus, generated from its manifest: README.md (Hugging Face style, YAML front matter)
plus funnel.png and domains.png beside it, linked by relative paths.

Everything in the card comes from the manifest (no clock, no file system), so the same manifest gives the same
card. Stage settings that a manifest lacks are left out, never guessed.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.core.dataset import atomic_path
from pipeline.corpus.croissant import (
    biases,
    build_steps,
    content_url,
    file_groups,
    fileset_id,
    includes,
    languages,
    limitations,
    outside,
    personal_information,
    top_share,
)

CARD = "README.md"
FUNNEL_PNG = "funnel.png"
DOMAINS_PNG = "domains.png"
TOP_DOMAINS = 30

SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
    (10_000_000_000, "1B<n<10B"),
]


# --- formatting -----------------------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def cell(v: Any) -> str:
    text = f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
    return text.replace("|", "\\|").replace("\n", " ")


def size_category(n: int) -> str:
    for bound, label in SIZE_CATEGORIES:
        if n < bound:
            return label
    return "n>10B"


# --- sections -------------------------------------------------------------------------------------------------


def front_matter(manifest: dict[str, Any]) -> list[str]:
    # Scalars as JSON strings: a JSON string is a valid YAML double-quoted scalar, so no YAML writer is needed.
    langs = languages(manifest)
    lines = ["---", "license: other", "language:"]
    lines += [f"- {json.dumps(x)}" for x in langs]
    lines += [
        f"pretty_name: {json.dumps(manifest['name'] + ' ' + manifest['version'])}",
        "size_categories:",
        f"- {json.dumps(size_category(int(manifest.get('totals', {}).get('documents', 0))))}",
        "task_categories:",
        "- text-generation",
        "task_ids:",
        "- language-modeling",
        "annotations_creators:",
        "- no-annotation",
        "language_creators:",
        "- found",
        f"multilinguality: {'monolingual' if len(langs) == 1 else 'multilingual'}",
        "source_datasets:",
        "- original",
    ]
    lines += hf_configs(manifest)
    return lines + ["---"]


def hf_configs(manifest: dict[str, Any]) -> list[str]:
    # Documents and token index have different columns: without configs the Hub would read them as one table.
    groups = file_groups(manifest)
    lines = []
    for kind, config_name in (("documents", "documents"), ("token_index", "token_index")):
        if fileset_id(kind) not in groups:
            continue
        lines += [f"- config_name: {config_name}", "  data_files:"]
        splits = sorted({e["split"] for e in groups[fileset_id(kind)] if e.get("split")})
        if len(splits) > 1:
            for split in splits:
                lines.append(f"  - split: {split}")
                lines += [f"    path: {json.dumps(p)}" for p in includes(manifest, groups[fileset_id(kind, split)])]
        else:
            # one split: the Hub's name for "all of it" (the documents' `split` column says train or val)
            lines.append("  - split: train")
            lines += [f"    path: {json.dumps(p)}" for p in includes(manifest, groups[fileset_id(kind)])]
        if kind == "documents":
            lines.append("  default: true")
    return ["configs:", *lines] if lines else []


def summary(manifest: dict[str, Any]) -> list[str]:
    totals = manifest.get("totals", {})
    tokens = totals.get("tokens", {})
    by_split = totals.get("documents_by_split", {})
    inputs = manifest.get("inputs", [])
    parts = [f"{totals.get('documents', 0):,} documents"]
    if by_split:
        parts[0] += " (" + ", ".join(f"{n:,} {s}" for s, n in by_split.items()) + ")"
    if tokens:
        parts.append(f"{sum(tokens.values()):,} GPT-2 tokens")
    if inputs:
        parts.append(f"from {len(inputs)} Reddit dump file{'s' if len(inputs) != 1 else ''}")
    desc = (manifest.get("description") or "").strip()
    built = f"Version {manifest['version']}, built {str(manifest['created'])[:10]}"
    if manifest.get("code_version"):
        built += f" by openwebtext-pipeline {manifest['code_version']}"
    facts = f"{built}: " + ", ".join(parts) + "."
    return [desc, "", facts] if desc else [facts]


def build_section(manifest: dict[str, Any]) -> list[str]:
    lines = ["## How it was built", ""]
    for i, step in enumerate(build_steps(manifest), 1):
        name, _, text = step.partition(": ")
        lines.append(f"{i}. **{name}**: {text}")
    if not manifest.get("stages"):
        lines.append("The manifest records no stages.")
    rows = [
        [st.get("stage", "?"), st.get("rows_in", ""), st.get("rows_out", ""), f"{st.get('wall_time_s', 0):,.1f}"]
        for st in manifest.get("stages", [])
    ]
    if rows:
        lines += ["", *table(["stage", "rows in", "rows out", "wall time (s)"], rows)]
    lines += ["", "Every stage's full configuration, code version and output fingerprint are in `manifest.json`."]
    return lines


def funnel_rows(funnel: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    prev: dict[str, Any] | None = None
    for row in funnel:
        share = "—"
        # Shares only between rows that count the same thing: tokens are not a fraction of documents.
        if prev is not None and prev["count"] and is_tokens(prev) == is_tokens(row):
            share = f"{row['count'] / prev['count']:.1%}"
        rows.append([row["step"], row["count"], share])
        prev = row
    return rows


def is_tokens(row: dict[str, Any]) -> bool:
    return "token" in row["step"].lower()


def funnel_section(manifest: dict[str, Any], has_chart: bool) -> list[str]:
    funnel = manifest.get("funnel") or []
    lines = ["## Funnel", ""]
    if not funnel:
        return lines + ["The manifest records no funnel."]
    lines += table(["step", "count", "share of previous"], funnel_rows(funnel))
    if has_chart:
        lines += ["", f"![Funnel: count at each step, log scale]({FUNNEL_PNG})"]
    return lines


def drops_section(manifest: dict[str, Any]) -> list[str]:
    lines = ["## Drops by reason", ""]
    rows = []
    for st in manifest.get("stages", []):
        rows_in = st.get("rows_in") or 0
        for reason, n in sorted((st.get("drops") or {}).items(), key=lambda kv: (-kv[1], kv[0])):
            rows.append([st.get("stage", "?"), reason, n, f"{n / rows_in:.1%}" if rows_in else "—"])
    if not rows:
        return lines + ["No drops recorded."]
    return lines + table(["stage", "reason", "count", "share of stage input"], rows)


def domains_section(manifest: dict[str, Any], has_chart: bool) -> list[str]:
    domains = manifest.get("domains") or {}
    lines = ["## Domains", ""]
    if not domains:
        return lines + ["The manifest records no domain counts."]
    top = top_domains(domains, TOP_DOMAINS)
    lines.append(
        f"{len(domains):,} domains listed in the manifest; the top {len(top)} by documents"
        + (f" (the top 10 hold {top_share(manifest, 10):.1%} of all documents):" if len(domains) > 10 else ":")
    )
    if has_chart:
        lines += ["", f"![Top {len(top)} domains by documents]({DOMAINS_PNG})"]
    lines += ["", *table(["domain", "documents"], [[d, n] for d, n in top])]
    return lines


def top_domains(domains: dict[str, int], n: int) -> list[tuple[str, int]]:
    return sorted(domains.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def totals_section(manifest: dict[str, Any]) -> list[str]:
    totals = manifest.get("totals", {})
    rows: list[list[Any]] = [["documents", totals.get("documents", 0)]]
    rows += [[f"documents ({s})", n] for s, n in (totals.get("documents_by_split") or {}).items()]
    rows += [[f"tokens ({s})", n] for s, n in (totals.get("tokens") or {}).items()]
    rows.append(["files", len(manifest.get("files", []))])
    rows.append(["bytes", f"{totals.get('bytes', 0):,} ({human_bytes(totals.get('bytes', 0))})"])
    return ["## Totals", "", *table(["", "count"], rows)]


def layout_section(manifest: dict[str, Any]) -> list[str]:
    rows = []
    for kind in sorted({e["kind"] for e in manifest.get("files", [])}):
        splits = sorted({e.get("split") or "" for e in manifest["files"] if e["kind"] == kind})
        for split in splits:
            group = [e for e in manifest["files"] if e["kind"] == kind and (e.get("split") or "") == split]
            globs = includes(manifest, group)
            units = sum(e.get("tokens", e.get("rows", 0)) for e in group)
            unit = "tokens" if any("tokens" in e for e in group) else "rows"
            rows.append(
                [
                    kind,
                    split or "—",
                    ", ".join(f"`{g}`" for g in globs),
                    len(group),
                    f"{units:,} {unit}",
                    human_bytes(sum(e["bytes"] for e in group)),
                ]  # fmt: skip
            )
    lines = ["## Files", ""]
    if not rows:
        return lines + ["The manifest lists no files."]
    lines += table(["kind", "split", "files", "count", "content", "size"], rows)
    lines += ["", "Paths are relative to this folder. `manifest.json` lists every file with its sha256 and size;"]
    if outside(manifest):
        whole = posixpath.join(posixpath.normpath(manifest["root"]), "croissant.json")
        lines += [
            "`croissant.json` lists the same files (Croissant 1.0); the record sets (the Parquet files' columns) are",
            f"in `{whole}`, beside the data, as Croissant globs resolve only under their own folder.",
        ]
    else:
        lines.append("`croissant.json` describes the same files and the columns of the Parquet files (Croissant 1.0).")
    return lines


def loading_section(manifest: dict[str, Any]) -> list[str]:
    groups = file_groups(manifest)
    tok = manifest.get("tokenizer", {})
    docs = includes(manifest, groups[fileset_id("documents")]) if fileset_id("documents") in groups else []
    shards = [e for e in manifest.get("files", []) if e["kind"] == "tokens"]
    lines = ["## How to load", ""]
    if docs:
        glob = docs[0]
        lines += [
            "Documents (text, URL, provenance; the `split` column says train or val):",
            "",
            "```python",
            "import pandas as pd",
            f'df = pd.read_parquet("{posixpath.dirname(glob) or "."}")',
            "",
            "import duckdb",
            f"duckdb.sql(\"SELECT domain, count(*) AS n FROM '{glob}' GROUP BY domain ORDER BY n DESC\").show()",
            "",
            "from datasets import load_dataset",
            f'ds = load_dataset("parquet", data_files="{glob}", split="train")',
            "```",
            "",
        ]
    if shards:
        example = content_url(manifest, shards[0]["path"])
        eot = tok.get("eot_token", "the end-of-text token")
        lines += [
            f"Token shards: one `{tok.get('dtype', 'uint16')}` array per file, EOT ({eot}) after every document; "
            "memory-mapped, without a copy:",
            "",
            "```python",
            "import pyarrow as pa",
            f'source = pa.memory_map("{example}")',
            'tokens = pa.ipc.open_file(source).read_all().column("tokens").chunk(0).to_numpy(zero_copy_only=True)',
            "```",
            "",
        ]
    lines += [
        "Check every file against the manifest (missing, corrupt or extra files exit with status 1):",
        "",
        "```sh",
        "python -m pipeline verify manifest.json",
        "```",
    ]
    return lines


def inputs_section(manifest: dict[str, Any]) -> list[str]:
    inputs = manifest.get("inputs") or []
    lines = ["## Inputs", ""]
    if not inputs:
        return lines + ["The manifest lists no input dumps."]
    rows = [[i["name"], human_bytes(i.get("bytes", 0)), f"`{i.get('sha256', '')}`"] for i in inputs]
    return lines + table(["dump", "size", "sha256"], rows)


def tokenizer_section(manifest: dict[str, Any]) -> list[str]:
    tok = manifest.get("tokenizer") or {}
    lines = ["## Tokenizer", ""]
    if not tok:
        return lines + ["The manifest records no tokenizer."]
    return lines + table(["", ""], [[k, f"`{v}`"] for k, v in tok.items()])


def terms_section(manifest: dict[str, Any]) -> list[str]:
    return ["## License and terms", "", (manifest.get("license") or "No terms recorded in the manifest.").strip()]


def limitations_section(manifest: dict[str, Any]) -> list[str]:
    items = limitations(manifest) + biases(manifest) + personal_information(manifest)
    return ["## Limitations", "", *[f"- {x}" for x in items]]


def render(manifest: dict[str, Any], has_funnel: bool, has_domains: bool) -> str:
    sections = [
        front_matter(manifest),
        [f"# {manifest['name']} {manifest['version']}", "", *summary(manifest)],
        build_section(manifest),
        funnel_section(manifest, has_funnel),
        drops_section(manifest),
        domains_section(manifest, has_domains),
        totals_section(manifest),
        layout_section(manifest),
        loading_section(manifest),
        inputs_section(manifest),
        tokenizer_section(manifest),
        terms_section(manifest),
        limitations_section(manifest),
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


# --- charts ---------------------------------------------------------------------------------------------------


def bar_chart(path: Path, labels: list[str], counts: list[int], title: str, xlabel: str, colors: list[str]) -> None:
    # The object API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    log = xlabel.endswith("(log scale)")
    fig = Figure(figsize=(8, 0.9 + 0.3 * len(labels)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    y = list(range(len(labels)))
    bars = ax.barh(y, counts, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()  # first item on top
    ax.margins(y=0.01)
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=8)
    hi = max(counts or [1]) or 1
    if log:
        # limits first: they switch autoscaling off, so an all-zero funnel scales without a warning
        ax.set_xlim(max(min([c for c in counts if c > 0] or [1]) / 3, 0.5), hi * 8)  # room for the labels
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, hi * 1.2)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


def funnel_chart(manifest: dict[str, Any], path: Path) -> bool:
    funnel = manifest.get("funnel") or []
    if not funnel:
        return False
    labels = [row["step"] for row in funnel]
    counts = [int(row["count"]) for row in funnel]
    colors = ["#DD8452" if is_tokens(row) else "#4C72B0" for row in funnel]  # tokens: another unit
    title = f"{manifest['name']} {manifest['version']}: from Reddit submissions to tokens"
    bar_chart(path, labels, counts, title, "count (log scale)", colors)
    return True


def domains_chart(manifest: dict[str, Any], path: Path) -> bool:
    top = top_domains(manifest.get("domains") or {}, TOP_DOMAINS)
    if not top:
        return False
    counts = [n for _, n in top]
    title = f"Top {len(top)} domains by documents"
    bar_chart(path, [d for d, _ in top], counts, title, "documents", ["#4C72B0"] * len(top))
    return True


def write_card(manifest: dict[str, Any], folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    charts = {}
    for name, draw in ((FUNNEL_PNG, funnel_chart), (DOMAINS_PNG, domains_chart)):
        charts[name] = draw(manifest, folder / name)
        if not charts[name]:
            # A chart left from an earlier card would describe another manifest.
            (folder / name).unlink(missing_ok=True)
    path = folder / CARD
    with atomic_path(path) as tmp:
        tmp.write_text(render(manifest, charts[FUNNEL_PNG], charts[DOMAINS_PNG]))
    return path
