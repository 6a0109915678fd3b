"""MinHash signatures of word n-gram sets, computed a whole document at a time in numpy.

The signature is exactly datasketch's `MinHash(num_perm, seed, scheme="affine32", hashfunc=shingle_hash)` after
`update_batch(shingles(text, n))`: the same permutations (taken from datasketch), the same fmix32 pre-mix and affine
map, the same minimum. What differs is how the shingles are hashed. datasketch calls a hash function once per
shingle from Python (~1 µs each with its sha1 default, on top of building each shingle string); here a shingle's
hash is defined from its words' hashes, and every word of a document is hashed at once:

    word hash  W(w)        = fmix64(sum_i cp_i * P**i mod 2**64)           cp_i: code points of the word
    shingle    S(w_0..w_k) = fmix64(sum_j W(w_j) * C_j mod 2**64) >> 32    k < n; C_j fixed odd constants

The polynomial of every word comes from one prefix sum over the document's code points (P is odd, so P**-i exists
mod 2**64). `shingle_hash` computes the same S from a shingle's bytes, one at a time, for datasketch and tests.

Words are what `\\w+` finds in the NFKC-normalized, lower-cased text (shingles() is the reference).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from datasketch import MinHash

SCHEME = "affine32"  # datasketch >= 2.0's default; signatures of different schemes cannot be compared
MASK64 = (1 << 64) - 1
P = 0x9E3779B97F4A7C15  # odd: invertible mod 2**64
P_INV = pow(P, -1, 1 << 64)
MAX_NGRAM = 64
WORD = re.compile(r"\w+")


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


C = [_fmix64_int(j + 1) | 1 for j in range(MAX_NGRAM)]
_C = np.array(C, dtype=np.uint64)
_U64 = np.uint64


def fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h *= _U64(0xFF51AFD7ED558CCD)
    h ^= h >> _U64(33)
    h *= _U64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> _U64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:  # datasketch's pre-mix of the input hash (affine32)
    h = h ^ (h >> np.uint32(16))
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


# ---- reference path: one shingle at a time (what datasketch is given) ----


def words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams joined by spaces; a text of n words or fewer is one shingle."""
    w = words(text)
    if len(w) <= n:
        return {" ".join(w).encode()}
    return {" ".join(w[i : i + n]).encode() for i in range(len(w) - n + 1)}


def word_hash(word: str) -> int:
    s, p = 0, 1
    for ch in word:
        s = (s + ord(ch) * p) & MASK64
        p = (p * P) & MASK64
    return _fmix64_int(s)


def shingle_hash(shingle: bytes) -> int:
    """S above for one shingle: a datasketch `hashfunc` (32 bits, as affine32 requires)."""
    g = 0
    for j, w in enumerate(shingle.decode().split(" ")):
        g = (g + word_hash(w) * C[j]) & MASK64
    return _fmix64_int(g) >> 32


# ---- vectorized path ----


@lru_cache(maxsize=1)
def _bmp_word_table() -> np.ndarray:
    """Is code point c a word character (what `\\w` matches), for every c < 65536: (65536,) bool, ~30 ms once."""
    return np.array([WORD.match(chr(c)) is not None for c in range(1 << 16)], dtype=bool)


@lru_cache(maxsize=1 << 12)
def _is_word_char(cp: int) -> bool:
    return WORD.match(chr(cp)) is not None


def _word_mask(cp: np.ndarray) -> np.ndarray:
    table = _bmp_word_table()
    if cp.dtype == np.uint8 or int(cp.max(initial=0)) < len(table):
        return table[cp]
    mask = table[np.minimum(cp, len(table) - 1)]
    astral = np.flatnonzero(cp >= len(table))  # emoji, rare scripts: few, looked up one by one
    mask[astral] = [_is_word_char(int(c)) for c in cp[astral]]
    return mask


class _Powers:
    """P**i and P**-i mod 2**64 for i < n, grown on demand. uint64 products wrap: that is the mod 2**64."""

    def __init__(self) -> None:
        self.up = self.down = np.ones(1, dtype=np.uint64)

    def __call__(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.up) < n:
            size = max(n, 2 * len(self.up))
            self.up, self.down = (
                np.cumprod(np.r_[_U64(1), np.full(size - 1, x, _U64)], dtype=_U64) for x in (P, P_INV)
            )
        return self.up, self.down


_powers = _Powers()


def nfkc(text: str) -> str:
    """unicodedata.normalize("NFKC", text), paying only for the lines that change: nothing composes or reorders
    across a newline (a starter that no composition starts or ends with), so lines normalize independently."""
    is_normalized, normalize = unicodedata.is_normalized, unicodedata.normalize
    return "\n".join(line if is_normalized("NFKC", line) else normalize("NFKC", line) for line in text.split("\n"))


