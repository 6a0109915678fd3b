from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.text.urls import host_of, normalize_by_parsing, normalize_url, split_plain, url_hash


def test_normalization_collapses_variants():
    a = normalize_url("HTTP://WWW.Example.com:80/a/b?z=1&utm_source=reddit&a=2#comments")
    b = normalize_url("http://www.example.com/a/b?a=2&z=1")
    assert a == b == "http://www.example.com/a/b?a=2&z=1"
    assert url_hash(a) == url_hash(b) and len(url_hash(a)) == 16


def test_non_http_urls_are_refused():
    assert normalize_url("ftp://example.com/file") is None
    assert normalize_url("mailto:someone@example.com") is None
    assert normalize_url("   ") is None
    assert normalize_url("http://") is None


def test_host_of():
    assert host_of("https://En.Wikipedia.org/wiki/X") == "en.wikipedia.org"
    assert host_of("not a url") == ""


# URLs of the shape split_plain takes as already normal, with fragments and near misses the regex must refuse.
LABEL = r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?"
PLAINISH = (
    rf"(http|https|HTTP)://{LABEL}(\.{LABEL}){{0,3}}(:80|:443|:8080)?(/[A-Za-z0-9\-._~!$&'()*+,;=:@/%ä]{{0,30}})?"
    r"(\?((utm_source|UTM_Medium|fbclid|a|B|b|x_y|ä)(=[a-zA-Z0-9.~+%-]{0,4})?&?){0,4})?(#.{0,8})?"
)

# The same, aimed at queries: tracking parameters, repeated and unsorted keys, empty values, characters to escape.
QUERYISH = r"https?://[a-z]{1,3}\.com/[a-z.]{0,3}\?((utm_source|Utm_x|fbclid|gclid|a|B|b|_|~)(=[a-zA-Z0-9.~+%_-]{0,3})?&?){1,5}"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(PLAINISH, fullmatch=True) | st.from_regex(QUERYISH, fullmatch=True))
def test_plain_urls_are_exactly_what_parsing_gives(url):
    plain = split_plain(url)
    if plain is not None:
        assert plain[0] == normalize_by_parsing(url)
        assert plain[1] == host_of(url)


def test_plain_fast_path_covers_common_links_and_refuses_the_rest():
    assert split_plain("https://www.bbc.co.uk/news/world-123#x") == (
        "https://www.bbc.co.uk/news/world-123",
        "www.bbc.co.uk",
        "/news/world-123",
    )
    assert split_plain("https://a.com/x?utm_source=r&z=1&b=2&b=1") == ("https://a.com/x?b=1&b=2&z=1", "a.com", "/x")
    assert split_plain("https://a.com/x?fbclid=abc#top") == ("https://a.com/x", "a.com", "/x")
    for url in ("HTTP://A.com/x", "http://a.com:80/", "http://a.com/a/../b", "http://a.com/%41", "http://a.com/?b"):
        assert split_plain(url) is None


def test_real_dump_urls_normalize_the_same_either_way(shared):
    import lzma

    import orjson

    urls = [
        orjson.loads(line).get("url") or ""
        for p in sorted((shared / "reddit").glob("RS_*.xz"))
        for line in lzma.decompress(p.read_bytes()).splitlines()
    ]
    plain = [u for u in urls if split_plain(u) is not None]
    assert len(plain) > 0.5 * len(urls)  # the fast path is the common path
    assert all(split_plain(u)[0] == normalize_by_parsing(u) for u in plain)
