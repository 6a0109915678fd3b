from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import PipelineError
from pipeline.corpus.contamination import (
    BloomFilter,
    batch_ngram_hashes,
    build_filter,
    contamination_report,
    corpus_files,
    main,
    ngram_hashes,
    read_eval_texts,
)
from pipeline.text import minhash

N = 8
FP = 1e-4
N_TRAIN, N_VAL = 80, 20


def random_u64(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2**64, size=size, dtype=np.uint64)


# ---- n-gram hashes ----


def test_ngram_hash_top_bits_are_minhash_shingle_hashes():
    text = "Ünïcode ﬁne-print: the SAME words, ① two three four five six seven eight nine ten; done."
    assert len(minhash.words(text)) > N
    assert (ngram_hashes(text, N) >> np.uint64(32)).astype(np.uint32).tolist() == minhash.shingle_hashes(
        text, N
    ).tolist()


def test_texts_shorter_than_n_have_no_ngrams_and_batches_match_single_texts():
    texts = ["one two three four five six seven eight nine", "", "  ...  ", "a b c", "x " * 8, "y " * 7]
    assert [len(ngram_hashes(t, N)) for t in texts] == [2, 0, 0, 0, 1, 0]
    assert len(ngram_hashes("", 1)) == 0 and len(ngram_hashes("word", 1)) == 1
    hashes, counts = batch_ngram_hashes(texts, N)
    assert counts.tolist() == [2, 0, 0, 0, 1, 0]
    assert hashes.tolist() == np.concatenate([ngram_hashes(t, N) for t in texts]).tolist()


# ---- Bloom filter ----


def test_bloom_no_false_negatives_and_fp_rate_near_target():
    target = 1e-3  # 200 expected false positives in 200k: enough to measure
    bf = BloomFilter.for_capacity(100_000, target)
    assert bf.m % 64 == 0 and bf.k == 10
    added = random_u64(1, 100_000)
    bf.add(added)
    assert bf.items == 100_000
    assert bf.contains(added).all()
    measured = bf.contains(random_u64(2, 200_000)).mean()
    assert target / 2 <= measured <= 2 * target
    assert bf.expected_fp_rate() == pytest.approx(target, rel=0.1)
    assert bf.fill_fp_rate() == pytest.approx(target, rel=0.2)


def test_bloom_repeated_hashes_in_one_add_all_set():
    # many probes land in the same 64-bit word in one add(): none may be lost
    bf = BloomFilter(m=128, k=3)
    hashes = np.arange(50, dtype=np.uint64)
    bf.add(np.concatenate([hashes, hashes]))
    assert bf.contains(hashes).all()


def test_bloom_save_load_round_trip(tmp_path):
    bf = BloomFilter.for_capacity(20_000, FP)
    bf.add(random_u64(3, 20_000))
    bf.meta = {"corpus": {"ngram": N}}
    bf.save(tmp_path / "f.npz")
    back = BloomFilter.load(tmp_path / "f.npz")
    assert (back.m, back.k, back.items, back.fp_rate, back.meta) == (bf.m, bf.k, bf.items, bf.fp_rate, bf.meta)
    probe = np.concatenate([random_u64(3, 20_000), random_u64(4, 50_000)])
    assert np.array_equal(back.contains(probe), bf.contains(probe))
    assert back.params() == bf.params()
    (tmp_path / "junk.npz").write_bytes(b"not a filter")
    with pytest.raises(PipelineError, match="junk.npz"):
        BloomFilter.load(tmp_path / "junk.npz")


# ---- a small real corpus ----


def write_corpus(path: Path, train: list[str], val: list[str]) -> Path:
    table = pa.table({"text": train + val, "split": ["train"] * len(train) + ["val"] * len(val)})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=16)  # several row groups: batches cross them
    return path


@pytest.fixture(scope="module")
def articles(shared) -> list[str]:
    truth = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    bodies = [truth[k]["articleBody"] for k in sorted(truth)]
    bodies = [b for b in bodies if len(minhash.words(b)) > 50]
    assert len(bodies) >= N_TRAIN + N_VAL
    return bodies[: N_TRAIN + N_VAL]


