"""`make eval-annotators`: the annotators on real pages of ../shared/data, texts extracted by the extract stage's
own Extractor.

- quality (Gopher/C4 signals) with filter's default thresholds: the share of documents each rule would drop, on
  html-benchmark (181 human-checked news and blog articles: every drop there is a false positive), the Python 3.11
  docs and the Debian handbook (en-US);
- classifier (fastText, any supervised model): one trained here on half of the pages (articles against
  documentation, by source), scored on the other half: accuracy at 0.5 and ROC AUC;
- docs/s of each annotator on those texts (one process, after its model is loaded), median of --runs.

Prints JSON (and writes --out); BENCHMARKS.md keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pyarrow as pa  # noqa: E402
from e2e import handbook_pages, python_doc_pages  # noqa: E402
from shared_data import SHARED  # noqa: E402

from pipeline.annotators import annotator_class  # noqa: E402
from pipeline.stages.extract import ExtractConfig, Extractor  # noqa: E402
from pipeline.stages.filter import FilterConfig, fails  # noqa: E402
from pipeline.web.replay import html_benchmark_pages  # noqa: E402


def texts_of(pages: list[tuple[str, bytes]]) -> list[str]:
    extract = Extractor(ExtractConfig(input="-", output="-"))
    out = []
    for url, html in pages:
        got = extract(html, url)
        if got.text and got.text.strip():
            out.append(got.text.strip())
    return out


def corpora(python_pages: int) -> dict[str, list[str]]:
    handbook = [(url, html) for lang, url, html in handbook_pages(SHARED, langs=("en-US",))]
    return {
        "html-benchmark": texts_of(list(html_benchmark_pages(SHARED / "html-benchmark"))),
        "python-docs": texts_of(python_doc_pages(SHARED, limit=python_pages)),
        "debian-handbook": texts_of(handbook),
    }


def table(texts: list[str]) -> pa.Table:
    return pa.table({"url_hash": [f"{i:016x}" for i in range(len(texts))], "text": texts})


def quality_drops(texts: list[str]) -> dict[str, float]:
    """The share of documents each quality rule drops on its own, and the share any of them drops."""
    signals = annotator_class("quality")(annotator_class("quality").Options()).annotate(table(texts))
    rules = FilterConfig(input="-", output="-", quality_rules=True, min_tokens=0, min_lang_score=0).all_rules()[3:]
    by_reason: Counter[str] = Counter()
    anyone = [False] * len(texts)
    for rule in rules:
        hit = fails(signals, rule)
        by_reason[rule.reason] += int(hit.sum())
        anyone = [a or bool(h) for a, h in zip(anyone, hit)]
    out = {reason: round(n / len(texts), 4) for reason, n in sorted(by_reason.items())}
    return out | {"any_rule": round(sum(anyone) / len(texts), 4), "documents": len(texts)}


def roc_auc(scores: list[float], positive: list[bool]) -> float:
    """P(a random positive scores above a random negative), ties counting half."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def classifier(corpus: dict[str, list[str]], folder: Path, seed: int = 0) -> tuple[dict, str]:
    """Articles (html-benchmark) against documentation (the other two), trained on half, scored on the other."""
    import fasttext

    rng = random.Random(seed)
    labelled = [("article", t) for t in corpus["html-benchmark"]]
    labelled += [("docs", t) for name in ("python-docs", "debian-handbook") for t in corpus[name]]
    rng.shuffle(labelled)
    half = len(labelled) // 2
    train, test = labelled[:half], labelled[half:]
    (folder / "train.txt").write_text("".join(f"__label__{y} {' '.join(t.split())}\n" for y, t in train))
    model = fasttext.train_supervised(
        str(folder / "train.txt"), epoch=25, lr=0.5, wordNgrams=2, dim=32, minCount=1, seed=seed, thread=1
    )
    path = folder / "articles.bin"
    model.save_model(str(path))
    cls = annotator_class("classifier")
    clf = cls(cls.Options(model=str(path), label="article"))
    scores = clf.annotate(table([t for _, t in test])).column("classifier_score").to_pylist()
    truth = [y == "article" for y, _ in test]
    accuracy = sum((s >= 0.5) == t for s, t in zip(scores, truth)) / len(test)
    return {"train": len(train), "test": len(test), "accuracy": round(accuracy, 4),
            "roc_auc": round(roc_auc(scores, truth), 4)}, str(path)  # fmt: skip


def rates(texts: list[str], model: str, runs: int) -> dict[str, float]:
    docs = table(texts)
    out = {}
    options = {"classifier": {"model": model, "label": "article"}}
    for name in ("language", "tokens", "quality", "classifier"):
        cls = annotator_class(name)
        annotator = cls(cls.Options.model_validate(options.get(name, {})))
        annotator.annotate(docs.slice(0, 10))  # warm
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            annotator.annotate(docs)
            times.append(time.perf_counter() - t)
        out[name] = round(len(texts) / statistics.median(times), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python-pages", type=int, default=200)
    ap.add_argument("--out", default="runs/eval-annotators.json")
    args = ap.parse_args()
    t0 = time.time()
    corpus = corpora(args.python_pages)
    with tempfile.TemporaryDirectory() as tmp:
        clf, model = classifier(corpus, Path(tmp))
        texts = [t for ts in corpus.values() for t in ts]
        report = {
            "documents": {name: len(ts) for name, ts in corpus.items()},
            "quality_drop_rate": {name: quality_drops(ts) for name, ts in corpus.items()},
            "classifier": clf,
            "docs_per_s": rates(texts, model, args.runs),
            "runs": args.runs,
            "wall_s": round(time.time() - t0, 1),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
