"""Train GPT-2 on the pipeline's token shards: `python -m model.train [--config FILE] [--set key=value ...]`.

Runs under Ray Train's TorchTrainer (mode="ray", default; DDP across `num_workers`), as one plain process
(mode="local"), or as the processes torchrun starts (mode="torchrun": `torchrun --nproc-per-node N -m model.train
--set mode=torchrun ...`; DDP, rank 0 writes). Checkpoints carry model, optimizer, step, config and each rank's
RNG states and data position, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from pydantic import Field

from model.data import TokenData
from model.gpt import GPT, PRESETS, GPTConfig, padded_vocab
from pipeline.core.config import TypedConfig, load_config
from pipeline.core.dataset import atomic_path, write_json
from pipeline.core.errors import PipelineError
from pipeline.core.faults import fault_point

clock = time.perf_counter  # the steps' timer (a test replaces it)


class TrainConfig(TypedConfig):
    data: str  # a `tokenize` output directory, or a corpus manifest (path or URI: s3://bucket/owt/1.0.0/manifest.json)
    out_dir: str
    model: str = "gpt2"  # a preset of model.gpt.PRESETS
    n_layer: int | None = None  # overrides of the preset
    n_head: int | None = None
    n_embd: int | None = None
    block_size: int | None = None
    dropout: float = 0.0
    tokenizer: str = "gpt2"
    # Re-hash each rank's token shards against their recorded sha256 before training (~1 GB/s): a damaged shard is
    # refused by name instead of trained on.
    verify_data: bool = True
    batch_size: int = Field(12, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_steps: int = Field(600_000, ge=1)
    lr: float = 6e-4
    min_lr: float = 6e-5
    warmup_steps: int = 2000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_interval: int = Field(2000, ge=1)
    eval_iters: int = Field(200, ge=1)
    log_interval: int = Field(10, ge=1)
    # random: windows drawn uniformly (nanoGPT); sequential: one pass in shard order, cursor saved in checkpoints
    data_order: str = Field("random", pattern="^(random|sequential)$")
    seed: int = 1337
    device: str = "auto"  # auto: cuda if available
    compile: bool = False
    # ray: Ray Train workers; local: this process; torchrun: one of the processes `torchrun` started (DDP)
    mode: str = Field("ray", pattern="^(ray|local|torchrun)$")
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, ge=1)
    stop_at: int | None = None  # stop after this step with a checkpoint, as a preemption would; rerun to resume
    sample_tokens: int = 64
    sample_prompt: str = "The"
    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None

    transport_keys = frozenset({"mode", "num_workers", "use_gpu", "cpus_per_worker", "device", "compile", "stop_at"})

    def gpt_config(self) -> GPTConfig:
        if self.model not in PRESETS:
            raise PipelineError(f"unknown model preset {self.model!r} (choose from {', '.join(PRESETS)})")
        kw: dict[str, Any] = dict(PRESETS[self.model])
        for k in ("n_layer", "n_head", "n_embd", "block_size"):
            if getattr(self, k) is not None:
                kw[k] = getattr(self, k)
        return GPTConfig(vocab_size=padded_vocab(), dropout=self.dropout, **kw)


def say(msg: str) -> None:
    # Not print(): Ray Train patches print in its workers and the line would reach the driver twice.
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def rank_state(data_rng: np.random.Generator, position: dict[str, int], device: torch.device) -> dict[str, Any]:
    """What one rank needs to continue exactly: its RNGs and its sequential reader's cursor."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy_data": data_rng.bit_generator.state,
        "data_position": dict(position),
    }


