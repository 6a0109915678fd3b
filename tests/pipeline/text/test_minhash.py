import json
import unicodedata

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.text.minhash import MinHasher, nfkc, shingle_hashes, shingles, text_key, word_hashes

# Letters, digits, punctuation, spaces and newlines, combining marks, compatibility characters (ligatures,
# fractions, full-width, no-break space), scripts without case and with special case rules.
ALPHABET = st.sampled_from(
    list("abcXYZ019_ .,;-'\"\n\t")
    + ["\u0301", "\u0308", "\ufb01", "\u00bd", "\uff21", "\u00a0", "\u2026"]
    + list("éßİıΣσςЖж中文ひらがなاللغة")
    + ["\U0001f600", "\u200b", "\u0000"]
)


def test_shingles_and_exact_key():
    assert shingles("a b c", 5) == {b"a b c"}
    assert shingles("One two three four five six", 5) == {b"one two three four five", b"two three four five six"}
    assert text_key("Hello,   World!") == text_key("hello world")
    assert text_key("hello world") != text_key("world hello")
    assert len(shingle_hashes("one two three four five six seven", 5)) == 3


def test_signatures_equal_datasketch_on_real_pages(shared):
    pages = json.loads((shared / "html-benchmark" / "ground-truth.json").read_text())
    texts = [p["articleBody"] for p in pages.values()][:60]
    assert sum(not unicodedata.is_normalized("NFKC", t) for t in texts) > 0  # the normalizing path is covered
    hasher = MinHasher(num_perm=128, seed=1, ngram=5)
    for text in texts + ["", "   ", "a", "x y z", "e\u0301t\u00e9 \ufb01n \u00bd İstanbul STRASSE straße"]:
        assert np.array_equal(hasher.signature(text), hasher.reference(text)), text[:80]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=300).map("".join), st.integers(1, 7), st.integers(0, 2**31))
def test_signatures_equal_datasketch_on_any_text(text, ngram, seed):
    hasher = MinHasher(num_perm=32, seed=seed, ngram=ngram)
    assert np.array_equal(hasher.signature(text), hasher.reference(text))


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=200).map("".join))
def test_linewise_nfkc_is_nfkc(text):
    assert nfkc(text) == unicodedata.normalize("NFKC", text)


def test_word_hashes_ignore_case_punctuation_and_spacing():
    assert np.array_equal(word_hashes("Hello, World!\n"), word_hashes("hello world"))
    assert len(word_hashes("")) == 1  # a text without words is one empty word, as shingles() says


def test_block_boundaries_do_not_matter():
    text = " ".join(f"w{i % 997}" for i in range(5000))  # ~5000 shingles: several blocks
    hasher = MinHasher()
    assert np.array_equal(hasher.signature(text), hasher.reference(text))


def test_sketch_agrees_with_the_single_functions():
    text = "Alpha beta, gamma delta epsilon zeta eta theta. Alpha beta!"
    hasher = MinHasher(num_perm=64, ngram=3)
    sketch = hasher.sketch(text, with_shingles=True)
    assert np.array_equal(sketch.signature, hasher.signature(text)) and sketch.key == text_key(text)
    assert np.array_equal(sketch.shingles, np.unique(shingle_hashes(text, 3)))
