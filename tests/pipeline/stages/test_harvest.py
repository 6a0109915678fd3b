import bz2
import gzip
import json
import lzma
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
import reddit_sample  # noqa: E402
import zstandard

from pipeline.core.errors import PipelineError
from pipeline.core.runner import LocalRunner
from pipeline.stages.harvest import (
    DECODE_ERRORS,
    HarvestConfig,
    Submission,
    SubmissionDecoder,
    SubmissionRules,
    harvest_lines,
    map_table,
    read_links,
    run,
)
from pipeline.text.dumps import DumpReader
from pipeline.text.urls import normalize_url

BASE = {
    "id": "a1",
    "url": "http://news.example.com/story",
    "score": 5,
    "created_utc": 1300000000,
    "is_self": False,
    "over_18": False,
    "subreddit": "news",
}


def judge(cfg=None, **kw):
    cfg = cfg or HarvestConfig(input=["x"], output="o")
    url, _host, reason = SubmissionRules(cfg).judge(Submission.of(BASE | kw))
    return url, reason


def test_rules_default_to_webtext():
    assert judge() == ("http://news.example.com/story", None)
    assert judge(score=2) == (None, "low_score")
    assert judge(score=None) == (None, "no_score")
    assert judge(is_self=True) == (None, "self_post")
    assert judge(created_utc=1512086400) == (None, "after_cutoff")  # 2017-12-01T00:00Z
    assert judge(created_utc="1300000000")[1] is None  # strings, as in the 2014-2015 dumps
    assert judge(created_utc="soon") == (None, "no_created_utc")
    assert judge(url=None) == (None, "no_url")
    assert judge(url="ftp://x.org/f") == (None, "not_http_url")
    assert judge(url="http://example.com:99999/") == (None, "not_http_url")
    assert judge(url="http://i.imgur.com/abc") == (None, "blocked_domain")
    assert judge(url="http://example.com/paper.PDF") == (None, "blocked_extension")
    assert judge(url="[deleted]") == (None, "not_http_url")
    assert judge(author="[deleted]", removed_by_category="deleted")[1] is None  # the link itself is still good
    assert judge(over_18=True) == (None, "nsfw")  # OpenWebText skipped over_18 submissions
    assert judge(HarvestConfig(input=["x"], output="o", drop_nsfw=False), over_18=True)[1] is None


def test_nsfw_and_score_options():
    cfg = HarvestConfig(input=["x"], output="o", drop_nsfw=True, min_score=10)
    assert judge(cfg, over_18=True, score=20) == (None, "nsfw")
    assert judge(cfg, score=9) == (None, "low_score")
    summed = HarvestConfig(input=["x"], output="o", score_mode="summed")
    assert judge(summed, score=1)[1] is None  # judged later, on the URL's summed score


def lines_of(*recs) -> list[bytes]:
    return [r if isinstance(r, bytes) else json.dumps(r).encode() for r in recs]


