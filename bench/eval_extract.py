"""make eval-extract: extraction quality of the extract stage's Extractor on ../shared/data/html-benchmark (181 real
article pages with human-checked main text), scored as that benchmark scores extractors: `\\w+` tokens (Unicode),
multisets of word 4-grams of the prediction and of the truth; per page TP = overlap, FP = extra predicted,
FN = missed, the three normalised to sum 1 and averaged over pages; precision and recall from those averages, and
F1 = 2PR / (P + R).

    python bench/eval_extract.py [--set favor_precision=true] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared_data import SHARED  # noqa: E402

from pipeline.stages.extract import ExtractConfig, Extractor  # noqa: E402
from pipeline.web.replay import html_benchmark_pages  # noqa: E402

WORD = re.compile(r"\w+")


def shingles(text: str, n: int = 4) -> Counter:
    words = WORD.findall(text or "")
    return Counter(tuple(words[i : i + n]) for i in range(max(len(words) - n + 1, 0)))


def page_counts(predicted: str, truth: str) -> tuple[float, float, float]:
    """(tp, fp, fn) normalised to sum 1; a page where both are empty is a perfect (1, 0, 0)."""
    p, t = shingles(predicted), shingles(truth)
    tp = sum((p & t).values())
    fp, fn = sum(p.values()) - tp, sum(t.values()) - tp
    total = tp + fp + fn
    return (1.0, 0.0, 0.0) if total == 0 else (tp / total, fp / total, fn / total)


def score(pairs: list[tuple[str, str]]) -> dict[str, float]:
    counts = [page_counts(pred, truth) for pred, truth in pairs]
    tp, fp, fn = (statistics.fmean(c[i] for c in counts) for i in range(3))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "html-benchmark"))
    ap.add_argument("--set", action="append", default=[], help="extract setting, key=value (TOML value)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    overrides = {k: tomllib.loads(f"v = {v}")["v"] for k, v in (s.split("=", 1) for s in args.set)}
    cfg = ExtractConfig(input="-", output="-", **overrides)
    extractor = Extractor(cfg)
    truth = {
        item["url"]: item["articleBody"]
        for item in json.loads((Path(args.data) / "ground-truth.json").read_text()).values()
    }
    pairs, started = [], time.perf_counter()
    for url, html in html_benchmark_pages(args.data):
        pairs.append((extractor(html, url).text or "", truth[url]))
    seconds = time.perf_counter() - started
    result = {k: round(v, 4) for k, v in score(pairs).items()} | {
        "pages": len(pairs),
        "empty": sum(1 for p, _ in pairs if not p),
        "seconds": round(seconds, 1),
        "settings": overrides,
    }
    print(json.dumps(result, indent=2))
    p, r, f1 = result["precision"], result["recall"], result["f1"]
    print(f"extract: F1 {f1:.3f} (precision {p:.3f}, recall {r:.3f}) on {len(pairs)} pages")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
