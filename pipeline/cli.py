"""`python -m pipeline <stage> [--config FILE] [--set key=value ...]` and the demo."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from pipeline.chain import RAYLESS, STAGES, run_stage, stage_parts
from pipeline.core.config import load_config
from pipeline.core.errors import PipelineError

# Commands with their own argument parser: name -> (module, main function, help).
TOOLS: dict[str, tuple[str, str, str]] = {
    "replay": ("pipeline.web.replay", "main", "serve WARC files on loopback, as an HTTP proxy for fetch"),
    "harvest-report": (
        "pipeline.ops.harvest_report",
        "main",
        "compare harvest's domains with WebText's top-1000 domains",
    ),
    "reddit-api": ("pipeline.web.reddit_api", "main", "fetch subreddit listings from the live Reddit API as dumps"),
    "whereis": ("pipeline.corpus.whereis", "main", "a token position -> its document, URL and Reddit submissions"),
    "verify": ("pipeline.corpus.published", "main_verify", "re-hash a corpus against its manifest (missing, corrupt)"),
    "publish": (
        "pipeline.corpus.published",
        "main_publish",
        "copy a corpus and its manifest to s3://, gs:// or file://",
    ),
    "download": ("pipeline.corpus.published", "main_download", "a verified local copy of a published corpus"),
    "contamination": ("pipeline.corpus.contamination", "main", "8-gram overlap of evaluation texts with the corpus"),
    "cluster": ("pipeline.ops.cluster", "main_cluster", "start, inspect or stop a local multi-node Ray cluster"),
    "submit": ("pipeline.ops.cluster", "main_submit", "run stages (or train) on a Ray cluster as Ray jobs, in order"),
}


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML file with a table per stage ([harvest], [fetch], ...)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help='override a config key (TOML literal: 3, 0.5, true, ["en"]); repeatable',
    )
    p.add_argument(
        "--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)"
    )
    p.add_argument(
        "--runner",
        choices=["ray", "local"],
        default="ray",
        help="'local' runs every shard in this process (for debugging)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output directory that holds a run with a different config or input",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline", description="The OpenWebText pipeline, stage by stage.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in STAGES:
        module = importlib.import_module(STAGES[name][0])
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        add_run_options(p)
    d = sub.add_parser("demo", help="the whole pipeline and a tiny GPT-2 on the embedded sample, offline")
    add_run_options(d)
    d.add_argument("--run-dir", default="runs/demo", help="where the demo world and every dataset go")
    d.add_argument("--articles", type=int, default=240, help="size of the demo world (articles planted)")
    d.add_argument("--skip-train", action="store_true")
    w = sub.add_parser("world", help="generate the demo world (a Pushshift-format dump and the web it links to)")
    w.add_argument("out", help="output directory")
    w.add_argument("--articles", type=int, default=240)
    w.add_argument("--seed", type=int, default=0)
    for name, (_, _, text) in TOOLS.items():
        t = sub.add_parser(name, help=text, add_help=False)
        t.add_argument("args", nargs=argparse.REMAINDER)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in TOOLS:  # their own parsers (and --help) see every argument
            module, fn, _ = TOOLS[argv[0]]
            return getattr(importlib.import_module(module), fn)(argv[1:])
        args = build_parser().parse_args(argv)
        if args.command == "world":
            from pipeline.ops.demo_world import generate

            print(generate(args.out, articles=args.articles, seed=args.seed))
            return 0
        if args.command == "demo":
            from pipeline.ops.demo import run_demo

            return run_demo(args)
        _, cls = stage_parts(args.command)
        cfg = load_config(cls, args.command, args.config, args.overrides)
        runner = None
        if args.command not in RAYLESS:
            from pipeline.core.runner import make_runner

            runner = make_runner(args.runner, args.address)
        try:
            result = run_stage(args.command, cfg, runner, overwrite=args.overwrite)
        finally:
            if runner is not None:
                runner.close()
        if args.command == "manifest":
            from pipeline.stages.manifest import format_funnel

            print(f"manifest: {result['path']}")
            print(format_funnel(result))
        return 0
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
