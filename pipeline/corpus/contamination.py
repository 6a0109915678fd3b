"""How much of an evaluation set is already in the training corpus: the GPT-2 paper's 8-gram overlap report.

GPT-2 (Radford et al. 2019, section 4, "Generalization vs Memorization") put every 8-gram of WebText's normalized
text in a Bloom filter and reported, for each test set, the share of its 8-grams found there. Same here:
    words     `\\w+` of the NFKC-normalized, lower-cased text (text.minhash.word_hashes: one 64-bit hash a word)
    n-gram    G = fmix64(sum_j W_j * C_j mod 2**64) over n consecutive words; C_j are minhash's odd constants, so
              G >> 32 is exactly minhash's shingle hash of the same words (a test checks it)
    filter    a Bloom filter over the corpus's G, sized by a first pass that counts the corpus's n-grams
    report    per eval file: n-grams, n-grams found, share found, share of texts with any overlap, top texts
A text of fewer than n words has no n-gram: it counts as a text but adds nothing to either side of a share.
Shares are upper bounds: a Bloom filter has no false negatives, and an n-gram absent from the corpus is reported
present with probability at most the filter's false-positive rate.

`python -m pipeline contamination --corpus DIR --eval test.jsonl [--filter-cache corpus.bloom.npz] [--out r.json]`
(docs/CONTAMINATION.md).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.core.errors import ConfigError, PipelineError
from pipeline.text.minhash import MAX_NGRAM, C, fmix64, word_hashes

DEFAULT_NGRAM = 8
DEFAULT_FP_RATE = 1e-4
TOP_TEXTS = 5
FORMAT = "owt-contamination-bloom"
VERSION = 1
EVAL_SUFFIXES = (".txt", ".jsonl", ".json")

_U64 = np.uint64
_C = np.array(C, dtype=_U64)
# Salts for the two base hashes of double hashing: the n-gram hash is already mixed, but add() takes any uint64
# (a caller's own hashes, sequential ids), so both are remixed, with different salts to make them independent.
_SALT1 = _U64(0x243F6A8885A308D3)
_SALT2 = _U64(0x13198A2E03707344)
_ADD_CHUNK = 1 << 16  # hashes per round of add(): k * 64k positions, a few MB, stays in cache while sorted


# ---- n-gram hashes ----


def _words_of(text: str) -> np.ndarray:
    w = word_hashes(text)
    # word_hashes gives a wordless text one empty word, whose hash is fmix64(0) = 0; a real word hashing to 0
    # is a 2**-64 event, so a lone 0 means "no words" (else n=1 would count one n-gram in an empty text).
    return w[:0] if len(w) == 1 and w[0] == 0 else w


def _windows(w: np.ndarray, n: int) -> np.ndarray:
    """G of every run of n consecutive entries of w: (max(0, len(w) - n + 1),) uint64."""
    k = len(w) - n + 1
    if k <= 0:
        return np.empty(0, dtype=_U64)
    g = w[:k] * _C[0]
    for j in range(1, n):  # n passes over all words, not a Python loop over n-grams
        g += w[j : j + k] * _C[j]
    return fmix64(g)


def _check_ngram(n: int) -> None:
    if not 1 <= n <= MAX_NGRAM:
        raise ConfigError(f"ngram must be between 1 and {MAX_NGRAM}, got {n}")


def ngram_hashes(text: str, n: int = DEFAULT_NGRAM) -> np.ndarray:
    """G of every word n-gram of `text`, in order, repeats kept: (max(0, words - n + 1),) uint64."""
    _check_ngram(n)
    return _windows(_words_of(text), n)


def batch_ngram_hashes(texts: Sequence[str], n: int = DEFAULT_NGRAM) -> tuple[np.ndarray, np.ndarray]:
    """The n-gram hashes of many texts, concatenated, and how many belong to each text: ((total,) uint64,
    (len(texts),) int64). One window pass over all the texts' words, then the windows that straddle two texts
    are dropped: cheaper than a numpy round trip per text."""
    _check_ngram(n)
    ws = [_words_of(t) for t in texts]
    lens = np.array([len(w) for w in ws], dtype=np.int64)
    counts = np.maximum(lens - n + 1, 0)
    if not counts.sum():
        return np.empty(0, dtype=_U64), counts
    g = _windows(np.concatenate(ws), n)
    word_start = np.cumsum(lens) - lens  # where each text's words begin in the concatenation
    ngram_start = np.cumsum(counts) - counts  # where each text's n-grams begin in the output
    keep = np.arange(counts.sum()) + np.repeat(word_start - ngram_start, counts)
    return g[keep], counts


# ---- Bloom filter ----


class BloomFilter:
    """m bits, k probes per item by double hashing: probe i of hash x is (a + i*b) mod m, a = mix1(x) mod m,
    b = mix2(x) mod m, odd (m is a multiple of 64, so b is never 0 and shares no factor 2 with m)."""

    def __init__(self, m: int, k: int, fp_rate: float | None = None, bits: np.ndarray | None = None) -> None:
        if m < 64 or m % 64 or k < 1:
            raise ValueError(f"need m a positive multiple of 64 and k >= 1, got m={m}, k={k}")
        self.m, self.k, self.fp_rate = m, k, fp_rate
        self.bits = np.zeros(m // 64, dtype=_U64) if bits is None else bits
        self.items = 0  # hashes passed to add(), repeats included
        self.meta: dict[str, Any] = {}  # what the filter was built from (ngram, corpus): saved with it

    @classmethod
    def for_capacity(cls, n_items: int, fp_rate: float) -> BloomFilter:
        """The standard optimum for n items at false-positive rate p: m = -n ln p / (ln 2)^2, k = round(m/n ln 2).
        Rounding k moves the rate off p by a little, either way; m is then grown to the smallest multiple of 64
        with (1 - e^(-kn/m))^k <= p, so p is a bound (a fraction of a percent more bits)."""
        if not 0 < fp_rate < 1:
            raise ConfigError(f"fp_rate must be in (0, 1), got {fp_rate}")
        n = max(int(n_items), 1)
        k = max(1, round(-math.log(fp_rate) / math.log(2)))  # m/n ln 2 with the optimal m: -log2 p
        m = -k * n / math.log1p(-(fp_rate ** (1 / k)))  # (1 - e^(-kn/m))^k = p, solved for m
        return cls(max(64, math.ceil(m / 64) * 64), k, fp_rate=fp_rate)

    def _probes(self, hashes: np.ndarray) -> Iterator[np.ndarray]:
        m = _U64(self.m)
        x = np.asarray(hashes, dtype=_U64)
        pos = fmix64(x ^ _SALT1) % m
        step = (fmix64(x ^ _SALT2) | _U64(1)) % m
        for i in range(self.k):
            yield pos
            if i + 1 < self.k:
                pos = pos + step  # both < m < 2**63: no wrap, and one subtraction brings it back below m
                pos = np.minimum(pos, pos - m)  # pos - m wraps to a huge value when pos < m

    def add(self, hashes: np.ndarray) -> None:
        hashes = np.asarray(hashes, dtype=_U64).ravel()
        for lo in range(0, len(hashes), _ADD_CHUNK):
            self._set(np.concatenate(list(self._probes(hashes[lo : lo + _ADD_CHUNK]))))
        self.items += len(hashes)

    def _set(self, pos: np.ndarray) -> None:
        # `bits[i] |= mask` keeps only one mask per repeated word index (bits would be lost: false negatives), and
        # np.bitwise_or.at is ~180 ns an element. Sorting, then one OR-reduced mask per distinct word, is ~40 ns and
        # walks the bit array in order.
        pos.sort()
        word = pos >> _U64(6)
        new = np.empty(len(word), dtype=bool)
        new[:1] = True
        np.not_equal(word[1:], word[:-1], out=new[1:])
        first = np.flatnonzero(new)
        np.left_shift(_U64(1), pos & _U64(63), out=pos)  # pos becomes each probe's mask within its word
        self.bits[word[first]] |= np.bitwise_or.reduceat(pos, first)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """(len(hashes),) bool: False means certainly never added; True means added, or a false positive."""
        hashes = np.asarray(hashes, dtype=_U64).ravel()
        found = np.ones(len(hashes), dtype=bool)
        for pos in self._probes(hashes):
            found &= ((self.bits[pos >> _U64(6)] >> (pos & _U64(63))) & _U64(1)).astype(bool)
        return found

    def expected_fp_rate(self, n_items: int | None = None) -> float:
        """(1 - e^(-k n / m))^k for n items (default: those added, repeats included, so an upper bound)."""
        n = self.items if n_items is None else n_items
        return (1.0 - math.exp(-self.k * n / self.m)) ** self.k

    def fill(self) -> float:
        return _popcount(self.bits) / self.m

    def fill_fp_rate(self) -> float:
        """The false-positive rate from the bits actually set (fill^k): what a random absent item meets. Below
        expected_fp_rate() when the added hashes repeat (a corpus's boilerplate n-grams do)."""
        return self.fill() ** self.k

    def params(self) -> dict[str, Any]:
        return {
            "m_bits": self.m,
            "bytes": self.m // 8,
            "k": self.k,
            "items_added": self.items,
            "fp_rate_target": self.fp_rate,
            "expected_fp_rate": self.expected_fp_rate(),
            "fill": round(self.fill(), 6),
            "fp_rate_from_fill": self.fill_fp_rate(),
        }

    def save(self, path: str | Path) -> None:
        """One uncompressed .npz (bits + a JSON header), written under a temporary name then renamed: an
        interrupted save never leaves a file that looks like a finished filter."""
        path = Path(path)
        header = {"format": FORMAT, "version": VERSION, "m": self.m, "k": self.k, "fp_rate": self.fp_rate}
        header |= {"items": self.items, "meta": self.meta}
        tmp = path.with_name(path.name + ".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a bare name
            np.savez(f, bits=self.bits, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> BloomFilter:
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes())
                bits = z["bits"]
        except FileNotFoundError:
            raise PipelineError(f"{path}: no such filter file") from None
        except (OSError, ValueError, KeyError) as e:
            raise PipelineError(f"{path}: not a readable Bloom filter file ({e}); delete it to rebuild") from None
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise PipelineError(
                f"{path}: not a {FORMAT} v{VERSION} file (header {header.get('format')!r} "
                f"v{header.get('version')!r}); delete it to rebuild"
            )
        if bits.dtype != _U64 or bits.shape != (header["m"] // 64,):
            raise PipelineError(f"{path}: bit array {bits.dtype}{bits.shape} does not match m={header['m']}")
        bf = cls(header["m"], header["k"], fp_rate=header["fp_rate"], bits=bits)
        bf.items, bf.meta = header["items"], header["meta"]
        return bf


def _popcount(bits: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(bits).sum(dtype=np.int64))
    step = 1 << 20  # unpackbits makes a byte per bit: a slice at a time
    return sum(int(np.unpackbits(bits[i : i + step].view(np.uint8)).sum()) for i in range(0, len(bits), step))


# ---- corpus ----


def corpus_files(paths: Sequence[str | Path]) -> list[Path]:
    """Parquet files from files and directories: a directory's `documents/` subfolder if it has one (a finished
    corpus), else the directory itself; `*.parquet` directly inside, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            d = p / "documents" if (p / "documents").is_dir() else p
            found = sorted(d.glob("*.parquet"))
            if not found:
                raise PipelineError(f"{d}: no *.parquet files in this directory")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise PipelineError(f"{p}: no such corpus file or directory")
    return out


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        f = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise PipelineError(f"{path}: not a readable parquet file ({e})") from None
    if "text" not in f.schema_arrow.names:
        raise PipelineError(f"{path}: no 'text' column (columns: {', '.join(f.schema_arrow.names)})")
    return f


def iter_corpus_texts(
    files: Sequence[Path], split: str | None, stats: dict[str, int], bar: tqdm | None = None, batch_size: int = 1024
) -> Iterator[list[str]]:
    """Lists of texts, one a record batch, so memory stays bounded. With `split`, only the rows whose `split`
    column equals it (a file without that column is read whole). Counts rows kept and skipped in `stats`."""
    for path in files:
        f = _open_parquet(path)
        by_split = split is not None and "split" in f.schema_arrow.names
        try:
            for batch in f.iter_batches(batch_size=batch_size, columns=["text", "split"] if by_split else ["text"]):
                if bar is not None:
                    bar.update(batch.num_rows)
                if by_split:
                    kept = batch.filter(pc.fill_null(pc.equal(batch.column("split"), split), False))
                    stats["rows_skipped_split"] += batch.num_rows - kept.num_rows
                    batch = kept
                stats["rows_read"] += batch.num_rows
                yield [t or "" for t in batch.column("text").to_pylist()]
        except (OSError, pa.ArrowException) as e:
            raise PipelineError(f"{path}: corrupt or truncated parquet ({e})") from None


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI)
    disable = None if enabled else True
    return tqdm(total=total, desc=desc, unit="doc", file=sys.stderr, dynamic_ncols=True, disable=disable)


def _total_rows(files: Sequence[Path]) -> int:
    return sum(_open_parquet(p).metadata.num_rows for p in files)


def corpus_fingerprint(files: Sequence[Path], split: str | None, n: int) -> dict[str, Any]:
    return {
        "ngram": n,
        "split": split,
        "files": [{"path": str(p.resolve()), "bytes": p.stat().st_size} for p in files],
    }


def count_corpus_ngrams(files: Sequence[Path], n: int, split: str | None, progress: bool = True) -> int:
    """Pass 1: the number of n-grams the filter will hold (repeats included: an upper bound on distinct ones,
    so the filter comes out at or under its target rate). Word counts need the same tokenization as pass 2."""
    stats = {"rows_read": 0, "rows_skipped_split": 0}
    total = 0
    with _progress(_total_rows(files), f"count {n}-grams", progress) as bar:
        for texts in iter_corpus_texts(files, split, stats, bar):
            total += sum(max(0, len(_words_of(t)) - n + 1) for t in texts)
    return total


def build_filter(
    files: Sequence[Path],
    n: int = DEFAULT_NGRAM,
    fp_rate: float = DEFAULT_FP_RATE,
    split: str | None = "train",
    progress: bool = True,
) -> BloomFilter:
    """Two passes over the corpus: count its n-grams, then add them to a filter sized for that count."""
    _check_ngram(n)
    n_items = count_corpus_ngrams(files, n, split, progress)
    bf = BloomFilter.for_capacity(n_items, fp_rate)
    stats = {"rows_read": 0, "rows_skipped_split": 0}
    with _progress(_total_rows(files), f"build filter ({bf.m / 8e6:,.1f} MB, k={bf.k})", progress) as bar:
        for texts in iter_corpus_texts(files, split, stats, bar):
            bf.add(batch_ngram_hashes(texts, n)[0])
    bf.meta = {"corpus": corpus_fingerprint(files, split, n), "rows_read": stats["rows_read"]}
    bf.meta["rows_skipped_split"] = stats["rows_skipped_split"]
    return bf


def filter_for(
    files: Sequence[Path] | None,
    n: int = DEFAULT_NGRAM,
    fp_rate: float | None = None,
    split: str | None = "train",
    cache: str | Path | None = None,
    progress: bool = True,
) -> BloomFilter:
    """The filter for a corpus: loaded from `cache` when it holds one built from the same files, split and n
    (`files` may then be None), else built and saved there. A cache built from anything else is an error, not a
    silent rebuild: it may have cost hours."""
    if cache is not None and Path(cache).exists():
        bf = BloomFilter.load(cache)
        built = bf.meta.get("corpus", {})
        if built.get("ngram") != n:
            raise PipelineError(f"{cache}: built for {built.get('ngram')}-grams, asked for {n}-grams")
        if files is not None and built != corpus_fingerprint(files, split, n):
            raise PipelineError(
                f"{cache}: built from another corpus or split ({len(built.get('files', []))} files, split "
                f"{built.get('split')!r}); delete it or pass another --filter-cache"
            )
        if fp_rate is not None and bf.fp_rate != fp_rate:
            raise PipelineError(f"{cache}: built for fp rate {bf.fp_rate}, asked for {fp_rate}")
        return bf
    if not files:
        raise PipelineError(f"{cache}: no such filter file, and no --corpus to build it from")
    bf = build_filter(files, n, DEFAULT_FP_RATE if fp_rate is None else fp_rate, split, progress)
    if cache is not None:
        bf.save(cache)
    return bf


# ---- eval sets ----


def _text_of(item: Any, where: str) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and isinstance(item.get("text"), str):
        return item["text"]
    raise PipelineError(f"{where}: expected a string or an object with a string 'text' field, got {str(item)[:80]!r}")


def read_eval_texts(path: str | Path) -> list[str]:
    """.txt: the whole file is one text; .jsonl: one object with `text` a line (blank lines skipped); .json: a
    list of strings or of objects with `text` (or an object mapping ids to either)."""
    path = Path(path)
    if path.suffix not in EVAL_SUFFIXES:
        raise PipelineError(f"{path}: unknown eval file type {path.suffix!r}; use {', '.join(EVAL_SUFFIXES)}")
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such eval file") from None
    except UnicodeDecodeError as e:
        raise PipelineError(f"{path}: not UTF-8 text ({e})") from None
    if path.suffix == ".txt":
        return [raw]
    if path.suffix == ".jsonl":
        return [_jsonl_text(line, f"{path}:{i}") for i, line in enumerate(raw.splitlines(), 1) if line.strip()]
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: bad JSON at line {e.lineno}: {e.msg}") from None
    items = list(data.values()) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise PipelineError(f"{path}: expected a JSON list of texts, got {type(data).__name__}")
    return [_text_of(item, f"{path}: item {i}") for i, item in enumerate(items)]


def _jsonl_text(line: str, where: str) -> str:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise PipelineError(f"{where}: bad JSON line ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise PipelineError(f"{where}: expected a JSON object with a 'text' field, got {type(obj).__name__}")
    return _text_of(obj, where)


def overlap_per_text(texts: Sequence[str], bf: BloomFilter, n: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(n-grams, n-grams found in the filter) of every text: two (len(texts),) int64."""
    totals, found = [], []
    for lo in range(0, len(texts), chunk):
        g, counts = batch_ngram_hashes(texts[lo : lo + chunk], n)
        hit = np.r_[0, np.cumsum(bf.contains(g), dtype=np.int64)]
        ends = np.cumsum(counts)
        totals.append(counts)
        found.append(hit[ends] - hit[ends - counts])
    if not totals:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(totals), np.concatenate(found)


def eval_report(name: str, texts: Sequence[str], bf: BloomFilter, n: int, top: int = TOP_TEXTS) -> dict[str, Any]:
    totals, found = overlap_per_text(texts, bf, n)
    share = np.divide(found, totals, out=np.zeros(len(totals)), where=totals > 0)
    order = sorted(np.flatnonzero(found), key=lambda i: (-share[i], -found[i], i))[:top]
    return {
        "file": name,
        "texts": len(totals),
        "texts_under_n_words": int((totals == 0).sum()),
        "ngrams": int(totals.sum()),
        "found": int(found.sum()),
        "share_found": float(found.sum() / totals.sum()) if totals.sum() else 0.0,
        "texts_with_overlap": int((found > 0).sum()),
        "share_texts_with_overlap": float((found > 0).mean()) if len(totals) else 0.0,
        "top_texts": [
            {"index": int(i), "share": round(float(share[i]), 6), "found": int(found[i]), "ngrams": int(totals[i])}
            for i in order
        ],
    }


def contamination_report(
    evals: Sequence[str | Path] | Mapping[str, Sequence[str]],
    bf: BloomFilter,
    n: int = DEFAULT_NGRAM,
    top: int = TOP_TEXTS,
) -> dict[str, Any]:
    """The report for eval files (paths), or for texts already read (name -> texts)."""
    if not isinstance(evals, Mapping):
        evals = {str(p): read_eval_texts(p) for p in evals}
    built = bf.meta.get("corpus", {})
    return {
        "ngram": n,
        "note": (
            "shares are upper bounds: the filter has no false negatives, and an n-gram absent from the corpus is "
            "counted as found with probability at most filter.expected_fp_rate (filter.fp_rate_from_fill is the "
            "estimate from the bits actually set)"
        ),
        "filter": {"ngram": n} | bf.params(),
        "corpus": {
            "files": [f["path"] for f in built.get("files", [])],
            "split": built.get("split"),
            "rows_read": bf.meta.get("rows_read"),
            "rows_skipped_split": bf.meta.get("rows_skipped_split"),
        },
        "eval": [eval_report(name, texts, bf, n, top) for name, texts in evals.items()],
    }


def format_report(r: dict[str, Any]) -> str:
    f, c, grams = r["filter"], r["corpus"], f"{r['ngram']}-grams"
    lines = [
        f"corpus: {len(c['files'])} files, {c['rows_read'] or 0:,} documents (split {c['split'] or 'all'}); "
        f"filter {f['m_bits'] / 8e6:,.1f} MB, k={f['k']}, {f['items_added']:,} {grams}, "
        f"false-positive rate <= {f['expected_fp_rate']:.2g}",
        f"{'eval file':<40}{'texts':>8}{grams:>12}{'found':>11}{'share':>9}{'texts hit':>11}",
    ]
    for e in r["eval"]:
        name = e["file"] if len(e["file"]) <= 38 else "..." + e["file"][-35:]
        lines.append(
            f"{name:<40}{e['texts']:>8,}{e['ngrams']:>12,}{e['found']:>11,}{e['share_found']:>9.3%}"
            f"{e['share_texts_with_overlap']:>11.1%}"
        )
    lines.append("shares are upper bounds, by at most the false-positive rate")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline contamination",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--corpus", nargs="+", metavar="FILE_OR_DIR", help="parquet files with a 'text' column, or dirs")
    ap.add_argument("--eval", nargs="+", required=True, metavar="FILE", help="eval sets: .txt, .jsonl or .json")
    ap.add_argument("--ngram", type=int, default=DEFAULT_NGRAM, help="words per n-gram (default 8, as GPT-2)")
    ap.add_argument("--fp-rate", type=float, default=None, help=f"filter's target rate (default {DEFAULT_FP_RATE})")
    ap.add_argument("--split", choices=["train", "all"], default="train", help="corpus rows to use (default train)")
    ap.add_argument("--filter-cache", metavar="PATH", help="load the filter from here, or build it and save it here")
    ap.add_argument("--top", type=int, default=TOP_TEXTS, help="texts listed per eval file, by overlap share")
    ap.add_argument("--out", metavar="FILE", help="write the JSON report here")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if not args.corpus and not args.filter_cache:
        ap.error("give --corpus, or a --filter-cache built earlier")
    files = corpus_files(args.corpus) if args.corpus else None
    evals = {p: read_eval_texts(p) for p in args.eval}  # a bad eval file fails now, not after an hour of building
    split = None if args.split == "all" else args.split
    bf = filter_for(files, args.ngram, args.fp_rate, split, args.filter_cache, progress=not args.no_progress)
    report = contamination_report(evals, bf, args.ngram, args.top)
    print(format_report(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