def save_checkpoint(
    path: Path, raw_model: GPT, optimizer, step: int, cfg: TrainConfig, ranks: list[dict[str, Any]]
) -> None:
    state = {
        "model": raw_model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": cfg.resolved(),
        "gpt_config": vars(raw_model.config),
        "ranks": ranks,  # rank_state() of every rank, in rank order
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a bad file
        raise PipelineError(f"{path}: unreadable checkpoint ({e.__class__.__name__}: {e})") from None


WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DDP


def strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A compiled or DDP-wrapped model's state_dict keys, as the plain GPT's."""
    out = {}
    for key, value in state.items():
        while key.startswith(WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint for use outside training (evaluation, export): checked to hold a model and its config."""
    if not path.is_file():
        raise PipelineError(f"{path}: checkpoint not found")
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not {"model", "gpt_config"} <= ckpt.keys():
        raise PipelineError(f"{path}: not a model.train checkpoint (needs 'model' and 'gpt_config')")
    return ckpt


def train_loop(config: dict[str, Any]) -> None:
    """One worker's training. Under Ray Train every worker runs this; rank 0 writes files."""
    cfg = TrainConfig.model_validate({k: v for k, v in config.items() if not k.startswith("_")})
    under_ray = bool(config.get("_ray"))
    torchrun = cfg.mode == "torchrun"
    vocab_sha = config.get("_vocab_sha256")
    rank, world = 0, 1
    if under_ray:
        import ray.train
        import ray.train.torch

        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        device = ray.train.torch.get_device()
    else:
        device = torch.device(
            "cuda"
            if cfg.device == "auto" and torch.cuda.is_available()
            else ("cpu" if cfg.device == "auto" else cfg.device)
        )
    if torchrun:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(cfg.cpus_per_worker)
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoints" / "ckpt.pt"

    torch.manual_seed(cfg.seed + rank)
    data_rng = np.random.default_rng(cfg.seed + rank)
    gcfg = cfg.gpt_config()
    raw_model = GPT(gcfg).to(device)
    optimizer = raw_model.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type)
    start_step = 0

    train = TokenData(cfg.data, "train", cfg.tokenizer, vocab_sha, rank, world, verify=cfg.verify_data)
    val = TokenData(cfg.data, "val", cfg.tokenizer, vocab_sha, verify=cfg.verify_data)
    metrics_path = out / "metrics.jsonl"
    state, source = None, ""
    if under_ray and ray.train.get_checkpoint() is not None:  # a worker group restarted after a failure
        with ray.train.get_checkpoint().as_directory() as d:
            state, source = load_checkpoint(Path(d) / "ckpt.pt"), "Ray Train's latest checkpoint"
    elif ckpt_path.is_file():  # a new run (or a restarted driver) in an out_dir that has one
        state, source = load_checkpoint(ckpt_path), str(ckpt_path)
    if state is not None:
        raw_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step = state["step"]
        ranks = state.get("ranks", [])
        if len(ranks) == world:
            mine = ranks[rank]
            torch.set_rng_state(mine["torch"])
            if mine["cuda"] is not None and device.type == "cuda":
                torch.cuda.set_rng_state(mine["cuda"], device)
            data_rng.bit_generator.state = mine["numpy_data"]
            train.position = dict(mine["data_position"])
        else:
            data_rng = np.random.default_rng([cfg.seed, rank, start_step])  # not the windows of step 0 again
            if rank == 0:
                say(
                    f"train: the checkpoint was written by {len(ranks)} worker(s), this run has {world}: model and "
                    "optimizer resume, data order and RNG start afresh (the run is no longer exactly reproducible)"
                )
        if rank == 0:
            say(f"train: resuming from step {start_step} ({source})")
            forget_metrics_after(metrics_path, start_step)

    # What runs the steps: the GPT, possibly wrapped (DDP, torch.compile); raw_model is what is saved and sampled.
    model: torch.nn.Module = raw_model
    if under_ray and world > 1:
        model = ray.train.torch.prepare_model(model)
    elif torchrun and world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        model = cast(torch.nn.Module, torch.compile(model))  # an OptimizedModule for a module
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    out.mkdir(parents=True, exist_ok=True)

    def log(rec: dict[str, Any]) -> None:
        if rank == 0:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(rec) + "\n")

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        eval_rng = np.random.default_rng(cfg.seed + 10_000)  # the same val windows at every evaluation
        losses = []
        for _ in range(cfg.eval_iters):
            x, y = val.get_batch(cfg.batch_size, gcfg.block_size, eval_rng)
            with autocast:
                _, loss = raw_model(x.to(device), y.to(device))
            losses.append(loss.item())
        model.train()
        return float(np.mean(losses))

    def gather(obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if world == 1:
            return [obj]
        out = [None] * world
        torch.distributed.all_gather_object(out, obj)
        return out

    def checkpoint(step: int, metrics: dict[str, Any]) -> None:
        # every rank has its own RNG streams and reads its own shards: keep them all
        ranks = gather(rank_state(data_rng, train.position, device))
        if rank == 0:
            save_checkpoint(ckpt_path, raw_model, optimizer, step, cfg, ranks)
        if under_ray:
            with tempfile.TemporaryDirectory() as d:
                ckpt = None
                if rank == 0:
                    save_checkpoint(Path(d) / "ckpt.pt", raw_model, optimizer, step, cfg, ranks)
                    ckpt = ray.train.Checkpoint.from_directory(d)
                ray.train.report(metrics, checkpoint=ckpt)

    # Where each rank runs (host, Ray node), for final.json: a multi-node run shows it used every node.
    me = {"rank": rank, "host": socket.gethostname(), "device": str(device)}
    if under_ray:
        me["node"] = ray.get_runtime_context().get_node_id()
    workers = gather(me)
    tokens_per_step = cfg.batch_size * gcfg.block_size * cfg.grad_accum * world
    # tokens/s over the steps since the last log line, timed step by step: evaluation and checkpoints are left out,
    # and the first and last windows count the steps they hold (not log_interval).
    window_steps, window_s = 0, 0.0
    model.train()
    last = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
    for step in range(start_step, last):
        step_started = clock()
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for micro in range(cfg.grad_accum):
            if cfg.data_order == "sequential":
                x, y = train.next_batch(cfg.batch_size, gcfg.block_size)
            else:
                x, y = train.get_batch(cfg.batch_size, gcfg.block_size, data_rng)
            sync = nullcontext()
            if world > 1 and micro < cfg.grad_accum - 1:
                sync = cast(Any, model).no_sync()  # DDP's (or compiled DDP's): all-reduce once per step
            with sync, autocast:
                _, loss = model(x.to(device), y.to(device))
                (loss / cfg.grad_accum).backward()
            loss_sum += loss.item() / cfg.grad_accum
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()  # the step's kernels done before its time is read
        window_steps, window_s = window_steps + 1, window_s + clock() - step_started
        done = step + 1
        fault_point(f"train.step.{done}.rank.{rank}")
        if done % cfg.log_interval == 0 or done == start_step + 1 or done == cfg.max_steps:
            log(
                {
                    "kind": "train",
                    "step": done,
                    "loss": round(loss_sum, 6),
                    "lr": lr,
                    "tokens": done * tokens_per_step,
                    "tokens_per_s": round(tokens_per_step * window_steps / max(window_s, 1e-9)),
                }
            )
            window_steps, window_s = 0, 0.0
        if done % cfg.eval_interval == 0 or done == last:
            val_loss = evaluate()
            rec = {
                "kind": "eval",
                "step": done,
                "val_loss": round(val_loss, 6),
                "val_ppl": round(math.exp(min(val_loss, 50)), 3),
                "train_loss": round(loss_sum, 6),
            }
            log(rec)
            if rank == 0:
                say(f"train: step {done}/{cfg.max_steps} loss {loss_sum:.4f} val_loss {val_loss:.4f}")
            checkpoint(done, rec)

    if rank == 0 and last == cfg.max_steps:
        from pipeline.text.vocab import tokenizer

        enc = tokenizer(cfg.tokenizer)
        prompt = torch.tensor([enc.encode_ordinary(cfg.sample_prompt)], dtype=torch.long, device=device)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        raw_model.eval()
        ids = raw_model.generate(prompt, cfg.sample_tokens, cfg.temperature, cfg.top_k, cfg.top_p, generator=gen)
        sample = enc.decode(ids[0].tolist())
        summary = summarize(cfg, metrics_path, sample, raw_model.num_params()) | {"workers": workers}
        write_json(out / "final.json", summary)
    if torchrun:
        torch.distributed.destroy_process_group()


def forget_metrics_after(metrics_path: Path, step: int) -> None:
    """On resume: drop the records of steps after the checkpoint, which the resumed run logs again."""
    if not metrics_path.is_file():
        return
    lines = metrics_path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        with atomic_path(metrics_path) as tmp:
            tmp.write_text("".join(keep))


def summarize(cfg: TrainConfig, metrics_path: Path, sample: str, params: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    return {
        "config_fingerprint": cfg.fingerprint(),
        "params": params,
        "steps": train[-1]["step"] if train else 0,
        "first_loss": train[0]["loss"] if train else None,
        "last_loss": train[-1]["loss"] if train else None,
        "val_loss": evals[-1]["val_loss"] if evals else None,
        "sample": sample,
    }


def plot_losses(out_dir: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train")
    ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "loss.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def local_data(data: str) -> str:
    """A corpus URI (s3://.../manifest.json) is downloaded, verified, once; local paths are made absolute."""
    if "://" in data and not data.startswith("file://"):
        from pipeline.corpus.published import download

        return str(download(data, Path("runs/corpora")).resolve())
    return str(Path(data.removeprefix("file://")).resolve())


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train (or reuse a finished run with the same config) and return the summary from final.json."""
    # Absolute paths: Ray Train workers run in their own working directory.
    cfg = cfg.model_copy(update={"data": local_data(cfg.data), "out_dir": str(Path(cfg.out_dir).resolve())})
    out = Path(cfg.out_dir)
    final = out / "final.json"
    if final.is_file():
        summary = json.loads(final.read_text())
        if summary.get("config_fingerprint") == cfg.fingerprint():
            return summary | {"reused": True}
        raise PipelineError(f"{out} holds a finished run with another config; choose another out_dir")
    from pipeline.text.vocab import vocab_sha256

    config = cfg.resolved() | {"_vocab_sha256": vocab_sha256(cfg.tokenizer)}
    if cfg.mode == "local":
        train_loop(config)
    elif cfg.mode == "torchrun":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise PipelineError("mode=torchrun: start it with torchrun (RANK and WORLD_SIZE are not set)")
        train_loop(config)
        if int(os.environ["RANK"]) != 0:
            return {"rank": int(os.environ["RANK"])}  # rank 0 writes and reports
    else:
        fit_with_ray(cfg, config)
    plot_losses(out)
    if not final.is_file():
        return {"stopped_at": cfg.stop_at, "checkpoint": str(out / "checkpoints" / "ckpt.pt")}
    return json.loads(final.read_text())


def fit_with_ray(cfg: TrainConfig, config: dict[str, Any]) -> None:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from pipeline.core.runner import RayRunner

    RayRunner()  # joins $RAY_ADDRESS or starts embedded Ray, forwarding the env the workers need
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=config | {"_ray": True},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
        ),
        run_config=RunConfig(
            name="train",
            storage_path=str((Path(cfg.out_dir) / "ray").resolve()),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=2),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise PipelineError(f"training failed: {result.error}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.train", description=__doc__)
    ap.add_argument("--config", metavar="FILE", help="TOML file with a [train] table (and [pipeline] root)")
    ap.add_argument("--root", help="the pipeline's root: data defaults to its token corpus, out_dir to <root>/train")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        cfg = load_train_config(args.config, args.overrides, args.root)
        summary = run(cfg)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if "rank" in summary:
        return 0  # a torchrun rank other than 0: rank 0 reports
    if "stopped_at" in summary:
        print(
            f"train: stopped at step {summary['stopped_at']} as asked; checkpoint {summary['checkpoint']}; "
            "run again without stop_at to resume"
        )
    else:
        print(format_summary(summary, Path(cfg.out_dir)))
    return 0


def load_train_config(
    config_file: str | Path | None, overrides: list[str] | tuple[str, ...] = (), root: str | None = None
) -> TrainConfig:
    """[train] of the config file and --set, `data` and `out_dir` defaulting to the pipeline root's corpus."""
    from pipeline import chain

    return load_config(
        TrainConfig, "train", config_file, overrides, base=chain.train_folders(chain.root_of(config_file, root))
    )


def format_summary(s: dict[str, Any], out_dir: Path) -> str:
    head = "train: reusing finished run" if s.get("reused") else "train: done"
    return (
        f"{head} in {out_dir}: {s['params']:,} parameters, {s['steps']} steps, "
        f"loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}, val loss {s['val_loss']:.3f}\n"
        f"loss curve: {out_dir / 'loss.png'}\nsample: {s['sample']!r}"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
