"""make eval-dedup: precision and recall of near-duplicate removal against the true Jaccard of 5-gram sets.

1. Planted pairs: every real page (html-benchmark articles, Python docs pages; text by trafilatura, as the extract
   stage does) gets one variant made by the edits near-duplicates show on the web: paragraphs edited (words
   replaced, inserted, deleted), reordered, boilerplate blocks from another page added or swapped, the end cut,
   each at a random strength. All pages and variants go through the dedup's core (signatures, LSH buckets,
   verification, clusters) together. The truth is the exact Jaccard of the 5-gram sets of every pair of documents
   (all pairs, not only the planted ones); a pair is judged a duplicate when both land in the same cluster.
   Precision and recall count the pairs at least 0.1 away from the threshold, as the issue asks; a table gives the
   share judged duplicate per Jaccard bin (the empirical S-curve), drawn to runs/eval-dedup/s_curve.png.
2. The Debian Administrator's Handbook in its 26 language folders: what the dedup removes, per folder (untranslated
   pages are natural near-duplicates of the en-US pages).

    python bench/eval_dedup.py [--verify signature|exact|none] [--bands B --rows R] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tarfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.sparse import csr_matrix

from pipeline.stages.dedup import DedupConfig, find_duplicates, signature_table
from pipeline.text.minhash import shingles

ROOT = Path(__file__).resolve().parents[1]
from shared_data import SHARED  # noqa: E402  ($OWT_SHARED_DATA, else ../shared/data)

OUT = ROOT / "runs" / "eval-dedup"
MIN_WORDS = 100


def _extract(html: bytes) -> str:
    import trafilatura

    return trafilatura.extract(html.decode("utf-8", "replace"), include_comments=False) or ""


def extracted(tarball: Path, select, cache: Path) -> dict[str, str]:
    """{member name: main text} of the HTML pages of a tarball, extracted once and cached."""
    if cache.is_file():
        return json.loads(cache.read_text())
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and select(m.name)]
        pages = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    with ProcessPoolExecutor(2) as pool:
        texts = dict(zip(pages, pool.map(_extract, pages.values(), chunksize=8)))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(texts))
    return texts


def variant(text: str, donor: str, rng: random.Random) -> str:
    """A near-duplicate of `text` with random edits of random strength; `donor` supplies foreign words and
    boilerplate."""
    paras = [p for p in text.split("\n") if p.strip()]
    foreign = donor.split()
    strength = 0.7 * rng.random()  # 0.7 at most: keeps about half the planted pairs above J = 0.5
    out = []
    for p in paras:
        words = p.split()
        if rng.random() < strength:  # edit this paragraph: replace, insert or delete words
            for _ in range(max(1, int(len(words) * strength * 0.5))):
                op, i = rng.random(), rng.randrange(len(words) + 1)
                if op < 0.5 and i < len(words):
                    words[i] = rng.choice(foreign)
                elif op < 0.75:
                    words.insert(i, rng.choice(foreign))
                elif i < len(words):
                    del words[i]
        out.append(" ".join(words))
    if rng.random() < 0.3:  # reorder a few paragraphs
        for _ in range(max(1, len(out) // 4)):
            i, j = rng.randrange(len(out)), rng.randrange(len(out))
            out[i], out[j] = out[j], out[i]
    if rng.random() < 0.4:  # boilerplate from another page, before or after, or instead of the last paragraphs
        block = " ".join(foreign[: int(len(foreign) * strength * 0.5) + 20])
        where = rng.random()
        if where < 0.33:
            out.insert(0, block)
        elif where < 0.66:
            out.append(block)
        else:
            out[-max(1, len(out) // 5) :] = [block]
    if rng.random() < 0.3:  # cut the end
        out = out[: max(1, int(len(out) * (1 - strength * 0.6)))]
    return "\n".join(out)


def jaccard_matrix(texts: list[str]) -> np.ndarray:
    """Exact Jaccard of the 5-gram sets of every pair: (n, n) float."""
    ids: dict[bytes, int] = {}
    rows, cols = [], []
    for i, t in enumerate(texts):
        for s in shingles(t, 5):
            rows.append(i)
            cols.append(ids.setdefault(s, len(ids)))
    x = csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(texts), len(ids)))
    inter = (x @ x.T).toarray()
    size = np.diag(inter)
    return inter / np.maximum(size[:, None] + size[None, :] - inter, 1)


def clusters(texts: list[str], cfg: DedupConfig, workdir: Path) -> np.ndarray:
    """Cluster label per document: the keeper's index (a document alone is its own)."""
    table = pa.table(
        {
            "url_hash": [f"{i:08d}" for i in range(len(texts))],
            "score": [3] * len(texts),
            "first_created_utc": [0] * len(texts),
            "text": texts,
        }
    )
    removed = find_duplicates(signature_table(table, cfg), cfg, workdir)
    label = np.arange(len(texts))
    for gone, keeper in zip(removed["url_hash"].to_pylist(), removed["duplicate_of"].to_pylist()):
        label[int(gone)] = int(keeper)
    return label


