"""The cloud cluster files in deploy/: the `ray up` config is well formed and the full-scale config is valid for every
stage and the trainer (they cannot be run here: no cloud access)."""

from pathlib import Path

import yaml

from model.train import load_train_config
from pipeline import chain

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_ray_up_config_is_well_formed():
    cfg = yaml.safe_load((DEPLOY / "ray-aws.yaml").read_text())
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert cfg["max_workers"] >= sum(t.get("max_workers", 0) for t in cfg["available_node_types"].values()) - 1
    assert all("node_config" in t for t in cfg["available_node_types"].values())
    # Ray's own schema for `ray up` configs (what `ray up` checks first); private API, kept to this test.
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    validate_config(fillout_defaults(cfg))
    text = (DEPLOY / "ray-aws.yaml").read_text()
    assert "OWT_EFS_DNS" in text and "OWT_REPO" in text and "python3.11-venv" in text  # the documented placeholders


def test_full_scale_config_loads_for_every_stage_and_the_trainer():
    path = DEPLOY / "owt.toml"
    for name in chain.names():
        cfg = chain.config_for(name, path)
        assert cfg.output.startswith("/mnt/owt/") and (name == "harvest" or cfg.input.startswith("/mnt/owt/"))
    train = load_train_config(path)
    assert train.data == chain.corpus_folder("/mnt/owt") and train.out_dir.startswith("/mnt/owt/")
    tokens_per_step = train.batch_size * 1024 * train.grad_accum * train.num_workers
    assert tokens_per_step == 491_520  # nanoGPT's ~0.5M tokens per step for GPT-2 124M
