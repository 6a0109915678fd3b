"""Heuristic quality signals in the style of Gopher (Rae et al. 2021, appendix A) and C4 (Raffel et al. 2020):
measured by the `quality` annotator, thresholded by the filter stage. OpenWebText used none of them, so they are
off by default (`filter.quality_rules`); each rule has its own drop reason and threshold.
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


# The signals, one column each (the quality annotator writes them), in the order their rules apply.
SIGNALS = (
    ("quality_words", "int64"),
    ("quality_mean_word_length", "float64"),
    ("quality_symbol_ratio", "float64"),
    ("quality_bullet_lines", "float64"),
    ("quality_ellipsis_lines", "float64"),
    ("quality_duplicate_lines", "float64"),
    ("quality_alpha_words", "float64"),
    ("quality_stop_words", "int64"),
    ("quality_top_bigram_chars", "float64"),
    ("quality_lorem_ipsum", "bool"),
)


def signals(text: str) -> dict[str, float | int | bool]:
    """The measurements the rules compare with thresholds; shares are 0 for a text without lines or words."""
    words = WORD.findall(text)
    n = len(words)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lowered = [w.lower() for w in words]
    top_bigram = 0.0
    if n >= 2:
        (bigram, count), *_ = Counter(zip(lowered, lowered[1:])).most_common(1)
        if count > 1:
            top_bigram = count * (len(bigram[0]) + len(bigram[1])) / max(len(text), 1)
    return {
        "quality_words": n,
        "quality_mean_word_length": sum(map(len, words)) / n if n else 0.0,
        "quality_symbol_ratio": (text.count("#") + text.count("...") + text.count("…")) / n if n else 0.0,
        "quality_bullet_lines": sum(ln.startswith(BULLETS) for ln in lines) / len(lines) if lines else 0.0,
        "quality_ellipsis_lines": sum(ln.endswith(("...", "…")) for ln in lines) / len(lines) if lines else 0.0,
        "quality_duplicate_lines": 1 - len(set(lines)) / len(lines) if lines else 0.0,
        "quality_alpha_words": sum(any(c.isalpha() for c in w) for w in words) / n if n else 0.0,
        "quality_stop_words": len(STOP_WORDS.intersection(lowered)),
        "quality_top_bigram_chars": top_bigram,
        "quality_lorem_ipsum": "lorem ipsum" in text.lower(),
    }


def threshold_rules(t: QualityThresholds) -> list[tuple[str, str, float | int | bool, str]]:
    """The thresholds as filter rules, (column, op, value, drop reason), in Gopher's order: a document is dropped
    for the first one it fails."""
    rules: list[tuple[str, str, float | int | bool, str]] = [
        ("quality_words", "<", 1, "quality_no_words"),
        ("quality_mean_word_length", "<", t.min_mean_word_length, "quality_mean_word_length"),
        ("quality_mean_word_length", ">", t.max_mean_word_length, "quality_mean_word_length"),
        ("quality_symbol_ratio", ">", t.max_symbol_ratio, "quality_symbol_ratio"),
        ("quality_bullet_lines", ">", t.max_bullet_lines, "quality_bullet_lines"),
        ("quality_ellipsis_lines", ">", t.max_ellipsis_lines, "quality_ellipsis_lines"),
        ("quality_duplicate_lines", ">", t.max_duplicate_lines, "quality_duplicate_lines"),
        ("quality_alpha_words", "<", t.min_alpha_words, "quality_alpha_words"),
        ("quality_stop_words", "<", t.min_stop_words, "quality_stop_words"),
        ("quality_top_bigram_chars", ">", t.max_top_bigram_chars, "quality_repeated_ngrams"),
    ]
    if t.drop_lorem_ipsum:
        rules.append(("quality_lorem_ipsum", "==", True, "quality_lorem_ipsum"))
    return rules


def quality_reason(text: str, t: QualityThresholds) -> str | None:
    """The first rule the text fails, or None (the filter applies the same rules to the annotated columns)."""
    got = signals(text)
    for column, op, value, reason in threshold_rules(t):
        v = got[column]
        if (op == "<" and v < value) or (op == ">" and v > value) or (op == "==" and v == value):
            return reason.removeprefix("quality_")
    return None
