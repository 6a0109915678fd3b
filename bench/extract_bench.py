"""make bench-extract: documents/s per core of the extract stage on real pages (html-benchmark, Python docs and the
Debian handbook from ../shared/data/web-corpus), against, in the same run:

- direct: the same work without the stage: trafilatura.extract with the same options on every page, in this
  process, then one fastText lid.176 predict and one tiktoken count over the texts (our stage's overhead is the
  difference: WARC reading, Parquet, and the extraction process that enforces the time limit: its start, about a
  second, and each page's trip over a pipe);
- datatrove: its Trafilatura extractor and LanguageFilter (its own venv, .venv-datatrove: it pins trafilatura < 1.12)
  on the same pages with the same lid.176 model file.

    python bench/extract_bench.py [--runs 3] [--python-pages 200]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402

from bench.pages import fetched_dataset, real_pages  # noqa: E402
from pipeline.core.dataset import shard_name  # noqa: E402
from pipeline.core.stage import ShardTask  # noqa: E402
from pipeline.stages.annotate import AnnotateConfig, Plan, annotate_shard, chosen  # noqa: E402
from pipeline.stages.extract import ExtractConfig, extract_shard, trafilatura_config  # noqa: E402
from pipeline.text.langid import LanguageScorer, fasttext_model_path  # noqa: E402
from pipeline.text.vocab import token_counts  # noqa: E402
from pipeline.text.warc import iter_responses  # noqa: E402


def ours(index: Path, out: Path) -> tuple[float, int]:
    """The extract stage's task, then the annotate stage's (language and GPT-2 length, as datatrove's pipeline
    below scores the language): one shard each, as a Ray worker runs them."""
    cfg = ExtractConfig(input=str(index.parent), output=str(out / "docs"))
    t = time.perf_counter()
    rec = extract_shard(ShardTask(shard_name(0), [str(index)], cfg.output, cfg, None))
    docs = out / "docs" / f"{shard_name(0)}.parquet"
    acfg = AnnotateConfig(input=str(docs.parent), output=str(out / "annotated"))
    plan = Plan(tuple(chosen(acfg)), rec["files"][0]["sha256"])
    annotate_shard(ShardTask(shard_name(0), [str(docs)], acfg.output, acfg, plan, rec["files"][0]["sha256"]))
    return time.perf_counter() - t, rec["rows_out"]


def direct(pages: list[tuple[str, bytes]]) -> tuple[float, float, int]:
    """(seconds for everything, seconds for language scoring alone, documents)."""
    cfg = ExtractConfig(input="-", output="-")
    scorer = LanguageScorer()
    tconfig = trafilatura_config()
    t = time.perf_counter()
    texts = []
    for url, html in pages:
        text = trafilatura.extract(
            html,
            url=url,
            output_format="txt",
            favor_precision=cfg.favor_precision,
            favor_recall=cfg.favor_recall,
            include_comments=cfg.include_comments,
            include_tables=cfg.include_tables,
            with_metadata=False,
            config=tconfig,
        )
        if text and text.strip():
            texts.append(text.strip())
    s = time.perf_counter()
    scorer(texts)
    scoring = time.perf_counter() - s
    token_counts(texts)
    return time.perf_counter() - t, scoring, len(texts)


def datatrove(pages_file: Path) -> dict | None:
    python = ROOT / ".venv-datatrove" / "bin" / "python"
    if not python.exists():
        return None
    out = subprocess.run(
        [str(python), str(ROOT / "bench" / "datatrove_peer.py"), str(pages_file), str(fasttext_model_path())],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--python-pages", type=int, default=200)
    args = ap.parse_args()
    pages = real_pages(args.python_pages)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        index = fetched_dataset(pages, root / "fetched") / f"{shard_name(0)}.parquet"
        assert len(list(iter_responses(index.parent / "warc" / f"{shard_name(0)}.00000.warc.gz"))) == len(pages)
        pages_file = root / "pages.jsonl.gz"
        with gzip.open(pages_file, "wt") as f:
            for url, html in pages:
                f.write(json.dumps({"url": url, "html": html.decode("utf-8", errors="replace")}) + "\n")
        rows = []
        for run in range(args.runs):  # interleaved, so all see the same machine load
            t_ours, n_ours = ours(index, root / f"docs-{run}")
            t_direct, t_scoring, n_direct = direct(pages)
            peer = datatrove(pages_file)
            row = {
                "ours_docs_per_s": len(pages) / t_ours,
                "direct_docs_per_s": len(pages) / t_direct,
                "overhead": t_ours / t_direct - 1,
                "scoring_docs_per_s": n_direct / t_scoring,
                "kept_ours": n_ours,
                "kept_direct": n_direct,
            }
            if peer:
                row |= {
                    "datatrove_docs_per_s": len(pages) / peer["seconds"],
                    "ratio_vs_datatrove": peer["seconds"] / t_ours,
                }
            rows.append(row)
            print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
    med = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    result = {
        "pages": len(pages),
        "runs": args.runs,
        **med,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    line = (
        f"extract stage {med['ours_docs_per_s']:.1f} docs/s per core; direct trafilatura + fastText + tiktoken "
        f"{med['direct_docs_per_s']:.1f}; overhead {med['overhead']:+.1%}; language scoring alone "
        f"{med['scoring_docs_per_s']:,.0f} docs/s"
    )
    if "datatrove_docs_per_s" in med:
        line += (
            f"; datatrove {med['datatrove_docs_per_s']:.1f} docs/s (ours is {med['ratio_vs_datatrove']:.2f}x its rate)"
        )
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
