"""The embedded demo world: a deterministic Reddit dump and the web it links to, generated offline.

`generate(out)` writes
    out/reddit/RS_2011-05.zst, RS_2014-09.xz, RS_2017-11.bz2   Pushshift-format NDJSON submissions
    out/web/pages.warc.gz                                        the pages, as WARC response records
    out/WORLD.json                                               what was planted (written last)
Planted: articles in several languages wrapped in navigation/ads boilerplate, Wikipedia pages, exact and near
duplicates on other sites, short pages, redirects, dead links, server errors, non-HTML responses, image and
video links, low-score, self, NSFW, after-cutoff and malformed submissions, tracking-parameter URL variants.
Text comes from Faker's word lists (real words of each language, not real prose).
"""

from __future__ import annotations

import bz2
import hashlib
import html
import io
import json
import lzma
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import zstandard
from faker import Faker
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.core.dataset import atomic_path, write_json

LANGS = {"en": "en_US", "de": "de_DE", "fr": "fr_FR", "es": "es_ES", "it": "it_IT", "nl": "nl_NL", "ru": "ru_RU"}
CUTOFF = int(datetime(2017, 12, 1, tzinfo=UTC).timestamp())
DUMPS = [("RS_2011-05.zst", 2011, 5), ("RS_2014-09.xz", 2014, 9), ("RS_2017-11.bz2", 2017, 11)]


def _ts(year: int, month: int, rng: random.Random) -> int:
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp()) + rng.randrange(27 * 86400)


