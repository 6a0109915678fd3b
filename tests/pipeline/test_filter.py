import gzip

import pyarrow as pa

from pipeline.extract import CARRIED
from pipeline.filter import FilterConfig, filter_table, is_wikimedia, is_wikipedia
from pipeline.langid import LanguageScorer, token_counts


def docs(rows):
    base = {
        "url_hash": "0" * 16,
        "url": "http://x.com/a",
        "final_url": "http://x.com/a",
        "domain": "x.com",
        "score": 5,
        "n_submissions": 1,
        "first_created_utc": 1,
        "submission_ids": ["a"],
        "subreddits": ["s"],
    }
    rows = [base | r for r in rows]
    texts = [r["text"] for r in rows]  # annotated as extract annotates them
    for r, lang, score, n in zip(rows, *LanguageScorer()(texts), token_counts(texts)):
        r.update(lang=lang, lang_score=score, n_tokens=n)
    return pa.Table.from_pylist(rows)


def sentences(shared, lang, n=10, start=0):
    lines = gzip.decompress((shared / "langid" / "sentences" / f"{lang}.txt.gz").read_bytes()).decode().splitlines()
    return " ".join(lines[start : start + n])


def test_wikipedia_hosts():
    assert is_wikipedia("https://en.wikipedia.org/wiki/X")
    assert is_wikipedia("http://de.m.wikipedia.org/wiki/X")
    assert not is_wikipedia("http://notwikipedia.org/x") and not is_wikipedia(None)
    assert is_wikimedia("https://en.wiktionary.org/wiki/x") and not is_wikimedia("https://en.wikipedia.org/wiki/x")


def test_filter_decisions_with_reasons(shared):
    en = sentences(shared, "en", 12)
    rows = [
        {"url_hash": "1" * 16, "text": en},
        {"url_hash": "2" * 16, "text": sentences(shared, "de", 12)},
        {"url_hash": "3" * 16, "text": sentences(shared, "fr", 12)},
        {"url_hash": "4" * 16, "text": "A short English note about the weather today."},
        {"url_hash": "5" * 16, "text": en, "url": "https://en.wikipedia.org/wiki/A"},
        {"url_hash": "6" * 16, "text": en, "final_url": "https://en.m.wikipedia.org/wiki/A"},  # via a redirect
    ]
    cfg = FilterConfig(input="i", output="o")
    kept, drops = filter_table(docs(rows), cfg)
    assert kept.column("url_hash").to_pylist() == ["1" * 16]
    assert drops == {"language": 2, "too_short": 1, "wikipedia": 2}
    assert kept.column("lang").to_pylist() == ["en"] and kept.column("lang_score")[0].as_py() > 0.9
    assert kept.column("n_tokens")[0].as_py() >= 128
    assert kept.schema.names[: len(CARRIED)] == CARRIED


def test_other_language_and_threshold_from_config(shared):
    de = sentences(shared, "de", 12)
    cfg = FilterConfig(input="i", output="o", languages=["de"], min_tokens=0, min_lang_score=0.99999)
    kept, drops = filter_table(docs([{"text": de}]), cfg)
    assert kept.num_rows == 0 and drops == {"language_score": 1}
    cfg = FilterConfig(input="i", output="o", languages=["de"], min_tokens=0)
    kept, _ = filter_table(docs([{"text": de}]), cfg)
    assert kept.num_rows == 1


def test_wikimedia_by_option(shared):
    en = sentences(shared, "en", 12)
    table = docs([{"text": en, "url": "https://en.wikisource.org/wiki/A"}])
    assert filter_table(table, FilterConfig(input="i", output="o"))[0].num_rows == 1
    kept, drops = filter_table(table, FilterConfig(input="i", output="o", drop_wikimedia=True))
    assert kept.num_rows == 0 and drops == {"wikimedia": 1}
