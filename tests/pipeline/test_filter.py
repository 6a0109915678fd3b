import gzip
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.extract import CARRIED
from pipeline.stages.filter import FilterConfig, filter_table, is_wikimedia, is_wikipedia
from pipeline.text.langid import LanguageScorer, token_counts


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
    kept, reasons = filter_table(docs(rows), cfg)
    drops = Counter(r for r in reasons if r)
    assert kept.column("url_hash").to_pylist() == ["1" * 16]
    assert drops == {"language": 2, "too_short": 1, "wikipedia": 2}
    assert kept.column("lang").to_pylist() == ["en"] and kept.column("lang_score")[0].as_py() > 0.9
    assert kept.column("n_tokens")[0].as_py() >= 128
    assert kept.schema.names[: len(CARRIED)] == CARRIED


def test_other_language_and_threshold_from_config(shared):
    de = sentences(shared, "de", 12)
    cfg = FilterConfig(input="i", output="o", languages=["de"], min_tokens=0, min_lang_score=0.99999)
    kept, reasons = filter_table(docs([{"text": de}]), cfg)
    assert kept.num_rows == 0 and reasons == ["language_score"]
    cfg = FilterConfig(input="i", output="o", languages=["de"], min_tokens=0)
    kept, _ = filter_table(docs([{"text": de}]), cfg)
    assert kept.num_rows == 1


def test_wikimedia_by_option(shared):
    en = sentences(shared, "en", 12)
    table = docs([{"text": en, "url": "https://en.wikisource.org/wiki/A"}])
    assert filter_table(table, FilterConfig(input="i", output="o"))[0].num_rows == 1
    kept, reasons = filter_table(table, FilterConfig(input="i", output="o", drop_wikimedia=True))
    assert kept.num_rows == 0 and reasons == ["wikimedia"]


def test_quality_rules_are_off_by_default_and_name_their_reason(shared):
    en = sentences(shared, "en", 12)
    spam = "\n".join(["Buy cheap watches now ... best prices ... click here ..."] * 40)
    listy = "\n".join(f"- item {i} of the list of things to have with you" for i in range(80))
    table = docs([{"text": en}, {"text": spam}, {"text": listy}, {"text": en + " Lorem ipsum dolor sit amet."}])
    off, reasons = filter_table(table, FilterConfig(input="i", output="o", min_tokens=0, min_lang_score=0))
    assert reasons == [None, None, None, None]  # OpenWebText: no heuristics
    cfg = FilterConfig(input="i", output="o", min_tokens=0, min_lang_score=0, quality_rules=True)
    kept, reasons = filter_table(table, cfg)
    assert reasons == [None, "quality_symbol_ratio", "quality_bullet_lines", "quality_lorem_ipsum"]
    relaxed = cfg.model_copy(update={"quality": cfg.quality.model_copy(update={"max_symbol_ratio": 1.0})})
    assert filter_table(table, relaxed)[1][1] == "quality_ellipsis_lines"  # the next rule it fails


def test_rejected_documents_kept_with_their_reasons(tmp_path, shared):
    from pipeline.core.dataset import write_parquet
    from pipeline.core.stage import ShardTask
    from pipeline.stages.filter import filter_shard

    table = docs([{"text": sentences(shared, "en", 12)}, {"text": sentences(shared, "de", 12)}])
    src = tmp_path / "docs" / "part-00000.parquet"
    write_parquet(table, src)
    cfg = FilterConfig(input=str(src.parent), output=str(tmp_path / "out"), keep_rejected=True)
    rec = filter_shard(ShardTask("part-00000", [str(src)], str(tmp_path / "out"), cfg))
    rejected = pq.read_table(tmp_path / "out" / "rejected" / "part-00000.parquet")
    assert rejected.column("drop_reason").to_pylist() == ["language"] and rec["drops"] == {"language": 1}
    assert [f["path"] for f in rec["files"]] == ["part-00000.parquet", "rejected/part-00000.parquet"]