def test_bad_lines_counted_and_named_and_bad_bytes_repaired():
    lines = lines_of(
        BASE,
        b'{"url": "http://x.com", "sc',
        b"[1, 2]",
        b"",
        BASE | {"id": "a2", "score": 50, "url": BASE["url"] + "?utm_source=x#top"},
        json.dumps(BASE | {"id": "a3", "subreddit": "caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9"),
        # A bad byte anywhere takes the line to the slow path, which repairs and counts it.
        json.dumps(BASE | {"id": "a4", "title": "caf\u00e9"}).encode().replace(b"\\u00e9", b"\xe9"),
        b'{"score": 1e400}',  # valid JSON to some decoders, not to orjson: judged as orjson sees it
    )
    drops, notes, examples = Counter(), Counter(), []
    kept = harvest_lines(
        lines, SubmissionRules(HarvestConfig(input=["x"], output="o")), "RS_x.json", drops, notes, examples
    )
    assert drops == {"bad_json": 2, "not_an_object": 1, "blank_line": 1}
    assert examples[0].startswith("RS_x.json:2: bad JSON") and examples[1].startswith("RS_x.json:8: bad JSON")
    assert notes == {"parsed": 5, "repaired_utf8": 2}
    (row,) = map_table(kept, 4).to_pylist()
    assert (row["score_max"], row["score_sum"], row["n_submissions"]) == (50, 65, 4)
    assert sorted(row["submission_ids"]) == ["a1", "a2", "a3", "a4"]
    assert sorted(row["subreddits"]) == ["caf\ufffd", "news"]


def test_fast_decoder_reads_what_orjson_reads(shared):
    decode = SubmissionDecoder()
    rng = random.Random(0)
    generated = [json.dumps(reddit_sample.record(rng, i)).encode() for i in range(2000)]  # 2017-like, ~100 fields
    real = [line for dump in sorted((shared / "reddit").glob("RS_*")) for line in DumpReader(dump)]
    checked = 0
    for line in generated + real:
        try:
            fast = decode(line)
        except DECODE_ERRORS:
            continue  # the slow path decides these, with orjson itself
        assert fast == Submission.of(orjson.loads(line)), line[:200]
        checked += 1
    assert checked > 3000
    # A nested value still alive blocks the reused parser for one line only; the loop's slow path takes that line.
    odd = decode(json.dumps(BASE | {"url": {"nested": 1}}).encode())
    with pytest.raises(DECODE_ERRORS):
        decode(json.dumps(BASE).encode())
    del odd
    assert decode(json.dumps(BASE).encode()) == Submission.of(BASE)
    for bad in (b"[1]", b"", b'{"id": "x"', b'{"score": 123456789012345678901234567890}', b'{"id": "\xff"}'):
        with pytest.raises(DECODE_ERRORS):
            decode(bad)


def write_dump(path: Path, recs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join(json.dumps(r).encode() for r in recs) + b"\n"))
    return path


def test_score_modes_and_accounting(tmp_path):
    recs = [
        BASE | {"id": "1", "score": 2},
        BASE | {"id": "2", "score": 2},  # sum 4: only summed mode keeps it
        BASE | {"id": "3", "url": "http://b.example.org/x", "score": 1},
        BASE | {"id": "4", "url": "http://c.example.org/y", "score": 7},
        BASE | {"id": "5", "url": "http://c.example.org/y?fbclid=abc", "score": 1},
    ]
    dump = write_dump(tmp_path / "RS_2011-01.zst", recs)
    per = run(HarvestConfig(input=[str(dump)], output=str(tmp_path / "per"), num_shards=2), LocalRunner())
    summed = run(
        HarvestConfig(input=[str(dump)], output=str(tmp_path / "sum"), num_shards=2, score_mode="summed"), LocalRunner()
    )
    rows = {r["url"]: r for r in read_links(tmp_path / "per").to_pylist()}
    assert set(rows) == {"http://c.example.org/y"} and rows["http://c.example.org/y"]["score"] == 7
    assert per["drops"] == {"low_score": 4}
    srows = {r["url"]: r for r in read_links(tmp_path / "sum").to_pylist()}
    assert set(srows) == {"http://news.example.com/story", "http://c.example.org/y"}
    assert srows["http://c.example.org/y"]["score"] == 8 and srows["http://c.example.org/y"]["n_submissions"] == 2
    assert summed["drops"] == {"low_score": 1, "duplicate_url": 2}
    for m in (per, summed):
        assert m["rows_in"] - sum(m["drops"].values()) == m["rows_out"]


