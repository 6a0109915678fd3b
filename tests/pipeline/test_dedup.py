import random

import pyarrow as pa

from pipeline.dedup import SIG_SCHEMA, DedupConfig, find_duplicates, shingles, signature, text_hash

WORDS = (
    "river stone light market garden letter window winter summer bridge paper music table forest "
    "engine island silver mountain village doctor morning evening harbor station school animal"
).split()


def doc(seed: int, n: int = 400) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def sigs(texts, scores, cfg):
    return pa.table(
        {
            "url_hash": [f"{i:016x}" for i in range(len(texts))],
            "score": scores,
            "first_created_utc": [100] * len(texts),
            "text_hash": [text_hash(t) for t in texts],
            "minhash": [signature(t, cfg).tolist() for t in texts],
        },
        schema=SIG_SCHEMA,
    )


def test_shingles_and_exact_key():
    assert shingles("a b c", 5) == {b"a b c"}
    assert shingles("One two three four five six", 5) == {b"one two three four five", b"two three four five six"}
    assert text_hash("Hello,   World!") == text_hash("hello world")


def test_exact_and_near_duplicates_one_keeper_each():
    cfg = DedupConfig(input="i", output="o")
    base, other = doc(1), doc(2)
    w = base.split()
    near = " ".join(w[:360] + doc(9, 40).split())  # 90% shared text: Jaccard of 5-grams ~0.8
    far = " ".join(w[:100] + doc(10, 300).split())  # 25% shared: well below 0.5
    texts = [base, base.upper() + " ", near, other, far]
    removed = find_duplicates(sigs(texts, [5, 50, 7, 3, 9], cfg), cfg).to_pylist()
    by_id = {r["url_hash"]: r for r in removed}
    # Highest score keeps: doc 1 (score 50) is kept, its exact copy doc 0 and near copy doc 2 go.
    assert by_id[f"{0:016x}"] == {"url_hash": f"{0:016x}", "reason": "exact_duplicate", "duplicate_of": f"{1:016x}"}
    assert by_id[f"{2:016x}"]["reason"] == "near_duplicate" and by_id[f"{2:016x}"]["duplicate_of"] == f"{1:016x}"
    assert set(by_id) == {f"{0:016x}", f"{2:016x}"}


def test_result_does_not_depend_on_input_order():
    cfg = DedupConfig(input="i", output="o")
    texts = [doc(i % 4) if i % 3 else doc(i) for i in range(30)]
    t = sigs(texts, [i % 5 for i in range(30)], cfg)
    shuffled = t.take(random.Random(0).sample(range(30), 30))
    assert find_duplicates(t, cfg).equals(find_duplicates(shuffled, cfg))