def word_hashes(text: str) -> np.ndarray:
    """W of every word of `text`, in order: (n_words,) uint64. A text without words has one empty word."""
    if not text.isascii() and not unicodedata.is_normalized("NFKC", text):
        text = nfkc(text)
    text = text.lower()
    if text.isascii():
        cp = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    is_word = _word_mask(cp)
    n = len(cp)
    up, down = _powers(n + 1)
    prefix = np.zeros(n + 1, dtype=_U64)
    np.cumsum(cp * up[:n], out=prefix[1:])  # prefix[k] = sum_{i<k} cp_i P**i
    edges = np.flatnonzero(np.diff(is_word.view(np.int8), prepend=np.int8(0), append=np.int8(0)))
    starts, ends = edges[0::2], edges[1::2]  # (n_words,) each: [start, end) of every word
    if len(starts) == 0:
        return fmix64(np.zeros(1, dtype=_U64))
    return fmix64((prefix[ends] - prefix[starts]) * down[starts])


def shingle_hashes(text: str, n: int) -> np.ndarray:
    """S of every n-gram of words, in order (repeats kept: the minimum does not mind): (n_shingles,) uint32."""
    return _shingles_of(word_hashes(text), n)


def _shingles_of(w: np.ndarray, n: int) -> np.ndarray:
    if len(w) <= n:
        g = np.array([np.sum(w * _C[: len(w)], dtype=_U64)], dtype=_U64)
    else:
        k = len(w) - n + 1
        g = w[:k] * _C[0]
        for j in range(1, n):
            g += w[j : j + k] * _C[j]
    return (fmix64(g) >> _U64(32)).astype(np.uint32)


def text_key(text: str) -> bytes:
    """Exact-duplicate key, 16 bytes: the sequence of word hashes, so case, punctuation and whitespace do not count."""
    return _key_of(word_hashes(text))


def _key_of(w: np.ndarray) -> bytes:
    return hashlib.blake2b(w.tobytes(), digest_size=16).digest()


class Sketch(NamedTuple):
    signature: np.ndarray  # (num_perm,) uint32
    key: bytes  # text_key()
    shingles: np.ndarray | None  # sorted distinct shingle hashes, (n,) uint32, when asked for


class MinHasher:
    """Signatures for one (num_perm, seed, n-gram) setting: (num_perm,) uint32 per text."""

    BLOCK = 4096  # shingles per step: a (num_perm, 4096) uint32 block, 2 MB at 128 (measured faster than 1024)

    def __init__(self, num_perm: int = 128, seed: int = 1, ngram: int = 5):
        if not 1 <= ngram <= MAX_NGRAM:
            raise ValueError(f"ngram must be in 1..{MAX_NGRAM}, got {ngram}")
        self.num_perm, self.seed, self.ngram = num_perm, seed, ngram
        a, b = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME).permutations  # (num_perm,) uint32 each
        self.a, self.b = a[:, None], b[:, None]  # (num_perm, 1): broadcast along rows of shingles
        self._block = np.empty((num_perm, self.BLOCK), dtype=np.uint32)

    def signature(self, text: str) -> np.ndarray:
        return self._min_over(shingle_hashes(text, self.ngram))

    def sketch(self, text: str, with_shingles: bool = False) -> Sketch:
        """Signature, exact key and (optionally) the shingle set, from one pass over the text."""
        w = word_hashes(text)
        s = _shingles_of(w, self.ngram)
        return Sketch(self._min_over(s), _key_of(w), np.unique(s) if with_shingles else None)

    def _min_over(self, shingle_hashes: np.ndarray) -> np.ndarray:
        hv = _fmix32(shingle_hashes)  # (n_shingles,)
        out = np.full(self.num_perm, np.iinfo(np.uint32).max, dtype=np.uint32)
        for s in range(0, len(hv), self.BLOCK):
            h = hv[None, s : s + self.BLOCK]  # (1, m)
            block = self._block[:, : h.shape[1]]  # (num_perm, m): one permutation per row, contiguous
            np.multiply(self.a, h, out=block)  # uint32 wraps: datasketch's mod 2**32
            np.add(block, self.b, out=block)
            np.minimum(out, block.min(axis=1), out=out)
        return out

    def reference(self, text: str) -> np.ndarray:
        """The same signature through datasketch itself (slow): what tests and benchmarks compare with."""
        m = MinHash(num_perm=self.num_perm, seed=self.seed, scheme=SCHEME, hashfunc=shingle_hash)
        m.update_batch(list(shingles(text, self.ngram)))
        return m.hashvalues
