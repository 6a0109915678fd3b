"""How close is our link set to WebText's? Compare harvest's domain histogram with OpenAI's top-1000 WebText domains.

OpenAI published the top 1,000 domains of WebText as "<count> <label>" (e.g. "333160 nytimes"): the registrable
label without its public suffix. We fold our registered domains to the same labels and report
    - label overlap: how many of our top-N labels are among WebText's top 1,000 (N = min(1000, labels we have)),
    - link share: the share of our links whose label is in WebText's top 1,000,
    - the top 20 of each, side by side.
`python -m pipeline harvest-report <links dir> --webtext domains.txt`
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.core.dataset import Dataset
from pipeline.core.errors import PipelineError
from pipeline.text.urls import domain_label


def read_webtext(path: str | Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        count, _, label = line.strip().partition(" ")
        if not count.isdigit():
            raise PipelineError(f"{path}:{lineno}: expected '<count> <domain label>', got {line!r}")
        if label:  # OpenAI's list has one entry with an empty label (rank 217): nothing to match it against
            out[label.lower()] = int(count)
    return out


def compare_domains(registered: dict[str, int], webtext: dict[str, int], top: int = 20) -> dict[str, Any]:
    labels: Counter = Counter()
    for dom, n in registered.items():
        labels[domain_label(dom).lower()] += n
    ranked = [lab for lab, _ in sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))]
    n = min(1000, len(ranked))
    ours_top = ranked[:n]
    shared = [lab for lab in ours_top if lab in webtext]
    total = sum(labels.values())
    in_webtext = sum(c for lab, c in labels.items() if lab in webtext)
    wt_ranked = sorted(webtext, key=lambda lab: -webtext[lab])
    return {
        "our_labels": len(ranked),
        "compared_top_n": n,
        "label_overlap": len(shared),
        "label_overlap_share": round(len(shared) / n, 4) if n else 0.0,
        "link_share_in_webtext_top1000": round(in_webtext / total, 4) if total else 0.0,
        "top": [
            {
                "ours": ours_top[i] if i < len(ours_top) else None,
                "ours_links": labels[ours_top[i]] if i < len(ours_top) else None,
                "webtext": wt_ranked[i] if i < len(wt_ranked) else None,
            }
            for i in range(top)
        ],
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [
        f"label overlap: {r['label_overlap']} of our top {r['compared_top_n']} domain labels are in WebText's "
        f"top 1000 ({r['label_overlap_share']:.1%})",
        f"link share: {r['link_share_in_webtext_top1000']:.1%} of our links point to WebText's top-1000 domains",
        f"{'rank':>4}  {'ours':<28}{'links':>8}   webtext",
    ]
    for i, row in enumerate(r["top"], start=1):
        lines.append(f"{i:>4}  {row['ours'] or '-':<28}{row['ours_links'] or '':>8}   {row['webtext'] or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline harvest-report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("links", help="a finished harvest output directory")
    ap.add_argument("--webtext", required=True, help="OpenAI's WebText domains.txt ('<count> <label>' lines)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    manifest = Dataset(args.links).manifest()
    if manifest.get("stage") != "harvest":
        raise PipelineError(f"{args.links}: not a harvest output (stage {manifest.get('stage')!r})")
    report = compare_domains(manifest["top_domains"], read_webtext(args.webtext))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