class World:
    def __init__(self, articles: int, seed: int):
        self.rng = random.Random(seed)
        self.fakers = {k: Faker(v) for k, v in LANGS.items()}
        for i, f in enumerate(self.fakers.values()):
            f.seed_instance(seed * 1000 + i)
        self.n_articles = articles
        self.pages: dict[str, tuple[int, list[tuple[str, str]], bytes]] = {}  # url -> (status, headers, body)
        self.submissions: list[dict[str, Any]] = []  # before dump assignment
        self.bad_lines = 0
        self.planted: dict[str, int] = {}
        fe = self.fakers["en"]
        self.sites = sorted({fe.unique.domain_word() for _ in range(24)})

    def plant(self, what: str, n: int = 1) -> None:
        self.planted[what] = self.planted.get(what, 0) + n

    # --- pages -----------------------------------------------------------------------------------

    def article_text(self, lang: str, paragraphs: int) -> list[str]:
        f = self.fakers[lang]
        return [
            f.paragraph(nb_sentences=self.rng.randint(4, 7), variable_nb_sentences=False) for _ in range(paragraphs)
        ]

    def render(self, site: str, title: str, paragraphs: list[str], lang: str) -> str:
        f = self.fakers["en"]
        nav = "".join(f'<li><a href="/{w}/">{w.title()}</a></li>' for w in f.words(7))
        related = "".join(
            f'<li><a href="/story/{self.rng.randrange(10**6)}.html">{html.escape(f.sentence())}</a></li>'
            for _ in range(6)
        )
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        variant = self.rng.randrange(3)
        ad = '<div class="ad-slot">Advertisement</div><div class="ad">Sponsored: great deals today</div>'
        if variant == 0:
            main = f'<article><h1>{html.escape(title)}</h1><div class="byline">By {f.name()}</div>{body}</article>'
        elif variant == 1:
            main = (
                f'<main><div class="post"><h2 class="title">{html.escape(title)}</h2>{ad}'
                f'<div class="entry">{body}</div></div></main>'
            )
        else:
            main = f'<div id="content"><h1>{html.escape(title)}</h1><div class="story-body">{body}</div></div>'
        return (
            f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)} | {site}</title></head>"
            f'<body><header><div class="logo">{site.title()}</div><nav><ul>{nav}</ul></nav>'
            '<div class="cookie-banner">We use cookies to improve your experience. '
            '<a href="/privacy">Privacy policy</a></div>'
            f"</header>{ad}{main}"
            f"<aside><h3>Related stories</h3><ul>{related}</ul></aside>"
            f'<footer><p>Copyright {site}. All rights reserved.</p><a href="/subscribe">Subscribe to our newsletter</a>'
            "</footer></body></html>"
        )

    def add_page(
        self,
        url: str,
        html_text: str,
        status: int = 200,
        ctype: str = "text/html; charset=utf-8",
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [("Content-Type", ctype), ("Server", "demo-world")] + (extra_headers or [])
        self.pages[url] = (status, headers, html_text.encode("utf-8"))

    def new_url(self, site: str | None = None) -> str:
        site = site or self.rng.choice(self.sites)
        f = self.fakers["en"]
        year, month = self.rng.randint(2006, 2017), self.rng.randint(1, 12)
        return f"http://www.{site}.com/{year}/{month:02d}/{f.slug()}-{self.rng.randrange(10**5)}.html"

    # --- submissions -----------------------------------------------------------------------------

    def submit(self, url: str, score: int | None = None, **kw: Any) -> None:
        rec = {
            "id": f"{len(self.submissions) + 1000:x}",
            "url": url,
            "domain": url.split("/")[2] if "://" in url else "self.demo",
            "score": self.rng.randint(3, 250) if score is None else score,
            "is_self": False,
            "over_18": False,
            "subreddit": self.rng.choice(["worldnews", "technology", "science", "politics", "europe", "books"]),
            "title": self.fakers["en"].sentence(),
            "num_comments": self.rng.randint(0, 500),
        }
        rec.update(kw)
        self.submissions.append(rec)

    def build(self) -> None:
        rng = self.rng
        articles: list[tuple[str, str, str, list[str]]] = []  # (url, lang, title, paragraphs)
        for _ in range(self.n_articles):
            lang = "en" if rng.random() < 0.8 else rng.choice([k for k in LANGS if k != "en"])
            title = self.fakers[lang].sentence(nb_words=8).rstrip(".")
            paras = self.article_text(lang, rng.randint(4, 8))
            url = self.new_url()
            self.add_page(url, self.render(url.split("/")[2], title, paras, lang))
            articles.append((url, lang, title, paras))
            self.plant("articles")
            self.plant(f"articles_{lang}")
            self.submit(url)
            if rng.random() < 0.25:  # the same link posted again, with tracking parameters and a fragment
                self.submit(url + "?utm_source=reddit&utm_medium=social#comments", rng.randint(3, 40))
                self.plant("repeat_submissions_with_tracking_params")
        en = [a for a in articles if a[1] == "en"]
        for _url, _, title, paras in rng.sample(en, max(2, len(en) // 20)):  # exact copies on another site
            copy = self.new_url()
            self.add_page(copy, self.render(copy.split("/")[2], title, paras, "en"))
            self.submit(copy, rng.randint(3, 20))
            self.plant("exact_duplicates")
        for _url, _, title, paras in rng.sample(en, max(2, len(en) // 20)):  # near copies: edited and extended
            edited = list(paras)
            edited[0] = self.fakers["en"].paragraph(nb_sentences=5)
            edited.append(self.fakers["en"].paragraph(nb_sentences=3))
            copy = self.new_url()
            self.add_page(copy, self.render(copy.split("/")[2], title + " (updated)", edited, "en"))
            self.submit(copy, rng.randint(3, 20))
            self.plant("near_duplicates")
        for i in range(max(2, self.n_articles // 25)):  # Wikipedia
            lang = "en" if i % 3 else "de"
            topic = self.fakers["en"].word().title() + f"_{i}"
            url = f"http://{lang}.wikipedia.org/wiki/{topic}"
            self.add_page(url, self.render(f"{lang}.wikipedia", topic, self.article_text(lang, 5), lang))
            self.submit(url)
            self.plant("wikipedia")
        for _ in range(max(2, self.n_articles // 20)):  # too short for 128 tokens
            url = self.new_url()
            self.add_page(url, self.render(url.split("/")[2], "Brief", [self.fakers["en"].sentence(nb_words=12)], "en"))
            self.submit(url)
            self.plant("short_pages")
        for url, *_ in rng.sample(articles, max(2, self.n_articles // 30)):  # short links that redirect
            short = f"http://sho.rt/{rng.randrange(16**6):06x}"
            self.add_page(short, "", status=301, extra_headers=[("Location", url)])
            self.submit(short)
            self.plant("redirects")
        for _ in range(max(2, self.n_articles // 20)):  # dead links: not in the web at all
            self.submit(self.new_url())
            self.plant("dead_links")
        for _ in range(2):  # server errors (retried, then recorded)
            url = self.new_url()
            self.add_page(url, "<html><body>Internal error</body></html>", status=500)
            self.submit(url)
            self.plant("server_errors")
        for _ in range(2):  # not HTML
            url = f"http://api.{rng.choice(self.sites)}.com/v1/items/{rng.randrange(1000)}"
            self.pages[url] = (200, [("Content-Type", "application/json")], b'{"items": []}')
            self.submit(url)
            self.plant("non_html")
        for i in range(6):  # media links: blocked by domain or extension at harvest
            url = [
                f"http://i.imgur.com/{i}abc.jpg",
                f"https://www.youtube.com/watch?v=demo{i}",
                f"http://www.{rng.choice(self.sites)}.com/files/report{i}.pdf",
            ][i % 3]
            self.submit(url)
            self.plant("media_links")
        for _ in range(max(3, self.n_articles // 10)):  # low score: never qualifies
            url = self.new_url()
            self.submit(url, rng.randint(-5, 2))
            self.plant("low_score_submissions")
        for _ in range(max(3, self.n_articles // 12)):
            self.submit(f"https://www.reddit.com/r/books/comments/{rng.randrange(16**5):05x}/", is_self=True)
            self.plant("self_posts")
        for _ in range(3):  # NSFW submissions: dropped at harvest, as OpenWebText did
            self.submit(self.new_url(), over_18=True)
            self.plant("nsfw_submissions")
        for _ in range(4):  # after the WebText cutoff
            self.submit(self.new_url(), created_after_cutoff=True)
            self.plant("after_cutoff")
        for _ in range(2):
            self.submit(self.new_url(), score=None, null_score=True)
            self.plant("null_score")

    # --- output ----------------------------------------------------------------------------------

    def dump_lines(self) -> dict[str, list[bytes]]:
        rng = self.rng
        out: dict[str, list[bytes]] = {name: [] for name, *_ in DUMPS}
        for rec in self.submissions:
            name, year, month = rng.choice(DUMPS)
            if rec.pop("created_after_cutoff", False):
                name, year, month = DUMPS[-1]
                created: Any = CUTOFF + rng.randrange(86400 * 30)
            else:
                created = _ts(year, month, rng)
            if rec.pop("null_score", False):
                rec["score"] = None
            if year in (2014, 2015):
                created = str(created)  # as in the real 2014-01..2015-11 dumps
            rec["created_utc"] = created
            rec["permalink"] = f"/r/{rec['subreddit']}/comments/{rec['id']}/"
            if rec["is_self"]:
                rec["selftext"] = self.fakers["en"].paragraph()
            out[name].append(json.dumps(rec, sort_keys=True).encode())
        for name in out:
            rng.shuffle(out[name])
        # malformed lines, as a broken download would leave them
        out[DUMPS[0][0]].insert(3, b'{"id": "broken", "url": "http://www.example.com/a", "score": 1')
        out[DUMPS[1][0]].insert(5, b"not json at all")
        self.plant("bad_json_lines", 2)
        return out

    def write(self, out: Path, seed: int) -> dict[str, Any]:
        (out / "reddit").mkdir(parents=True, exist_ok=True)
        for name, lines in self.dump_lines().items():
            data = b"\n".join(lines) + b"\n"
            if name.endswith(".zst"):
                blob = zstandard.ZstdCompressor(level=10).compress(data)
            elif name.endswith(".xz"):
                blob = lzma.compress(data)
            else:
                blob = bz2.compress(data)
            with atomic_path(out / "reddit" / name) as tmp:
                tmp.write_bytes(blob)
        with atomic_path(out / "web" / "pages.warc.gz") as tmp, open(tmp, "wb") as f:
            writer = WARCWriter(f, gzip=True, warc_version="1.1")
            for url in sorted(self.pages):
                status, headers, body = self.pages[url]
                reason = {200: "OK", 301: "Moved Permanently", 500: "Internal Server Error"}[status]
                http = StatusAndHeaders(
                    f"{status} {reason}", headers + [("Content-Length", str(len(body)))], protocol="HTTP/1.1"
                )
                writer.write_record(
                    writer.create_warc_record(
                        url,
                        "response",
                        payload=io.BytesIO(body),
                        length=len(body),
                        http_headers=http,
                        warc_headers_dict={
                            "WARC-Date": "2017-12-01T00:00:00Z",
                            "WARC-Record-ID": f"<urn:sha1:{hashlib.sha1(url.encode()).hexdigest()}>",
                        },
                    )
                )
        world = {
            "seed_articles": self.n_articles,
            "seed": seed,
            "planted": dict(sorted(self.planted.items())),
            "submissions": len(self.submissions),
            "pages": len(self.pages),
        }
        write_json(out / "WORLD.json", world)
        return world


def generate(out: str | Path, articles: int = 240, seed: int = 0) -> dict[str, Any]:
    """Writes the world unless a finished one (WORLD.json) with the same size and seed is there."""
    out = Path(out)
    marker = out / "WORLD.json"
    if marker.is_file():
        world = json.loads(marker.read_text())
        if world.get("seed_articles") == articles and world.get("seed") == seed:
            return world | {"reused": True}
    w = World(articles, seed)
    w.build()
    return w.write(out, seed)
