import bz2
import gzip
import json
import lzma
from collections import Counter
from pathlib import Path

import pytest
import zstandard

from pipeline.errors import PipelineError
from pipeline.harvest import HarvestConfig, SubmissionRules, harvest_lines, read_links, run
from pipeline.runner import LocalRunner
from pipeline.urls import normalize_url

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
    return SubmissionRules(cfg).judge(BASE | kw)


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
    assert judge(url="http://i.imgur.com/abc") == (None, "blocked_domain")
    assert judge(url="http://example.com/paper.PDF") == (None, "blocked_extension")
    assert judge(over_18=True)[1] is None  # OpenWebText kept NSFW links


def test_nsfw_and_score_options():
    cfg = HarvestConfig(input=["x"], output="o", drop_nsfw=True, min_score=10)
    assert judge(cfg, over_18=True, score=20) == (None, "nsfw")
    assert judge(cfg, score=9) == (None, "low_score")


def test_bad_lines_counted_and_named():
    lines = [
        (1, json.dumps(BASE).encode()),
        (2, b'{"url": "http://x.com", "sc'),
        (3, b"[1, 2]"),
        (4, json.dumps(BASE | {"id": "a2", "score": 50, "url": BASE["url"] + "?utm_source=x"}).encode()),
    ]
    drops, examples = Counter(), []
    links = harvest_lines(lines, SubmissionRules(HarvestConfig(input=["x"], output="o")), "RS_x.json", drops, examples)
    assert drops == {"bad_json": 1, "not_an_object": 1}
    assert examples[0].startswith("RS_x.json:2: bad JSON")
    (agg,) = links.values()
    assert agg["score"] == 50 and agg["n"] == 2 and agg["ids"] == {"a1", "a2"}


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
    assert m["rows_in"] == len(records) == 103 + 1079
    qualifying = [r for r in records if r["score"] >= 3 and not r["is_self"]]
    assert len(qualifying) == 83 + 757
    rules = SubmissionRules(HarvestConfig(input=["x"], output="o"))
    expected = {normalize_url(r["url"]) for r in qualifying if rules.judge(r)[1] is None}
    links = read_links(tmp_path / "links")
    assert sorted(links.column("url").to_pylist()) == sorted(expected)
    assert m["rows_out"] == len(expected)
    assert sum(m["drops"].values()) == m["rows_in"] - m["rows_out"]  # every record accounted for
    assert [d["sha256"] for d in m["dumps"]] == [
        "42c54710220eba6b729699cde94c2b151f0ee2df9e1ee569183c1da554a2e62c",
        "5f568b76006ce7dce51b7edcc68151c0d5ed28891fba19a3aac11e52a69f2e53",
    ]


def test_truncated_dump_is_a_clear_error(tmp_path, shared):
    blob = (shared / "reddit" / "RS_v2_2005-07.xz").read_bytes()
    bad = tmp_path / "RS_2005-07.xz"
    bad.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(PipelineError, match=r"RS_2005-07.xz: corrupt or truncated dump after line \d+"):
        run(HarvestConfig(input=[str(bad)], output=str(tmp_path / "links")), LocalRunner())
    assert not (tmp_path / "links" / "_stage.json").exists()


def test_missing_input_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="no such file, directory or matching glob"):
        run(HarvestConfig(input=[str(tmp_path / "RS_*.zst")], output=str(tmp_path / "o")), LocalRunner())
