"""Heuristic quality rules in the style of Gopher (Rae et al. 2021, appendix A) and C4 (Raffel et al. 2020), for
the filter stage. OpenWebText used none of them, so they are off by default (`filter.quality_rules`); each rule
has its own drop reason and threshold.
"""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, ConfigDict, Field

WORD = re.compile(r"\w+")
# Gopher's stop words: a document must contain at least two of them to read as natural English.
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
BULLETS = ("•", "-", "*", "·", "‣", "◦", "▪")


class QualityThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_mean_word_length: float = 3.0  # Gopher: mean word length within [3, 10] characters
    max_mean_word_length: float = 10.0
    max_symbol_ratio: float = Field(0.1, ge=0)  # '#' and '...' per word (Gopher)
    max_bullet_lines: float = Field(0.9, ge=0, le=1)  # share of lines starting with a bullet (Gopher)
    max_ellipsis_lines: float = Field(0.3, ge=0, le=1)  # share of lines ending with '...' (Gopher)
    min_alpha_words: float = Field(0.8, ge=0, le=1)  # share of words with a letter (Gopher)
    min_stop_words: int = Field(2, ge=0)  # distinct Gopher stop words present
    max_duplicate_lines: float = Field(0.3, ge=0, le=1)  # share of lines that repeat an earlier line (Gopher)
    max_top_bigram_chars: float = Field(0.2, ge=0, le=1)  # chars in the most frequent word 2-gram (Gopher)
    drop_lorem_ipsum: bool = True  # C4


def quality_reason(text: str, t: QualityThresholds) -> str | None:
    """The first rule the text fails, or None."""
    words = WORD.findall(text)
    if not words:
        return "no_words"
    mean_len = sum(map(len, words)) / len(words)
    if not t.min_mean_word_length <= mean_len <= t.max_mean_word_length:
        return "mean_word_length"
    if (text.count("#") + text.count("...") + text.count("…")) / len(words) > t.max_symbol_ratio:
        return "symbol_ratio"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines:
        if sum(ln.startswith(BULLETS) for ln in lines) / len(lines) > t.max_bullet_lines:
            return "bullet_lines"
        if sum(ln.endswith(("...", "…")) for ln in lines) / len(lines) > t.max_ellipsis_lines:
            return "ellipsis_lines"
        if 1 - len(set(lines)) / len(lines) > t.max_duplicate_lines:
            return "duplicate_lines"
    if sum(any(c.isalpha() for c in w) for w in words) / len(words) < t.min_alpha_words:
        return "alpha_words"
    lowered = [w.lower() for w in words]
    if len(STOP_WORDS.intersection(lowered)) < t.min_stop_words:
        return "stop_words"
    if len(lowered) >= 2:
        (bigram, count), *_ = Counter(zip(lowered, lowered[1:])).most_common(1)
        if count > 1 and count * (len(bigram[0]) + len(bigram[1])) / max(len(text), 1) > t.max_top_bigram_chars:
            return "repeated_ngrams"
    if t.drop_lorem_ipsum and "lorem ipsum" in text.lower():
        return "lorem_ipsum"
    return None