def planted(cfg: DedupConfig, seed: int) -> dict:
    news = json.loads((SHARED / "html-benchmark" / "ground-truth.json").read_text())
    pages = [p["articleBody"] for p in news.values()]
    docs = extracted(
        SHARED / "web-corpus" / "python3.11-doc_3.11.2-6+deb12u9_html.tar.xz",
        lambda n: n.endswith(".html"),
        OUT / "python-docs.json",
    )
    pages += list(docs.values())
    pages = [p for p in pages if len(p.split()) >= MIN_WORDS]
    rng = random.Random(seed)
    texts = pages + [
        variant(p, pages[(i + 1 + rng.randrange(len(pages) - 1)) % len(pages)], rng) for i, p in enumerate(pages)
    ]
    n = len(texts)
    print(f"planted: {len(pages)} real pages + {len(pages)} variants; exact Jaccard of all {n * (n - 1) // 2:,} pairs")
    truth = jaccard_matrix(texts)
    label = clusters(texts, cfg, OUT / "work")
    iu = np.triu_indices(n, 1)
    j = truth[iu]
    same = (label[:, None] == label[None, :])[iu]
    far = np.abs(j - cfg.threshold) >= 0.1
    positive = j > cfg.threshold
    tp = int((same & positive & far).sum())
    precision = tp / max(int((same & far).sum()), 1)
    recall = tp / max(int((positive & far).sum()), 1)
    bins = np.linspace(0, 1, 11)
    curve = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        at = (j >= lo) & (j < hi) if hi < 1 else (j >= lo)
        if lo == 0:
            at &= j > 0  # the ~all pairs of unrelated pages (J = 0) are counted in the precision, not shown here
        curve.append(
            {"jaccard": f"{lo:.1f}-{hi:.1f}", "pairs": int(at.sum()), "judged_duplicate": int((same & at).sum())}
        )
    planted_j = truth[np.arange(len(pages)), np.arange(len(pages)) + len(pages)]
    return {
        "documents": n,
        "pairs": len(j),
        "planted_pairs_by_jaccard": np.histogram(planted_j, bins)[0].tolist(),
        "pairs_far_from_threshold": int(far.sum()),
        "true_duplicate_pairs_far": int((positive & far).sum()),
        "judged_duplicate_pairs_far": int((same & far).sum()),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "curve": curve,
    }


def handbook(cfg: DedupConfig) -> dict:
    texts = extracted(
        SHARED / "web-corpus" / "debian-handbook_11.20220922_html.tar.xz",
        lambda n: n.endswith(".html"),
        OUT / "debian-handbook.json",
    )
    names = [n for n, t in texts.items() if len(t.split()) >= MIN_WORDS]
    label = clusters([texts[n] for n in names], cfg, OUT / "work-handbook")
    lang = [n.split("/")[1] for n in names]
    removed = Counter(lang[i] for i in range(len(names)) if label[i] != i)
    pages = Counter(lang)
    pairs = Counter((lang[i], lang[label[i]]) for i in range(len(names)) if label[i] != i)
    spans = Counter(len({lang[i] for i in np.flatnonzero(label == k)}) for k in np.unique(label))
    return {
        "pages": len(names),
        "removed": sum(removed.values()),
        "kept": len(names) - sum(removed.values()),
        "clusters_by_folders_spanned": dict(sorted(spans.items())),
        "removed_by_folder": {k: f"{removed[k]}/{pages[k]}" for k in sorted(pages)},
        "top_removed_to_keeper_folder": [f"{a} -> {b}: {c}" for (a, b), c in pairs.most_common(8)],
    }


def plot(curve: list[dict], cfg: DedupConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b, r = cfg.lsh
    x = [float(c["jaccard"].split("-")[0]) + 0.05 for c in curve]
    y = [c["judged_duplicate"] / c["pairs"] if c["pairs"] else np.nan for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, y, "o-", label=f"judged duplicate (verify={cfg.verify})")
    js = np.linspace(0, 1, 101)
    ax.plot(js, 1 - (1 - js**r) ** b, "--", label=f"LSH candidate probability, {b} bands x {r} rows")
    ax.axvline(cfg.threshold, color="grey", lw=0.8)
    ax.set(xlabel="true Jaccard of 5-gram sets", ylabel="share of pairs", title="eval-dedup: planted pairs")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--verify", default="signature", choices=["signature", "exact", "none"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bands", type=int, help="LSH bands (default: chosen from the threshold)")
    ap.add_argument("--rows", type=int, help="LSH rows per band")
    args = ap.parse_args()
    cfg = DedupConfig(input="-", output="-", verify=args.verify, bands=args.bands, rows=args.rows)
    result = {"config": {k: getattr(cfg, k) for k in ("ngram", "num_perm", "threshold", "verify")}}
    result["lsh"] = dict(zip(("bands", "rows"), cfg.lsh))
    result["planted"] = planted(cfg, args.seed)
    result["handbook"] = handbook(cfg)
    OUT.mkdir(parents=True, exist_ok=True)
    plot(result["planted"]["curve"], cfg, OUT / "s_curve.png")
    print(json.dumps(result, indent=2))
    p = result["planted"]
    print(
        f"planted pairs (|J - {cfg.threshold}| >= 0.1): precision {p['precision']:.3f}, recall {p['recall']:.3f}; "
        f"handbook: {result['handbook']['removed']} of {result['handbook']['pages']} pages removed; "
        f"plot {OUT / 's_curve.png'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