@pytest.fixture(scope="module")
def corpus(articles, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root / "documents" / "part-00000.parquet", articles[:N_TRAIN], articles[N_TRAIN:])
    return root


@pytest.fixture(scope="module")
def train_filter(corpus) -> BloomFilter:
    return build_filter(corpus_files([corpus]), N, FP, split="train", progress=False)


def ngram_set(texts: list[str]) -> set[tuple[str, ...]]:
    out = set()
    for t in texts:
        w = minhash.words(t)
        out |= {tuple(w[i : i + N]) for i in range(len(w) - N + 1)}
    return out


def count_in(texts: list[str], grams: set[tuple[str, ...]]) -> tuple[int, int]:
    """(n-grams of the texts, those in `grams`), by position, repeats counted: what the report counts."""
    total = found = 0
    for t in texts:
        w = minhash.words(t)
        windows = [tuple(w[i : i + N]) for i in range(len(w) - N + 1)]
        total += len(windows)
        found += sum(g in grams for g in windows)
    return total, found


def noise_words(rng: np.random.Generator, count: int) -> list[str]:
    letters = np.array(list(string.ascii_lowercase))
    return ["".join(rng.choice(letters, size=12)) for _ in range(count)]


def write_json(path: Path, items) -> Path:
    path.write_text(json.dumps(items))
    return path


def margin(non_corpus_ngrams: int) -> int:
    return max(3, int(5 * FP * non_corpus_ngrams))


def test_planted_overlap_is_counted(articles, corpus, train_filter, tmp_path):
    train = articles[:N_TRAIN]
    corpus_words = {w for t in train for w in minhash.words(t)}
    rng = np.random.default_rng(7)
    texts, noise, planted = [], set(), 0
    for i in range(40):
        src = minhash.words(train[i])
        parts = [noise_words(rng, 30)]
        for length in (5, 8, 9, 20, 60)[: 1 + i % 5]:  # excerpts below, at and above n words
            start = int(rng.integers(0, len(src) - length))
            parts += [src[start : start + length], noise_words(rng, 10)]
            planted += max(0, length - N + 1)
        noise.update(*parts[::2])
        texts.append(" ".join(" ".join(p) for p in parts))
    assert not noise & corpus_words  # so no n-gram that touches a noise word is in the corpus
    path = tmp_path / "planted.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))

    total, expected = count_in(texts, ngram_set(train))
    assert expected >= planted  # the excerpts' own n-grams; their words may recur elsewhere in the corpus too
    e = contamination_report([path], train_filter, N)["eval"][0]
    assert (e["texts"], e["ngrams"]) == (40, total)
    assert expected <= e["found"] <= expected + margin(total - expected)
    assert e["share_found"] == pytest.approx(e["found"] / total)
    assert e["texts_with_overlap"] >= sum(1 for i in range(40) if i % 5)  # each text with an excerpt of >= 8 words
    top = e["top_texts"]
    assert len(top) == 5 and top == sorted(top, key=lambda t: -t["share"])


def test_disjoint_and_copied_eval_files(articles, train_filter, tmp_path):
    rng = np.random.default_rng(11)
    disjoint = write_json(tmp_path / "disjoint.json", [" ".join(noise_words(rng, 200)) for _ in range(20)])
    copied = write_json(tmp_path / "copied.json", [{"text": t} for t in articles[:N_TRAIN]])
    short = tmp_path / "short.txt"
    short.write_text("only five words in here")
    d, c, s = contamination_report([disjoint, copied, short], train_filter, N)["eval"]
    assert d["ngrams"] == 20 * 193 and d["found"] <= margin(d["ngrams"]) and d["share_found"] < 1e-3
    assert c["share_found"] == 1.0 and c["share_texts_with_overlap"] == 1.0
    assert c["top_texts"][0]["share"] == 1.0
    assert (s["texts"], s["texts_under_n_words"], s["ngrams"], s["share_found"]) == (1, 1, 0, 0.0)


