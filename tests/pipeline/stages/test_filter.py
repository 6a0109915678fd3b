import gzip
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.core.errors import PipelineError
from pipeline.stages.annotate import AnnotateConfig, annotate_table
from pipeline.stages.extract import CARRIED
from pipeline.stages.filter import FilterConfig, Rule, filter_table, is_wikimedia, is_wikipedia


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
    table = pa.Table.from_pylist([base | r for r in rows])
    # annotated as the annotate stage annotates them: the default annotators, and the quality signals
    return annotate_table(table, AnnotateConfig(input="i", output="o", annotators=["language", "tokens", "quality"]))


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
    rec = filter_shard(ShardTask("part-00000", [str(src)], str(tmp_path / "out"), cfg, None))
    rejected = pq.read_table(tmp_path / "out" / "rejected" / "part-00000.parquet")
    assert rejected.column("drop_reason").to_pylist() == ["language"] and rec["drops"] == {"language": 1}
    assert [f["path"] for f in rec["files"]] == ["part-00000.parquet", "rejected/part-00000.parquet"]


def test_rules_are_data_and_apply_in_order(shared):
    en = sentences(shared, "en", 12)
    table = docs([{"text": en}, {"text": en + " Lorem ipsum."}, {"text": sentences(shared, "en", 30, 20)}])
    n = table.column("n_tokens").to_pylist()
    longest = max(n)
    rules = [
        Rule(column="n_tokens", op=">=", value=longest, reason="too_long"),
        Rule(column="quality_lorem_ipsum", op="==", value=True, reason="placeholder"),
        Rule(column="n_tokens", op=">=", value=0, reason="everything_else"),  # never reached for the first two
    ]
    cfg = FilterConfig(input="i", output="o", min_tokens=0, min_lang_score=0, rules=rules)
    _, reasons = filter_table(table, cfg)
    assert reasons == ["everything_else", "placeholder", "too_long"]
    # and a rule that reads a column nobody wrote names the missing annotator's column
    missing = FilterConfig(input="i", output="o", rules=[Rule(column="toxicity", op=">", value=0.5, reason="toxic")])
    with pytest.raises(PipelineError, match="column 'toxicity'.*annotators"):
        filter_table(table, missing)


def test_a_missing_value_fails_a_comparison_and_is_in_no_set():
    table = pa.table(
        {
            "url": ["http://a.example/"] * 4,
            "final_url": ["http://a.example/"] * 4,
            "lang": ["en", None, "de", "de"],
            "lang_score": [0.9, None, 0.9, 0.9],
            "n_tokens": [500, 500, None, 500],
            "score": [1.5, None, 0.2, None],
        }
    )
    low = Rule(column="score", op="<", value=1.0, reason="low")
    cfg = FilterConfig(input="i", output="o", languages=["en", "de"], rules=[low])
    assert filter_table(table, cfg)[1] == [None, "language", "too_short", "low"]
    german = Rule(column="lang", op="in", value=["de"], reason="german")
    cfg = FilterConfig(input="i", output="o", languages=["en", "de"], min_tokens=0, rules=[german])
    assert filter_table(table, cfg)[1] == [None, "language", "too_short", "german"]


def test_rules_on_missing_values_and_wrong_types():
    table = pa.table({"url": ["u"] * 3, "final_url": ["u"] * 3, "lang": ["en"] * 3, "lang_score": [0.9] * 3,
                      "n_tokens": [500] * 3, "label": ["spam", None, "ham"], "year": [2001, 2010, None]})  # fmt: skip
    spam = Rule(column="label", op="==", value="spam", reason="spam")
    old = Rule(column="year", op="in", value=[2001, 2002], reason="early")
    cfg = FilterConfig(input="i", output="o", rules=[spam, old])
    assert filter_table(table, cfg)[1] == ["spam", None, None]  # null: equal to nothing, in no set
    unlabelled = Rule(column="label", op="!=", value="ham", reason="not_ham")
    assert filter_table(table, cfg.model_copy(update={"rules": [unlabelled]}))[1] == ["not_ham", "not_ham", None]
    wrong = Rule(column="year", op="<", value="recent", reason="typo")
    with pytest.raises(PipelineError, match=r"filter rule 'typo': column 'year' holds int64, which does not compare"):
        filter_table(table, cfg.model_copy(update={"rules": [wrong]}))
