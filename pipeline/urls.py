"""URL normalization and the document id derived from it: the same page linked twice must collapse to one row.

Parsing and the standard normalizations (lowercase scheme and host, IDNA, default port dropped, percent-encoding
requoted) are yarl's; on top: fragment dropped, tracking parameters dropped (pipeline/data/tracking_params.txt),
query sorted. Registered domains come from tldextract's bundled public-suffix snapshot (no network).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources

import yarl

ALLOWED_SCHEMES = frozenset({"http", "https"})


@lru_cache(maxsize=1)
def tracking_params() -> tuple[frozenset[str], tuple[str, ...]]:
    """(exact names, prefixes ending in '*') from the bundled list."""
    text = resources.files("pipeline.data").joinpath("tracking_params.txt").read_text()
    names = [s.strip().lower() for s in text.splitlines() if s.strip() and not s.startswith("#")]
    return frozenset(n for n in names if not n.endswith("*")), tuple(n[:-1] for n in names if n.endswith("*"))


def parse_url(url: str) -> yarl.URL | None:
    """The normalized URL, or None if it is not an absolute http(s) URL with a host."""
    try:
        u = yarl.URL(url.strip())
    except (ValueError, TypeError):
        return None
    if u.scheme not in ALLOWED_SCHEMES or not u.raw_host:
        return None
    exact, prefixes = tracking_params()
    query = u.query
    if query:
        kept = sorted((k, v) for k, v in query.items() if k.lower() not in exact and not k.lower().startswith(prefixes))
        u = u.with_query(kept)
    if u.raw_fragment:
        u = u.with_fragment(None)
    return u


def normalize_url(url: str) -> str | None:
    try:
        u = parse_url(url)
        return str(u) if u is not None else None
    except ValueError:  # yarl validates lazily: a bad port or host surfaces on use
        return None


def host_of(url: str) -> str:
    try:
        return (yarl.URL(url).raw_host or "").lower()
    except (ValueError, TypeError):
        return ""


@lru_cache(maxsize=1)
def _extractor():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled snapshot, never the network


def registered_domain(host: str) -> str:
    """bbc.co.uk for news.bbc.co.uk; the host itself for IPs and unknown suffixes."""
    r = _extractor()(host)
    return r.top_domain_under_public_suffix or host


def domain_label(host: str) -> str:
    """The registrable label alone ('bbc' for news.bbc.co.uk), as OpenAI's WebText domain list counts them."""
    return _extractor()(host).domain or host


def url_hash(url: str) -> str:
    """A stable 16-hex-digit id of a normalized URL: the document id across every stage."""
    return hashlib.blake2b(url.encode("utf-8"), digest_size=8).hexdigest()