def test_month_range_selects_files(tmp_path):
    for month in ("2005-06", "2011-03", "2018-01"):
        write_dump(tmp_path / "d" / f"RS_{month}.zst", [BASE | {"id": month}])
    m = run(
        HarvestConfig(input=[str(tmp_path / "d")], output=str(tmp_path / "o"), months="2005-06..2017-11"), LocalRunner()
    )
    assert [d["name"] for d in m["dumps"]] == ["RS_2005-06.zst", "RS_2011-03.zst"]
    assert m["skipped_files"] == [
        {
            "file": str(tmp_path / "d" / "RS_2018-01.zst"),
            "reason": "the month in its name is not in months=2005-06..2017-11",
        }
    ]
    with pytest.raises(PipelineError, match="no dump among 3 input files"):
        run(
            HarvestConfig(input=[str(tmp_path / "d")], output=str(tmp_path / "o2"), months="2019-01..2019-02"),
            LocalRunner(),
        )


def _write_formats(tmp_path: Path, data: bytes) -> list[Path]:
    out = []
    for name, blob in [
        ("RS_a.zst", zstandard.ZstdCompressor().compress(data)),
        ("RS_b.xz", lzma.compress(data)),
        ("RS_c.bz2", bz2.compress(data)),
        ("RS_d.gz", gzip.compress(data)),
        ("RS_e.json", data),
    ]:
        d = tmp_path / name.split(".")[1]
        d.mkdir()
        (d / name).write_bytes(blob)
        out.append(d / name)
    return out


def test_every_dump_format_gives_the_same_links(tmp_path, shared):
    data = lzma.decompress((shared / "reddit" / "RS_v2_2005-07.xz").read_bytes())
    results = []
    for path in _write_formats(tmp_path, data):
        m = run(
            HarvestConfig(input=[str(path)], output=str(tmp_path / f"out-{path.suffix}"), num_shards=2), LocalRunner()
        )
        results.append((m["rows_out"], m["drops"], read_links(tmp_path / f"out-{path.suffix}").to_pylist()))
    assert all(r == results[0] for r in results)


def test_real_dumps_match_an_independent_count(tmp_path, shared):
    dumps = sorted((shared / "reddit").glob("RS_*.xz"))
    m = run(HarvestConfig(input=[str(shared / "reddit")], output=str(tmp_path / "links"), num_shards=3), LocalRunner())
    # Independent reading of the same files: records with score >= 3, http(s), not blocked by our lists.
    records = [json.loads(line) for p in dumps for line in lzma.decompress(p.read_bytes()).splitlines()]
    assert m["rows_in"] == m["lines_read"] == m["lines_parsed"] == len(records) == 103 + 1079
    qualifying = [r for r in records if r["score"] >= 3 and not r["is_self"]]
    assert len(qualifying) == 83 + 757
    rules = SubmissionRules(HarvestConfig(input=["x"], output="o"))
    expected = {normalize_url(r["url"]) for r in qualifying if rules.judge(Submission.of(r))[2] is None}
    links = read_links(tmp_path / "links")
    assert sorted(links.column("url").to_pylist()) == sorted(expected)
    assert m["rows_out"] == len(expected)
    assert sum(m["drops"].values()) == m["rows_in"] - m["rows_out"]  # every record accounted for
    assert [d["sha256"] for d in m["dumps"]] == [
        "42c54710220eba6b729699cde94c2b151f0ee2df9e1ee569183c1da554a2e62c",
        "5f568b76006ce7dce51b7edcc68151c0d5ed28891fba19a3aac11e52a69f2e53",
    ]
    by_url = {r["url"]: r for r in links.to_pylist()}
    bbc = [r for u, r in by_url.items() if "news.bbc.co.uk" in u][0]
    assert bbc["domain"] == "news.bbc.co.uk" and bbc["registered_domain"] == "bbc.co.uk"
    assert m["top_domains"]["cnn.com"] > 10


