"""The stages of the pipeline, in order, and how one is run."""

from __future__ import annotations

import importlib
from typing import Any

from pipeline.core.config import StageConfig
from pipeline.core.stage import summary_line

# stage name -> (module, config class name). Adding a stage: a module with a Config and run(), then a line here.
STAGES: dict[str, tuple[str, str]] = {
    "harvest": ("pipeline.stages.harvest", "HarvestConfig"),
    "fetch": ("pipeline.stages.fetch", "FetchConfig"),
    "extract": ("pipeline.stages.extract", "ExtractConfig"),
    "filter": ("pipeline.stages.filter", "FilterConfig"),
    "dedup": ("pipeline.stages.dedup", "DedupConfig"),
    "tokenize": ("pipeline.stages.tokenize", "TokenizeConfig"),
    "manifest": ("pipeline.stages.manifest", "ManifestConfig"),
}
RAYLESS = {"manifest"}


def stage_parts(name: str) -> tuple[Any, type[StageConfig]]:
    module = importlib.import_module(STAGES[name][0])
    return module, getattr(module, STAGES[name][1])


def run_stage(name: str, cfg: StageConfig, runner, overwrite: bool = False) -> dict[str, Any]:
    module, _ = stage_parts(name)
    result = module.run(cfg, runner, overwrite=overwrite)
    if result.get("reused"):
        where = result.get("path") or cfg.output  # type: ignore[attr-defined]
        print(
            f"{name}: reusing {where} (finished {result.get('finished', result.get('created'))}, same config and input)"
        )
    elif name != "manifest":
        print(summary_line(result))
    return result