def test_split_excludes_val_rows(articles, corpus, train_filter, tmp_path):
    val = articles[N_TRAIN:]
    assert (train_filter.meta["rows_read"], train_filter.meta["rows_skipped_split"]) == (N_TRAIN, N_VAL)
    path = write_json(tmp_path / "val.json", val)
    total, expected = count_in(val, ngram_set(articles[:N_TRAIN]))
    e = contamination_report([path], train_filter, N)["eval"][0]
    assert expected <= e["found"] <= expected + margin(total - expected)
    assert e["share_found"] < 0.5

    everything = build_filter(corpus_files([corpus]), N, FP, split=None, progress=False)
    assert everything.meta["rows_read"] == N_TRAIN + N_VAL
    assert contamination_report([path], everything, N)["eval"][0]["share_found"] == 1.0


def test_report_names_filter_and_corpus(corpus, train_filter, tmp_path):
    r = contamination_report([write_json(tmp_path / "e.json", ["a b c d e f g h i"])], train_filter, N)
    json.dumps(r)  # serializable
    assert r["filter"]["k"] == train_filter.k and r["filter"]["fp_rate_target"] == FP
    assert r["filter"]["expected_fp_rate"] <= FP  # sized from n-gram occurrences: distinct ones are fewer
    assert r["corpus"]["files"] == [str((corpus / "documents" / "part-00000.parquet").resolve())]
    assert "upper bound" in r["note"]


# ---- inputs ----


def test_jsonl_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": "broken\n')
    with pytest.raises(PipelineError, match=r"bad\.jsonl:3: bad JSON line"):
        read_eval_texts(path)
    path.write_text('{"text": "fine"}\n["not", "an", "object"]\n')
    with pytest.raises(PipelineError, match=r"bad\.jsonl:2: expected a JSON object"):
        read_eval_texts(path)
    path.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(PipelineError, match=r"bad\.jsonl:2: .*'text'"):
        read_eval_texts(path)
    (tmp_path / "e.csv").write_text("text\n")
    with pytest.raises(PipelineError, match=r"e\.csv: unknown eval file type"):
        read_eval_texts(tmp_path / "e.csv")


def test_corpus_files_resolution(tmp_path):
    flat = tmp_path / "flat"
    for name in ("b.parquet", "a.parquet"):
        write_corpus(flat / name, ["x"], [])
    assert [p.name for p in corpus_files([flat])] == ["a.parquet", "b.parquet"]
    with pytest.raises(PipelineError, match="no such corpus"):
        corpus_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="no \\*.parquet"):
        corpus_files([tmp_path / "empty"])


# ---- CLI ----


def test_main_writes_report_and_reuses_cached_filter(articles, corpus, tmp_path, capsys):
    ev = write_json(tmp_path / "copied.json", articles[:3])
    cache, out = tmp_path / "cache" / "corpus.bloom.npz", tmp_path / "report.json"
    args = ["--eval", str(ev), "--filter-cache", str(cache), "--no-progress"]
    assert main(["--corpus", str(corpus), *args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["eval"][0]["share_found"] == 1.0 and report["filter"]["ngram"] == N
    assert "copied.json" in capsys.readouterr().out
    assert cache.is_file()

    assert main(args + ["--out", str(tmp_path / "again.json")]) == 0  # the cached filter alone
    assert json.loads((tmp_path / "again.json").read_text()) == report
    with pytest.raises(PipelineError, match="built for 8-grams, asked for 5-grams"):
        main(args + ["--ngram", "5"])
    with pytest.raises(PipelineError, match="another corpus or split"):
        main(["--corpus", str(corpus), "--split", "all", *args])


def test_main_checks_eval_files_before_building(corpus, tmp_path):
    (tmp_path / "e.csv").write_text("text\n")
    cache = tmp_path / "new.bloom.npz"
    with pytest.raises(PipelineError, match=r"e\.csv"):
        main(["--corpus", str(corpus), "--eval", str(tmp_path / "e.csv"), "--filter-cache", str(cache)])
    assert not cache.exists()
