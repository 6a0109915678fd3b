"""`python -m pipeline ingest FILE... --root DIR --at STAGE [--through STAGE]`: bring your own text.

Parquet or JSON Lines files with a text column become a documents dataset (stages/ingest.py) in `<root>/ingested`,
then the stages from `--at` through `--through` run on it, each in its folder under the root, as
`python -m pipeline <stage>` runs them. Text enters at any stage after extract (`--at filter` starts at
annotate: filter decides on annotate's columns). The trainer then reads the corpus:

    python -m pipeline ingest books.jsonl --root runs/books --at tokenize
    python -m model.train --root runs/books --set model=tiny
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline import chain
from pipeline.core.errors import PipelineError
from pipeline.core.runner import make_runner
from pipeline.core.stage import Stage, running, summary_line
from pipeline.stages import ingest

# The stages text can enter: every one after extract (its output is the documents contract ingest writes).
ENTRIES = chain.text_entries()
INGEST = Stage(
    "ingest",
    ingest.IngestConfig,
    ingest.run,
    "ingested",
    input=None,
    funnel=(("rows_in", "rows read"), ("rows_out", "documents ingested")),
    about="Documents read from the user's Parquet or JSON Lines files (text, id, url and metadata columns).",
    shown=("text_column", "id_column", "url_column"),
)


def plan(at: str, through: str) -> list[str]:
    """The stages to run after ingesting, in chain order."""
    names = chain.names()
    if at == "filter":
        at = "annotate"  # filter thresholds annotate's columns
    if at not in ENTRIES:
        raise PipelineError(f"ingest: --at {at!r}: text enters at one of {', '.join(ENTRIES)}")
    if through not in names or names.index(through) < names.index(at):
        raise PipelineError(f"ingest: --through {through!r} must be a stage at or after {at}")
    return names[names.index(at) : names.index(through) + 1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipeline ingest", description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="Parquet or JSON Lines files, one document a row")
    ap.add_argument("--root", required=True, help="where the datasets go, one folder a stage (as --root of a stage)")
    ap.add_argument("--at", default="annotate", help=f"the first stage to run on the text: {', '.join(ENTRIES)}")
    ap.add_argument("--through", default="tokenize", help="the last stage to run (default tokenize; or manifest)")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--id-column", default=None, help="a unique id per document (default: the url, else file:row)")
    ap.add_argument("--url-column", default=None)
    ap.add_argument("--no-metadata", action="store_true", help="keep only the text, id and url of each row")
    ap.add_argument("--config", metavar="FILE", help="TOML file with tables for the stages that run")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE")
    ap.add_argument("--runner", choices=["ray", "local"], default="ray")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else embedded)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        stages = plan(args.at, args.through)
        cfg = ingest.IngestConfig(
            input=[f if "://" in f else str(Path(f).resolve()) for f in args.files],
            output=chain.under(args.root, INGEST.output),
            text_column=args.text_column,
            id_column=args.id_column,
            url_column=args.url_column,
            metadata=not args.no_metadata,
        )
        configs = {
            name: chain.config_for(
                name,
                args.config,
                [o.split(".", 1)[1] for o in args.overrides if o.startswith(f"{name}.")],
                root=args.root,
                base={"input": cfg.output} if name == stages[0] else None,  # the entry stage reads the text
            )
            for name in stages
        }
        runner = make_runner(args.runner, args.address)
        try:
            with running(INGEST):
                result = ingest.run(cfg, runner, args.overwrite)
            print(f"ingest: reusing {cfg.output}" if result.get("reused") else summary_line(result))
            for example in result.get("examples", [])[:5]:
                print(f"  {example}", file=sys.stderr)
            for name, stage_cfg in configs.items():
                chain.run_stage(name, stage_cfg, runner, overwrite=args.overwrite)
        finally:
            runner.close()
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"ingest: the corpus is in {chain.folders(args.root)[stages[-1]][1]}")
    return 0
