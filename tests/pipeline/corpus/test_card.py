"""The dataset card (README.md + funnel.png + domains.png) from a synthetic manifest."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline import chain
from pipeline.corpus.card import DOMAINS_PNG, FUNNEL_PNG, TOP_DOMAINS, human_bytes, size_category, write_card

yaml = pytest.importorskip("yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

FUNNEL = [
    ("submissions read", 1_000_000, "harvest"),
    ("unique URLs", 120_000, "harvest"),
    ("pages fetched", 90_000, "fetch"),
    ("documents extracted", 80_000, "extract"),
    ("documents kept by filter", 50_000, "filter"),
    ("documents after dedup", 40_000, "dedup"),
    ("GPT-2 tokens (train + val)", 45_678_901, "tokenize"),
]


def stage(name: str, config: dict[str, Any], rows_in: int, rows_out: int, drops: dict[str, int]) -> dict[str, Any]:
    return {
        "stage": name,
        "about": chain.stage(name).about,  # as the manifest stage copies them from each stage manifest
        "shown": list(chain.stage(name).shown),
        "config": config,
        "code_version": "0.1.0+gabc123",
        "rows_in": rows_in,
        "rows_out": rows_out,
        "drops": drops,
        "wall_time_s": 12.5,
        "output_fingerprint": "f" * 64,
    }


def make_manifest() -> dict[str, Any]:
    domains = {f"site{i:02d}.example": 1000 - 20 * i for i in range(40)}
    return {
        "name": "owt-demo",
        "version": "0.1.0",
        "created": "2026-11-23T10:00:00+00:00",
        "code_version": "0.1.0+gabc123",
        "description": "Web pages linked from Reddit, extracted, filtered, deduplicated and GPT-2 tokenized.",
        "license": "Text belongs to the pages' authors; distributed for research under the terms of the source sites.",
        "root": ".",
        "tokenizer": {
            "name": "gpt2",
            "vocab_sha256": "a" * 64,
            "eot_token": 50256,
            "eot_position": "after",
            "dtype": "uint16",
            "format": "owt-tokens",
            "format_version": "1",
        },
        "inputs": [
            {"name": "RS_2005-06.zst", "bytes": 123_456, "sha256": "b" * 64},
            {"name": "RS_2005-07.zst", "bytes": 2_345_678, "sha256": "c" * 64},
        ],
        "stages": [
            stage(
                "harvest",
                {"min_score": 3, "score_mode": "per_submission", "created_before": "2017-12-01", "drop_nsfw": True},
                1_000_000,
                120_000,
                {"low_score": 700_000, "duplicate_url": 150_000, "blocked_domain": 30_000},
            ),
            stage("fetch", {"retries": 2, "obey_robots": True}, 120_000, 90_000, {"http_404": 30_000}),
            stage("extract", {"include_comments": False}, 90_000, 80_000, {"empty_extraction": 10_000}),
            stage(
                "filter",
                {"languages": ["en"], "min_lang_score": 0.5, "min_tokens": 128, "quality_rules": False},
                80_000,
                50_000,
                {"non_english": 20_000, "too_short": 9_000, "wikipedia": 1_000},
            ),
            stage("dedup", {"ngram": 5, "num_perm": 128, "threshold": 0.5}, 50_000, 40_000, {"near_duplicate": 10_000}),
            stage("tokenize", {"tokenizer": "gpt2", "val_fraction": 0.0005}, 40_000, 40_000, {}),
        ],
        "funnel": [{"step": s, "count": c, "stage": st} for s, c, st in FUNNEL],
        "files": [
            {
                "path": "train/tokens-00000.arrow",
                "kind": "tokens",
                "split": "train",
                "sha256": "d" * 64,
                "bytes": 91_000_000,
                "tokens": 45_500_000,
                "documents": 39_980,
            },
            {
                "path": "val/tokens-00000.arrow",
                "kind": "tokens",
                "split": "val",
                "sha256": "e" * 64,
                "bytes": 357_802,
                "tokens": 178_901,
                "documents": 20,
            },
            {
                "path": "index/train-00000.parquet",
                "kind": "token_index",
                "split": "train",
                "sha256": "1" * 64,
                "bytes": 999_000,
                "rows": 39_980,
            },
            {
                "path": "index/val-00000.parquet",
                "kind": "token_index",
                "split": "val",
                "sha256": "2" * 64,
                "bytes": 9_000,
                "rows": 20,
            },
            {
                "path": "documents/part-00000.parquet",
                "kind": "documents",
                "sha256": "3" * 64,
                "bytes": 150_000_000,
                "rows": 40_000,
            },
        ],  # fmt: skip
        "documents_schema": [{"name": "url", "type": "string"}, {"name": "text", "type": "string"}],
        "domains": domains,
        "totals": {
            "documents": 40_000,
            "tokens": {"train": 45_500_000, "val": 178_901},
            "documents_by_split": {"train": 39_980, "val": 20},
            "bytes": 242_365_802,
        },
        "published": [],
    }


def front_matter(text: str) -> dict[str, Any]:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "no YAML front matter"
    return yaml.safe_load(match.group(1))


def assert_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> tuple[Path, str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("card")
    manifest = make_manifest()
    path = write_card(manifest, folder)
    return folder, path.read_text(), manifest


def test_card_files_and_images(card):
    folder, text, _ = card
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", DOMAINS_PNG, FUNNEL_PNG]
    assert_png(folder / FUNNEL_PNG)
    assert_png(folder / DOMAINS_PNG)
    assert f"]({FUNNEL_PNG})" in text and f"]({DOMAINS_PNG})" in text


def test_front_matter_is_hugging_face_yaml(card):
    _, text, manifest = card
    meta = front_matter(text)
    assert meta["license"] == "other"
    assert meta["language"] == ["en"]
    assert meta["pretty_name"] == "owt-demo 0.1.0"
    assert meta["size_categories"] == ["10K<n<100K"]
    assert meta["task_categories"] == ["text-generation"]
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["documents"]["data_files"] == [{"split": "train", "path": "documents/*.parquet"}]
    assert configs["token_index"]["data_files"] == [
        {"split": "train", "path": "index/train-*.parquet"},
        {"split": "val", "path": "index/val-*.parquet"},
    ]


def test_card_states_the_manifest_facts(card):
    _, text, manifest = card
    assert text.startswith("---\n") and "\n# owt-demo 0.1.0\n" in text
    for row in manifest["funnel"]:
        assert f"| {row['step']} | {row['count']:,} |" in text
    assert "| unique URLs | 120,000 | 12.0% |" in text
    assert "| GPT-2 tokens (train + val) | 45,678,901 | — |" in text  # tokens are no share of documents
    assert "| harvest | low_score | 700,000 | 70.0% |" in text
    assert "| filter | non_english | 20,000 | 25.0% |" in text
    assert "min_score=3" in text and "languages=[en]" in text and "threshold=0.5" in text
    assert "| tokens (train) | 45,500,000 |" in text and "| tokens (val) | 178,901 |" in text
    assert "231.1 MiB" in text  # totals.bytes, human-readable
    for dump in manifest["inputs"]:
        assert dump["name"] in text and dump["sha256"] in text
    assert manifest["license"] in text and manifest["tokenizer"]["vocab_sha256"] in text
    assert "python -m pipeline verify manifest.json" in text
    assert 'pa.memory_map("train/tokens-00000.arrow")' in text and "zero_copy_only=True" in text
    assert "read_parquet" in text and "duckdb" in text and "load_dataset" in text
    assert "No PII scrubbing" in text and "fastText lid.176 score of at least 0.5" in text
    assert "site00.example" in text and f"site{TOP_DOMAINS - 1:02d}.example" in text
    assert f"site{TOP_DOMAINS:02d}.example" not in text  # only the top 30


def test_card_is_deterministic(card, tmp_path):
    folder, text, manifest = card
    write_card(manifest, tmp_path)
    for name in ("README.md", FUNNEL_PNG, DOMAINS_PNG):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), name


def test_card_without_optional_parts(tmp_path):
    manifest = make_manifest()
    for key in ("domains", "inputs", "documents_schema", "published"):
        del manifest[key]
    for st in manifest["stages"]:
        st["drops"] = {}
        st["config"] = {}
    # a stale chart from an earlier card must not outlive its data
    (tmp_path / DOMAINS_PNG).write_bytes(b"stale")
    text = write_card(manifest, tmp_path).read_text()
    assert_png(tmp_path / FUNNEL_PNG)
    assert not (tmp_path / DOMAINS_PNG).exists() and DOMAINS_PNG not in text
    assert "No drops recorded." in text and "no domain counts" in text and "no input dumps" in text
    assert front_matter(text)["language"] == ["en"]  # no filter config: English
    for row in manifest["funnel"]:
        assert f"{row['count']:,}" in text


def test_card_for_a_bare_manifest(tmp_path):
    bare = {"name": "x", "version": "1.0.0", "created": "2026-01-01T00:00:00+00:00"}
    text = write_card(copy.deepcopy(bare), tmp_path).read_text()
    assert front_matter(text)["pretty_name"] == "x 1.0.0"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]


@pytest.mark.parametrize(
    ("n", "want"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (8_000_000, "1M<n<10M"), (10**11, "n>10B")]
)
def test_size_categories(n, want):
    assert size_category(n) == want


def test_human_bytes():
    assert human_bytes(999) == "999 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(40 * 1024**3) == "40.0 GiB"
