"""`python -m pipeline <stage> [--config FILE] [--root DIR] [--set key=value ...]`, the demo and the tools.

The stage subcommands are chain.PIPELINE's stages."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from pipeline import chain
from pipeline.core.errors import PipelineError, os_error_line

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
    "ingest": ("pipeline.ops.ingest", "main", "your own Parquet/JSONL text into the pipeline, then the stages after"),
    "cluster": ("pipeline.ops.cluster", "main_cluster", "start, inspect or stop a local multi-node Ray cluster"),
    "submit": ("pipeline.ops.cluster", "main_submit", "run stages (or train) on a Ray cluster as Ray jobs, in order"),
}


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML file: [pipeline] root, and a table per stage")
    p.add_argument(
        "--root",
        default=None,
        help=f"the datasets' folder, one subfolder a stage (default: [pipeline] root, else {chain.DEFAULT_ROOT})",
    )
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
    for stage in chain.PIPELINE:
        module = importlib.import_module(stage.run.__module__)
        p = sub.add_parser(stage.name, help=(module.__doc__ or "").strip().splitlines()[0])
        add_run_options(p)
    d = sub.add_parser("demo", help="the whole pipeline and a tiny GPT-2 on the embedded sample, offline")
    add_run_options(d)
    d.add_argument("--run-dir", default="runs/demo", help="where the demo world and every dataset go")
    d.add_argument("--articles", type=int, default=240, help="size of the demo world (articles planted)")
    d.add_argument("--skip-train", action="store_true")
    st = sub.add_parser("stages", help="the stages, in order (one line; --json: each with its folder and text)")
    st.add_argument("--json", action="store_true")
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
        if args.command == "stages":
            if args.json:
                rows = [{"name": s.name, "output": s.output, "about": s.about} for s in chain.PIPELINE]
                print(json.dumps(rows, indent=2))
            else:
                print(" ".join(chain.names()))
            return 0
        if args.command == "world":
            from pipeline.ops.demo_world import generate

            print(generate(args.out, articles=args.articles, seed=args.seed))
            return 0
        if args.command == "demo":
            from pipeline.ops.demo import run_demo

            if args.config:
                chain.check_config_file(args.config)
            return run_demo(args)
        stage = chain.stage(args.command)
        cfg = chain.config_for(stage.name, args.config, args.overrides, root=args.root)
        runner = None
        if stage.uses_ray:
            from pipeline.core.runner import make_runner

            runner = make_runner(args.runner, args.address)
        try:
            result = chain.run_stage(stage.name, cfg, runner, overwrite=args.overwrite)
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
    except OSError as e:
        # A full disk, an output folder not writable, a file where a folder should be: the user's to fix, in one
        # line. (An error Ray raised for a task may be an OSError too: its cause is the one to show.)
        cause = getattr(e, "cause", None)
        print(f"error: {os_error_line(cause if isinstance(cause, OSError) else e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished shards are kept; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
