"""A realistic 2017-like Pushshift submissions dump for benchmarks: ~100 fields per record, the real mix of
self posts, media links, news links with tracking parameters, and a heavy-tailed score."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import zstandard

SUBS = [
    "worldnews",
    "news",
    "politics",
    "technology",
    "science",
    "pics",
    "funny",
    "gaming",
    "videos",
    "todayilearned",
    "AskReddit",
    "europe",
    "programming",
    "Futurology",
    "space",
    "movies",
    "books",
    "sports",
    "nba",
    "soccer",
]
NEWS = [
    "nytimes.com",
    "theguardian.com",
    "bbc.co.uk",
    "reuters.com",
    "washingtonpost.com",
    "cnn.com",
    "bloomberg.com",
    "arstechnica.com",
    "theverge.com",
    "npr.org",
    "independent.co.uk",
    "vox.com",
    "medium.com",
    "github.com",
    "wired.com",
    "businessinsider.com",
    "latimes.com",
    "aljazeera.com",
    "thehill.com",
    "huffingtonpost.com",
]
EXTRA_FIELDS = [
    f"{p}_{i}" for p in ("author_flair", "link_flair", "media_meta", "gilding", "whitelist") for i in range(14)
]


def record(rng: random.Random, i: int) -> dict:
    kind = rng.random()
    sub = rng.choice(SUBS)
    rid = f"{i + 6_000_000_000:x}"[-7:]
    if kind < 0.2:
        url, domain, is_self = f"https://www.reddit.com/r/{sub}/comments/{rid}/some_title/", f"self.{sub}", True
    elif kind < 0.35:
        url, domain, is_self = f"https://i.redd.it/{rid}{rng.randrange(10**6)}.jpg", "i.redd.it", False
    elif kind < 0.45:
        url, domain, is_self = f"https://www.youtube.com/watch?v={rid}{rng.randrange(10**4)}", "youtube.com", False
    else:
        domain = rng.choice(NEWS)
        path = "/".join(
            rng.choice(["2017", "world", "news", "tech", "article", "story", "politics"])
            for _ in range(rng.randint(1, 4))
        )
        url = f"https://www.{domain}/{path}/{rid}-{rng.randrange(10**6)}"
        if rng.random() < 0.3:
            url += "?utm_source=reddit&utm_medium=social&utm_campaign=" + sub
        is_self = False
    score = int(rng.paretovariate(0.7)) - 1  # heavy tail: ~60% below 3
    rec = {
        "id": rid,
        "url": url,
        "domain": domain,
        "score": score,
        "created_utc": 1506816000 + i * 2,
        "is_self": is_self,
        "over_18": rng.random() < 0.03,
        "subreddit": sub,
        "subreddit_id": "t5_2qh13",
        "title": " ".join(
            rng.choice(["the", "new", "report", "says", "world", "people", "first", "after", "year"])
            for _ in range(rng.randint(5, 15))
        ),
        "permalink": f"/r/{sub}/comments/{rid}/some_title/",
        "num_comments": rng.randint(0, 3000),
        "selftext": "" if not is_self else "text " * rng.randint(0, 80),
        "author": f"user{rng.randrange(10**6)}",
        "retrieved_on": 1510000000,
        "stickied": False,
        "locked": False,
        "spoiler": False,
        "hidden": False,
        "thumbnail": "default",
        "thumbnail_height": None,
        "thumbnail_width": None,
        "gilded": 0,
        "preview": {
            "images": [
                {
                    "source": {"url": "https://i.redditmedia.com/x.jpg", "width": 640, "height": 480},
                    "resolutions": [{"url": "https://i.redditmedia.com/y.jpg", "width": 108}],
                }
            ],
            "enabled": False,
        },
        "media": None,
        "secure_media": None,
        "media_embed": {},
        "secure_media_embed": {},
        "post_hint": "link",
        "is_video": False,
        "is_reddit_media_domain": False,
        "contest_mode": False,
        "distinguished": None,
        "edited": False,
        "brand_safe": True,
        "can_gild": True,
        "is_crosspostable": True,
        "parent_whitelist_status": "all_ads",
        "suggested_sort": None,
        "crosspost_parent_list": [],
    }
    for f in EXTRA_FIELDS:
        rec[f] = rng.choice([None, "", 0, False, "text"])
    return rec


def write_dump(path: Path, lines: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=False)
    with open(path, "wb") as f, cctx.stream_writer(f) as w:
        for i in range(lines):
            w.write(orjson.dumps(record(rng, i)) + b"\n")
    return path
