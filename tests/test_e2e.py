"""The real end-to-end run, reduced for CI: a few dozen real pages of each source (html-benchmark, the Python docs,
the Debian handbook in five of its languages, the real WARC captures) and the real June 2005 dump, through every
stage on Ray and a few training steps, every figure checked against what the inputs imply (bench/e2e.py;
`make e2e` is the full run)."""

import json

import pytest
from e2e import SMALL, format_report, run_e2e

KEY_CHECKS = [
    "harvest: drops by reason",
    "real 2005 links",
    "wikipedia drops",
    "non-English pages",
    "too_short drops",
    "dedup: documents removed",
    "untranslated handbook copies",
    "manifest: verify",
    "train: loss",
]


@pytest.mark.slow
def test_real_pages_through_every_stage(tmp_path, shared, ray_runner):
    report = run_e2e(tmp_path / "e2e", SMALL, shared, runner=ray_runner)
    assert report["passed"], format_report(report)

    # What the run was made of: every source, every planted harvest drop, the real dump's links.
    world = report["world"]
    assert set(world["pages"]) == {"html-benchmark", "python-docs", "handbook", "warc-sample", "wikipedia"}
    assert set(world["handbook_pages_by_folder"]) == set(SMALL.handbook_langs)
    planted = world["planted"]
    for reason in ("low_score", "self_post", "nsfw", "blocked_domain", "blocked_extension", "after_cutoff"):
        assert planted[reason] > 0, reason
    assert world["real_links"] > 50
    # The checks that matter most are there (a refactoring must not lose them silently).
    names = " | ".join(c["name"] for c in report["checks"])
    for part in KEY_CHECKS:
        assert part in names, part
    assert json.loads((tmp_path / "e2e" / "report.json").read_text())["passed"]