def test_truncated_dump_fails_alone_and_a_rerun_retries_only_it(tmp_path, shared):
    blob = (shared / "reddit" / "RS_v2_2005-07.xz").read_bytes()
    d = tmp_path / "dumps"
    d.mkdir()
    (d / "RS_2005-06.xz").write_bytes((shared / "reddit" / "RS_v2_2005-06.xz").read_bytes())
    (d / "RS_2005-07.xz").write_bytes(blob[: len(blob) // 2])
    cfg = HarvestConfig(input=[str(d)], output=str(tmp_path / "links"))
    with pytest.raises(
        PipelineError,
        match=r"RS_2005-07.xz: corrupt or truncated dump after line \d+ "
        r"\(compressed offset ~\d+\)",
    ):
        run(cfg, LocalRunner())
    assert not (tmp_path / "links" / "_stage.json").exists()
    assert (tmp_path / "links" / "_shards" / "_map" / "map-00000.json").is_file()  # the good file finished
    (d / "RS_2005-07.xz").write_bytes(blob)  # re-downloaded
    m = run(cfg, LocalRunner())
    assert m["resumed_shards"] == 1 and m["rows_in"] == 103 + 1079


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="no such file, directory or matching glob"):
        run(HarvestConfig(input=[str(tmp_path / "RS_*.zst")], output=str(tmp_path / "o")), LocalRunner())


def test_domain_report_against_webtext(tmp_path, shared):
    from pipeline.ops.harvest_report import compare_domains, read_webtext

    m = run(HarvestConfig(input=[str(shared / "reddit")], output=str(tmp_path / "links")), LocalRunner())
    webtext = read_webtext(shared / "webtext-domains" / "domains.txt")
    assert len(webtext) == 999 and webtext["nytimes"] == 333160  # one of the 1000 lines has no label
    r = compare_domains(m["top_domains"], webtext)
    # 2005's Reddit linked the same big news sites WebText is made of.
    assert {"nytimes", "cnn", "bbc"} <= {row["ours"] for row in r["top"]}
    assert 0.15 < r["label_overlap_share"] <= 1.0 and 0.4 < r["link_share_in_webtext_top1000"] <= 1.0
    assert r["compared_top_n"] == min(1000, r["our_labels"])
    counts = compare_domains({"news.bbc.co.uk": 2, "bbc.com": 1, "nowhere-else.example": 1}, {"bbc": 5})
    assert counts["top"][0] == {"ours": "bbc", "ours_links": 3, "webtext": "bbc"}
    assert counts["link_share_in_webtext_top1000"] == 0.75


def test_bounded_memory_parts_give_the_same_links(tmp_path, shared):
    whole = run(HarvestConfig(input=[str(shared / "reddit")], output=str(tmp_path / "a"), num_shards=3), LocalRunner())
    parts = run(
        HarvestConfig(input=[str(shared / "reddit")], output=str(tmp_path / "b"), num_shards=3, max_kept_in_memory=50),
        LocalRunner(),
    )
    assert len(list((tmp_path / "b" / "_map").glob("*.parquet"))) > 10  # the big month went out in many parts
    assert parts["output_fingerprint"] == whole["output_fingerprint"]
    assert parts["drops"] == whole["drops"] and parts["submissions_kept"] == whole["submissions_kept"]
    import pyarrow.parquet as pq

    part = pq.read_table(sorted((tmp_path / "a" / "_map").glob("*.parquet"))[-1])
    buckets = part.column("bucket").to_pylist()
    assert buckets == sorted(buckets)  # contiguous per bucket: reduce tasks skip the others' row groups


def test_a_dumps_folder_reads_only_dumps_and_lists_what_it_skipped(tmp_path, shared, capsys):
    d = tmp_path / "dumps"
    d.mkdir()
    for p in sorted((shared / "reddit").glob("RS_*.xz")):
        (d / p.name).write_bytes(p.read_bytes())
    # Beside the dumps: JSON that parses as submissions (the review's answer.json), a comments dump, a download
    # cut short, notes, a folder. None of them is a submission dump.
    answer = b"\n".join(json.dumps(BASE | {"id": f"x{i}"}).encode() for i in range(50_001)) + b"\n"
    (d / "answer.json").write_bytes(answer)
    write_dump(d / "RC_2005-07.zst", [BASE])
    (d / "RS_2005-08.zst.part").write_bytes(b"\x28\xb5")
    (d / "notes.txt").write_text("where the dumps came from\n")
    (d / "older").mkdir()
    m = run(HarvestConfig(input=[str(d)], output=str(tmp_path / "links")), LocalRunner())
    assert [x["name"] for x in m["dumps"]] == ["RS_v2_2005-06.xz", "RS_v2_2005-07.xz"]
    assert m["rows_in"] == 103 + 1079
    skipped = {Path(s["file"]).name: s["reason"] for s in m["skipped_files"]}
    assert set(skipped) == {"answer.json", "RC_2005-07.zst", "RS_2005-08.zst.part", "notes.txt", "older"}
    assert skipped["RC_2005-07.zst"].startswith("a comments dump")
    assert skipped["older"].startswith("a folder") and skipped["answer.json"].startswith("not a dump's name")
    err = capsys.readouterr().err
    assert all(f"harvest: skipped {d / name}: " in err for name in skipped)

    # Named in the input (a file or a glob), a file is read whatever its name.
    m = run(HarvestConfig(input=[str(d / "*.json")], output=str(tmp_path / "answer")), LocalRunner())
    assert m["rows_in"] == 50_001 and m["skipped_files"] == []


def test_dump_names_of_every_source_are_recognized(demo_world):
    from pipeline.ops.demo_world import DUMPS
    from pipeline.text.dumps import is_dump_name

    assert sorted(p.name for p in (demo_world / "reddit").iterdir()) == sorted(n for n, *_ in DUMPS)
    for name in [n for n, *_ in DUMPS] + [
        "RS_v2_2005-06.xz",
        "RS_2018-10-01.zst",
        "RS_2011-05.json.gz",
        "RS_2011-05.ndjson",
        "RS_2011-05.JSON",
        "reddit-api_science_top_all.ndjson",  # pipeline/web/reddit_api.py
    ]:
        assert is_dump_name(name), name
    for name in ("answer.json", "RC_2011-05.zst", "RS_2011-05.zst.part", "RS_2011.zst", "RS_2011-05.txt", "RS_"):
        assert not is_dump_name(name), name


def test_a_folder_without_dumps_is_an_error_naming_what_it_held(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "answer.json").write_text("{}\n")
    with pytest.raises(PipelineError, match=r"harvest input .*/d: no dump there; skipped answer.json: not a dump"):
        run(HarvestConfig(input=[str(tmp_path / "d")], output=str(tmp_path / "o")), LocalRunner())
    (tmp_path / "e").mkdir()
    with pytest.raises(PipelineError, match=r"harvest input .*/e: no dump there \(empty\)"):
        run(HarvestConfig(input=[str(tmp_path / "e")], output=str(tmp_path / "o")), LocalRunner())


@pytest.mark.parametrize("suffix", [".zst", ".xz", ".bz2", ".gz", ".json"])
def test_an_empty_dump_is_refused_by_name(tmp_path, suffix):
    empty = tmp_path / f"RS_2005-08{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(PipelineError, match=rf"RS_2005-08\{suffix}: empty file \(0 bytes\), not a dump"):
        list(DumpReader(empty))


def test_an_empty_dump_fails_its_task_and_the_others_finish(tmp_path):
    write_dump(tmp_path / "d" / "RS_2011-01.zst", [BASE])
    (tmp_path / "d" / "RS_2011-02.zst").write_bytes(b"")
    with pytest.raises(PipelineError, match=r"RS_2011-02.zst: empty file \(0 bytes\), not a dump; re-download it"):
        run(HarvestConfig(input=[str(tmp_path / "d")], output=str(tmp_path / "links")), LocalRunner())
    assert not (tmp_path / "links" / "_stage.json").exists()
    assert (tmp_path / "links" / "_shards" / "_map" / "map-00000.json").is_file()  # the good month finished
