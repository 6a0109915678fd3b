"""make eval-langid: the language decision (extract's fastText lid.176 scores, filter's threshold) on the labelled
sentences of ../shared/data/langid (~500 per language, 75 languages), one sentence at a time and as documents of
10 sentences of one language. For English: the share kept; for every other language: the share dropped.

    python bench/eval_langid.py [--threshold 0.5] [--sentences-per-doc 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared_data import SHARED  # noqa: E402

from pipeline.text.langid import LanguageScorer  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ALIASES = {"nb": "no"}  # the data's label -> lid.176's label for the same language


def kept(langs: list[str], scores: list[float], threshold: float) -> list[bool]:
    """What the filter decides with languages=["en"] and min_lang_score=threshold."""
    return [lang == "en" and score >= threshold for lang, score in zip(langs, scores)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED / "langid" / "sentences"))
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--sentences-per-doc", type=int, default=10)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    scorer = LanguageScorer()
    covered = {label.removeprefix("__label__") for label in scorer.model.get_labels()}
    per_lang: dict[str, dict] = {}
    for path in sorted(Path(args.data).glob("*.txt.gz")):
        label = path.name.split(".")[0]
        lines = [s for s in gzip.decompress(path.read_bytes()).decode().splitlines() if s.strip()]
        k = args.sentences_per_doc
        docs = [" ".join(lines[i : i + k]) for i in range(0, len(lines) - k + 1, k)]
        result = {"covered": ALIASES.get(label, label) in covered, "sentences": len(lines), "docs": len(docs)}
        for unit, texts in (("sentence", lines), ("doc", docs)):
            langs, scores = scorer(texts)
            for t in THRESHOLDS:
                share = statistics.fmean(kept(langs, scores, t))
                result[f"{unit}_{'kept' if label == 'en' else 'dropped'}@{t}"] = round(
                    share if label == "en" else 1 - share, 4
                )
        per_lang[label] = result
    t = args.threshold
    others = {k: v for k, v in per_lang.items() if k != "en"}
    covered_others = {k: v for k, v in others.items() if v["covered"]}
    summary = {
        "threshold": t,
        "english_docs_kept": per_lang["en"][f"doc_kept@{t}"],
        "english_sentences_kept": per_lang["en"][f"sentence_kept@{t}"],
        "non_english_docs_dropped_min_covered": min(v[f"doc_dropped@{t}"] for v in covered_others.values()),
        "non_english_docs_dropped_mean_covered": round(
            statistics.fmean(v[f"doc_dropped@{t}"] for v in covered_others.values()), 4
        ),
        "covered_languages_under_99pct_docs_dropped": sorted(
            k for k, v in covered_others.items() if v[f"doc_dropped@{t}"] < 0.99
        ),
        "not_in_lid176": sorted(k for k, v in others.items() if not v["covered"]),
        "not_in_lid176_docs_dropped": {k: v[f"doc_dropped@{t}"] for k, v in others.items() if not v["covered"]},
        "english_docs_kept_by_threshold": {x: per_lang["en"][f"doc_kept@{x}"] for x in THRESHOLDS},
        "min_covered_docs_dropped_by_threshold": {
            x: min(v[f"doc_dropped@{x}"] for v in covered_others.values()) for x in THRESHOLDS
        },
    }
    print(json.dumps(summary, indent=2))
    print(
        f"langid @ {t}: English documents kept {summary['english_docs_kept']:.2%}; non-English documents dropped "
        f">= {summary['non_english_docs_dropped_min_covered']:.2%} in each of the {len(covered_others)} languages "
        f"lid.176 covers; not covered: {', '.join(summary['not_in_lid176']) or 'none'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "per_language": per_lang}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
