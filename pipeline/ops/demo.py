"""`python -m pipeline demo`: the demo world -> every stage on Ray -> a tiny GPT-2, offline, resumable."""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline import chain
from pipeline.core.config import StageConfig, load_config, read_file_section
from pipeline.core.errors import PipelineError
from pipeline.ops.demo_world import generate
from pipeline.stages.fetch import FetchConfig
from pipeline.web.replay import ReplayServer, warc_files_in

DEFAULT_RUN_DIR = "runs/demo"


def demo_config_path() -> Path:
    return Path(str(resources.files("pipeline.configs").joinpath("demo.toml")))


def _relocate(values: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Point the demo config's runs/demo/... paths at another run directory."""

    def move(v: Any) -> Any:
        if isinstance(v, str) and v.startswith(DEFAULT_RUN_DIR):
            return run_dir + v[len(DEFAULT_RUN_DIR) :]
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return {k: move(v) for k, v in values.items()}


def _mine(name: str, overrides: list[str]) -> list[str]:
    return [o[len(name) + 1 :] for o in overrides if o.startswith(f"{name}.")]


def stage_config(name: str, config_file: Path, run_dir: str, overrides: list[str]) -> StageConfig:
    """The stage's table of the demo config (its runs/demo paths moved to run_dir), datasets under run_dir."""
    base = _relocate(read_file_section(config_file, name), run_dir)
    return chain.config_for(name, None, _mine(name, overrides), root=run_dir, base=base)


def run_demo(args: argparse.Namespace) -> int:
    from model.train import TrainConfig, format_summary, plot_losses
    from model.train import run as train_run
    from pipeline.core.runner import make_runner
    from pipeline.corpus.published import verify
    from pipeline.stages.manifest import format_funnel

    t0 = time.time()
    config_file = Path(args.config) if args.config else demo_config_path()
    run_dir = args.run_dir.rstrip("/")
    bad = [o for o in args.overrides if o.split(".", 1)[0] not in [*chain.names(), "train"] or "." not in o]
    if bad:
        raise PipelineError(f"demo --set takes stage.key=value (e.g. filter.min_tokens=64), got {bad[0]!r}")
    world = generate(Path(run_dir) / "world", articles=args.articles)
    print(
        ("demo world: reusing " if world.get("reused") else "demo world: wrote ")
        + f"{run_dir}/world ({world['submissions']} submissions, {world['pages']} pages)"
    )
    configs = {name: stage_config(name, config_file, run_dir, args.overrides) for name in chain.names()}
    runner = make_runner(args.runner, args.address)
    try:
        with ReplayServer(warc_files_in([Path(run_dir) / "world" / "web"])) as proxy:
            print(f"demo web: replaying {run_dir}/world/web on {proxy} (fetch goes through it as a proxy)")
            fetch_cfg = configs["fetch"]
            assert isinstance(fetch_cfg, FetchConfig)
            fetch_cfg.proxy = proxy
            results = {
                name: chain.run_stage(name, cfg, runner, overwrite=args.overwrite) for name, cfg in configs.items()
            }
        manifest = results["manifest"]
        print(
            f"manifest: {manifest['path']} (dataset card: README.md, Croissant: croissant.json beside it, with the "
            f"record sets beside the data: {chain.corpus_folder(run_dir)}/croissant.json)"
        )
        print(format_funnel(manifest))
        report = verify(manifest["path"])
        print(f"verify: {report.lines()[-1]}")
        if not report.clean:
            raise PipelineError("the corpus does not match its manifest:\n" + "\n".join(report.lines()))
        if not args.skip_train:
            base = chain.train_folders(run_dir) | _relocate(read_file_section(config_file, "train"), run_dir)
            tcfg = load_config(TrainConfig, "train", None, _mine("train", args.overrides), base=base)
            if args.runner == "local":
                tcfg.mode = "local"
            summary = train_run(tcfg)
            if summary.get("reused"):
                plot_losses(Path(tcfg.out_dir))
            print(format_summary(summary, Path(tcfg.out_dir)))
    finally:
        runner.close()
    print(
        f"demo: finished in {time.time() - t0:.0f}s; every dataset is under {run_dir}/ "
        "(inspect with pyarrow, pandas or duckdb)"
    )
    return 0
