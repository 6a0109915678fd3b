"""URL normalization and the doc id derived from it: the same page linked twice must collapse to one row."""

from __future__ import annotations

import hashlib
from urllib.parse import urldefrag, urlsplit

import courlan

ALLOWED_SCHEMES = ("http", "https")


def normalize_url(url: str) -> str | None:
    """Lowercase scheme and host, drop default ports, tracking parameters (utm_*, fbclid, ...) and the fragment,
    sort the query (courlan does these), then our rules on top. None if it is not an http(s) URL."""
    url = url.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ALLOWED_SCHEMES or not parts.hostname:
        return None
    try:
        normalized = courlan.normalize_url(url, strict=False)  # strict=True drops every query parameter
    except (ValueError, AttributeError):
        return None
    normalized, _ = urldefrag(normalized)
    return normalized or None


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def url_id(url: str) -> str:
    """A stable 16-hex-digit id of a normalized URL: the document id across every stage."""
    return hashlib.blake2b(url.encode("utf-8"), digest_size=8).hexdigest()
