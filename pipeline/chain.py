"""The pipeline, declared once: its stages in order, with everything the rest of the project knows of each.

The CLI's subcommands, `make <stage>`, the demo, the end-to-end run, `submit all`, the Airflow DAG's tasks, the
default dataset folders, the manifest's funnel and the dataset card's and Croissant's description of each step all
come from PIPELINE. A stage is one entry (see docs/ARCHITECTURE.md, "Adding a stage").

Datasets live under one root (`[pipeline] root` in a config file, or `--root`): a stage writes `<root>/<output>`
and reads the folder of the stage before it, unless its config table names `input` or `output`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.core import storage
from pipeline.core.config import StageConfig, check_tables, load_config, read_file_section
from pipeline.core.dataset import RUN_FILE, Dataset, read_json, write_json
from pipeline.core.errors import ConfigError, PipelineError
from pipeline.core.runner import Runner
from pipeline.core.stage import Record, Stage, running, summary_line
from pipeline.stages import annotate, dedup, extract, fetch, filter, harvest, manifest, tokenize

PIPELINE: tuple[Stage[Any], ...] = (
    Stage(
        "harvest",
        harvest.HarvestConfig,
        harvest.run,
        "links",
        input=None,  # the Reddit dumps: [harvest] input
        funnel=(("rows_in", "submissions read"), ("rows_out", "unique URLs")),
        about="Reddit submissions read from the dumps; outbound links kept by score, date and blocklists, "
        "URLs normalized and deduplicated.",
        shown=("months", "min_score", "score_mode", "created_before", "drop_self_posts", "drop_nsfw"),
    ),
    Stage(
        "fetch",
        fetch.FetchConfig,
        fetch.run,
        "fetched",
        funnel=(("rows_out", "pages fetched"),),
        about="Every unique URL fetched over HTTP(S) with per-host politeness; raw responses kept as WARC.",
        shown=(
            "connect_timeout_s",
            "read_timeout_s",
            "deadline_s",
            "max_bytes",
            "max_redirects",
            "retries",
            "obey_robots",
            "min_host_delay_s",
        ),  # fmt: skip
    ),
    Stage(
        "extract",
        extract.ExtractConfig,
        extract.run,
        "docs",
        funnel=(("rows_out", "documents extracted"),),
        about="Main text extracted from each page with trafilatura.",
        shown=("favor_precision", "favor_recall", "include_comments", "include_tables", "timeout_s"),
    ),
    Stage(
        "annotate",
        annotate.AnnotateConfig,
        annotate.run,
        "annotated",
        about="Every document scored once: language and its confidence by fastText lid.176, length in GPT-2 tokens "
        "(and any other annotator listed).",
        shown=("annotators",),
    ),
    Stage(
        "filter",
        filter.FilterConfig,
        filter.run,
        "filtered",
        funnel=(("rows_out", "documents kept by filter"),),
        about="Wikipedia dropped; documents kept in the chosen languages above a language score and a minimum "
        "length (and by any other rule on the annotations).",
        shown=(
            "drop_wikipedia",
            "drop_wikimedia",
            "languages",
            "min_lang_score",
            "min_tokens",
            "quality_rules",
            "rules",
        ),  # fmt: skip
    ),
    Stage(
        "dedup",
        dedup.DedupConfig,
        dedup.run,
        "deduped",
        funnel=(("rows_out", "documents after dedup"),),
        about="Exact duplicates, then near-duplicates (MinHash + LSH over word n-grams) removed; one document kept "
        "per cluster (the highest Reddit score).",
        shown=("ngram", "num_perm", "threshold", "bands", "rows", "verify"),
    ),
    Stage(
        "tokenize",
        tokenize.TokenizeConfig,
        tokenize.run,
        "tokens",
        funnel=(("tokens", "GPT-2 tokens (train + val)"),),
        about="GPT-2 BPE tokens, end-of-text after every document; train/val split by URL hash.",
        shown=("tokenizer", "val_fraction", "shard_tokens"),
    ),
    Stage(
        "manifest",
        manifest.ManifestConfig,
        manifest.run,
        "data_manifests",
        about="The corpus described for others to verify: manifest.json, Croissant and this card.",
        uses_ray=False,
    ),
)

DEFAULT_ROOT = "runs/owt"
TRAIN_OUTPUT = "train"  # the trainer's checkpoints and logs, under the root beside the datasets
# A config file's tables besides the stages': the datasets' root, and the trainer's settings (model/train.py).
PIPELINE_TABLE, TRAIN_TABLE = "pipeline", "train"
PIPELINE_KEYS = ("root",)
# Text brought with `python -m pipeline ingest` is written in extract's contract: it may enter the chain at any stage
# after extract that writes a dataset (pipeline/ops/ingest.py), skipping those the user's text needs not.
INGEST, ENTRY_AFTER = "ingest", "extract"


def names() -> list[str]:
    return [s.name for s in PIPELINE]


def stage(name: str) -> Stage[Any]:
    for s in PIPELINE:
        if s.name == name:
            return s
    raise PipelineError(f"unknown stage {name!r} (stages: {', '.join(names())})")


def check_config_file(config_file: str | Path) -> None:
    """Tables and [pipeline] keys no one reads are refused: a misspelt `[extrat]` would be ignored without a word."""
    check_tables(config_file, [PIPELINE_TABLE, *names(), TRAIN_TABLE])
    for key in read_file_section(config_file, PIPELINE_TABLE):
        if key not in PIPELINE_KEYS:
            raise ConfigError(
                f"{config_file}: [{PIPELINE_TABLE}] unknown key {key!r} (known keys: {', '.join(PIPELINE_KEYS)})"
            )


def root_of(config_file: str | Path | None, root: str | None = None) -> str:
    """--root, else `[pipeline] root` of the config file, else runs/owt. The config file is checked first."""
    if config_file is not None:
        check_config_file(config_file)
    if root:
        return root
    if config_file is not None:
        value = read_file_section(config_file, PIPELINE_TABLE).get("root")
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{config_file}: [pipeline] root must be a path, got {value!r}")
        if value:
            return value
    return DEFAULT_ROOT


def under(root: str, folder: str) -> str:
    """`folder` inside the root: a path, or a URI whose options stay at the end (s3://b/run?endpoint_override=...)."""
    base, sep, query = root.partition("?")
    return f"{base.rstrip('/')}/{folder}{sep}{query}"


def folders(root: str) -> dict[str, tuple[str | None, str]]:
    """stage -> (the input folder it reads by default, or None when its config names it; its output folder)."""
    out: dict[str, tuple[str | None, str]] = {}
    previous: str | None = None
    for s in PIPELINE:
        where = under(root, s.output)
        source = previous if s.input == "previous" else (under(root, s.input) if s.input else None)
        out[s.name] = (source, where)
        previous = where
    return out


def config_for(
    name: str,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    root: str | None = None,
    base: dict[str, Any] | None = None,
) -> StageConfig:
    """A stage's config: its default folders under the root, then `base`, the config file's table, `--set`."""
    s = stage(name)
    source, target = folders(root_of(config_file, root))[name]
    defaults: dict[str, Any] = {"output": target} | ({"input": source} if source is not None else {})
    return load_config(s.config, name, config_file, list(overrides), base=defaults | (base or {}))


def corpus_folder(root: str) -> str:
    """Where the token corpus is: what the trainer reads by default."""
    return folders(root)["tokenize"][1]


def train_folders(root: str) -> dict[str, str]:
    """The trainer's default `data` and `out_dir` under the root."""
    return {"data": corpus_folder(root), "out_dir": under(root, TRAIN_OUTPUT)}


def text_entries() -> list[str]:
    """The stages `ingest`'s documents may enter."""
    after = names().index(ENTRY_AFTER) + 1
    return [s.name for s in PIPELINE[after:] if s.uses_ray]


def accepted_inputs(name: str) -> list[str]:
    """The stages whose output `name` reads: the one before it in the chain (or the one writing the folder its entry
    names), and ingest where text may enter; none for a stage whose config names its input (harvest's dumps)."""
    s = stage(name)
    if s.input is None or (s.input == "previous" and names().index(name) == 0):
        return []
    if s.input == "previous":
        writers = [names()[names().index(name) - 1]]
    else:
        writers = [t.name for t in PIPELINE if t.output == s.input]
    return writers + ([INGEST] if writers and name in text_entries() else [])


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def check_input(name: str, cfg: StageConfig) -> None:
    """Refuse, before anything runs, an input that another stage wrote than the one `name` reads (tokenize given
    extract's documents, which skipped filter and dedup; extract given links), naming what it expected and what it
    got. The writer is the one its `_stage.json` names, or the `_run.json` of an unfinished run; an input without
    either is left to the stage, which says it is missing or incomplete, and so is one a writer outside the chain
    made."""
    accepted = accepted_inputs(name)
    if not accepted or not isinstance(cfg.input, str):
        return
    ds = Dataset(cfg.input)
    unfinished = not storage.is_file(ds.stage_file)
    if unfinished and not storage.is_file(ds.path / RUN_FILE):
        return
    record = read_json(ds.path / RUN_FILE if unfinished else ds.stage_file)
    if unfinished:
        record = record.get("identity") if isinstance(record, dict) else None
    got = record.get("stage") if isinstance(record, dict) else None
    if got not in [*names(), INGEST] or got in accepted:
        return  # written by a program of its own (a benchmark's generator): the stage's own checks apply
    expected, *others = accepted
    alternatives = "".join(f" (or {o}'s)" for o in others)
    chain = names()
    if got in chain and chain.index(got) < chain.index(expected):
        advice = f"run {_and(chain[chain.index(got) + 1 : chain.index(expected) + 1])} on it first"
    else:
        advice = f"give it {expected}'s output ({stage(expected).output}/ under the root)"
    raise PipelineError(
        f"{name}: input {ds.uri} holds {got}'s output{' (unfinished)' if unfinished else ''}, but {name} reads "
        f"{expected}'s{alternatives}: {advice}"
    )


def run_stage(name: str, cfg: StageConfig, runner: Runner | None, overwrite: bool = False) -> Record:
    """One stage, as every entry point runs it: its input checked to be of the kind it reads, and its manifest
    recording what the stage is (funnel label, text)."""
    s = stage(name)
    check_input(name, cfg)
    with running(s):
        result = s.run(cfg, runner, overwrite)
    if result.get("reused") and s.uses_ray and result.get("about") != s.described():
        # Finished before its entry said this (or before entries were recorded): the description is no part of the
        # stage's identity or output, so the finished manifest takes the current one.
        result = {k: v for k, v in result.items() if k != "reused"} | {"about": s.described()}
        write_json(Dataset(cfg.output).stage_file, result)
        result["reused"] = True
    if result.get("reused"):
        where = result.get("path") or cfg.output
        print(
            f"{name}: reusing {where} (finished {result.get('finished', result.get('created'))}, same config and input)"
        )
    elif s.uses_ray:
        print(summary_line(result))
    return result
