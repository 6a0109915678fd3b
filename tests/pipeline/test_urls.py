from pipeline.urls import host_of, normalize_url, url_hash


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
