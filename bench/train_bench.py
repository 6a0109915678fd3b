"""Training throughput and MFU of our GPT-2 (model.gpt.GPT) against Hugging Face's GPT2LMHeadModel: same shapes,
same batch, same precision, same optimizer, in the same process, runs interleaved.

What one training step is, for both: forward with the loss, backward, clip the gradient norm to 1.0, AdamW step
(lr 6e-4, betas (0.9, 0.95), weight decay 0.1 on matrices and embeddings only, fused on CUDA: our
`GPT.configure_optimizer`, and the same groups built by hand for HF), `zero_grad(set_to_none=True)`. Precision as
model/train.py: bf16 autocast on CUDA (forward and backward inside it), fp32 on CPU. Dropout 0 in both; both in
train mode. `--compile` wraps both in torch.compile.

Fairness:
- Same tokens: one pool of uniformly random windows w of T+1 tokens, (B, T+1), drawn on the device from a fixed
  seed before timing; data loading is excluded. Both models get the same input x = w[:, :-1], (B, T), T =
  --block-size. Ours gets targets w[:, 1:] (T targets); HF gets labels=x and shifts them itself (T-1 targets, the
  last position ignored), but still computes logits and the float32 cross-entropy over all (B, T) positions, so
  both do the same work per step.
- Same function: our initial weights are copied into HF (Conv1D weights are our Linear weights transposed; the
  vocabulary cropped from our padded 50304 to GPT-2's 50257), and before timing one forward on the first window
  checks that both give the same loss on the real vocabulary, within 1e-3 in fp32 and 1e-2 in bf16 (`--check`: only
  that). Our padded vocabulary (faster matmuls) is one of our design choices, so it stays in the timed comparison.
- HF as its users get it: SDPA attention (causal, no mask tensor), `gelu_new` (the published GPT-2 config's
  activation: a Python tanh formula, where ours calls F.gelu(approximate="tanh"); `--hf-activation
  gelu_pytorch_tanh` gives HF the same kernel), use_cache=False.
- Every run restarts both models from the same initial weights with a fresh optimizer; --warmup steps per run are
  not timed (torch.compile, allocator, optimizer state); the order alternates (ours then HF, HF then ours) from run
  to run. Timed region: --steps steps between two torch.cuda.synchronize() calls.

Figures: tokens/s = B * T * steps / seconds. Ratio = median over runs of each run's ours/HF tokens/s.
MFU = tokens/s * FLOPs per token / peak FLOP/s, with the PaLM (appendix B) and nanoGPT `estimate_mfu` count
    FLOPs per token = 6 N + 12 L C T
N: our `GPT.num_params()`, every parameter counted once (wte is tied to lm_head, so it counts as the output matmul)
minus the position embeddings, with our padded vocabulary (124M preset: 123,689,472); L layers, C = n_embd (= heads
x head size), T = block size. The 12 L C T term counts the full T x T attention scores, as PaLM does, although causal
kernels skip about half. The same N serves both models (same architecture), so their MFU ratio is their throughput
ratio. Peak: dense bf16 tensor-core FLOP/s from the device name (H100 SXM and H200 989e12, H100 PCIe 756e12, A100
312e12), or --peak-tflops; MFU is null on CPU, in fp32 without --peak-tflops, and on unknown GPUs.
Memory: torch.cuda.max_memory_allocated over a run (weights, gradients, optimizer state, activations), each model
alone on the device during its run.

    python bench/train_bench.py                          # gpt2 124M, B=16, T=1024, bf16 on a GPU
    python bench/train_bench.py --compile --out bench-train-compiled.json
    python bench/train_bench.py --model tiny --block-size 64 --batch-size 8 --steps 20 --warmup 5 --device cpu
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import transformers
from torch.nn import functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from model.gpt import GPT, GPT2_VOCAB, PRESETS, GPTConfig, padded_vocab

LR, BETAS, WEIGHT_DECAY, CLIP = 6e-4, (0.9, 0.95), 0.1, 1.0  # model.train's defaults
# Dense bf16 tensor-core peaks; every word of a key must appear in torch.cuda.get_device_name(). First match wins.
PEAK_BF16 = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))
# GPT-2's Conv1D weights are stored (in, out); nn.Linear's (out, in).
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass
class Side:
    name: str
    model: nn.Module  # on the CPU between runs
    init: dict[str, torch.Tensor]  # starting weights, restored before every run
    step_fn: nn.Module | Callable  # the model, or torch.compile of it
    loss: Callable[[Any, torch.Tensor], torch.Tensor]


def ours_loss(model: Any, w: torch.Tensor) -> torch.Tensor:
    return model(w[:, :-1], w[:, 1:])[1]  # (B, T) inputs, (B, T) targets


def hf_loss(model: Any, w: torch.Tensor) -> torch.Tensor:
    x = w[:, :-1]  # (B, T); HF shifts labels internally
    return model(input_ids=x, labels=x, use_cache=False).loss


def build_ours(preset: str, block_size: int, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=padded_vocab(), dropout=0.0, **(PRESETS[preset] | {"block_size": block_size})))


def build_hf(cfg: GPTConfig, activation: str) -> GPT2LMHeadModel:
    hcfg = GPT2Config(
        vocab_size=GPT2_VOCAB,
        n_positions=cfg.block_size,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        activation_function=activation,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
        attn_implementation="sdpa",
    )
    model = GPT2LMHeadModel(hcfg)
    model.loss_type = "ForCausalLM"  # what HF falls back to for this class anyway, with a warning
    if model.config._attn_implementation != "sdpa":
        raise SystemExit(f"transformers {transformers.__version__} did not select SDPA attention for GPT-2")
    return model


@torch.no_grad()
def copy_weights(ours: GPT, hf: GPT2LMHeadModel) -> None:
    src, dst = ours.state_dict(), hf.state_dict()
    if missing := set(dst) - set(src):
        raise SystemExit(f"HF parameters with no counterpart in ours: {sorted(missing)}")
    for k, t in dst.items():
        if k == "lm_head.weight":
            continue  # tied to transformer.wte.weight in both
        w = src[k]
        if k.endswith(CONV1D):
            w = w.t()
        if k == "transformer.wte.weight":
            w = w[:GPT2_VOCAB]  # (Vp, C) -> (V, C)
        t.copy_(w)
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr(), "HF lm_head is not tied"


def adamw(model: nn.Module, device_type: str) -> torch.optim.AdamW:
    if isinstance(model, GPT):
        return model.configure_optimizer(WEIGHT_DECAY, LR, BETAS, device_type)
    params = [p for p in model.parameters() if p.requires_grad]  # the same groups as GPT.configure_optimizer
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS, fused=device_type == "cuda")


@torch.no_grad()
def check_parity(
    ours: GPT, hf: GPT2LMHeadModel, w: torch.Tensor, autocast: AbstractContextManager, tol: float
) -> dict[str, Any]:
    ours.to(w.device)
    hf.to(w.device)
    x = w[:, :-1]  # (B, T)
    with autocast:
        logits, _ = ours(x, w[:, 1:])  # (B, T, Vp)
        out = hf(input_ids=x, labels=x, use_cache=False)  # logits (B, T, V)
    real = logits[..., :GPT2_VOCAB].float()
    # HF's loss: positions 0..T-2 predicting x[:, 1:]; ours on the same positions, padding logits left out.
    ours_loss = F.cross_entropy(real[:, :-1].flatten(0, 1), x[:, 1:].flatten()).item()
    hf_loss_ = out.loss.item()
    logit_diff = (real - out.logits.float()).abs().max().item()
    ours.to("cpu")
    hf.to("cpu")
    n_ours = sum(p.numel() for p in ours.parameters())
    n_hf = sum(p.numel() for p in hf.parameters())
    padding = (ours.config.vocab_size - GPT2_VOCAB) * ours.config.n_embd
    diff = abs(ours_loss - hf_loss_)
    return {
        "ours_loss": ours_loss,
        "hf_loss": hf_loss_,
        "abs_diff": diff,
        "max_abs_logit_diff": logit_diff,
        "tolerance": tol,
        "params_ours": n_ours,
        "params_hf": n_hf,
        "vocab_padding_params": padding,
        "ok": diff <= tol and n_ours - padding == n_hf,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(
    side: Side, opt: torch.optim.Optimizer, w: torch.Tensor, autocast: AbstractContextManager
) -> torch.Tensor:
    with autocast:
        loss = side.loss(side.step_fn, w)
        loss.backward()
    torch.nn.utils.clip_grad_norm_(side.model.parameters(), CLIP)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.detach()  # no .item(): no host sync inside the timed region


def timed_run(
    side: Side,
    windows: list[torch.Tensor],
    warmup: int,
    autocast: AbstractContextManager,
    flops_tok: float,
    peak: float | None,
) -> dict[str, Any]:
    device = windows[0].device
    cuda = device.type == "cuda"
    side.model.load_state_dict(side.init)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    side.model.to(device)
    opt = adamw(side.model, device.type)
    losses = [train_step(side, opt, w, autocast) for w in windows[:warmup]]
    sync(device)
    t0 = time.perf_counter()
    losses += [train_step(side, opt, w, autocast) for w in windows[warmup:]]
    sync(device)
    seconds = time.perf_counter() - t0
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None
    del opt
    side.model.to("cpu")
    if cuda:
        torch.cuda.empty_cache()
    B, T1 = windows[0].shape
    steps = len(windows) - warmup
    tok_s = B * (T1 - 1) * steps / seconds
    loss_values = torch.stack(losses).float().cpu().tolist()
    return {
        "seconds": round(seconds, 4),
        "ms_per_step": round(1000 * seconds / steps, 2),
        "tokens_per_s": round(tok_s, 1),
        "mfu": round(tok_s * flops_tok / peak, 4) if peak else None,
        "max_memory_gib": round(memory, 3) if memory is not None else None,
        "loss_first": round(loss_values[0], 4),
        "loss_last": round(loss_values[-1], 4),
    }


def peak_flops(device: torch.device, dtype: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda" or dtype != "bf16":
        return None
    name = torch.cuda.get_device_name(device)
    return next((f for key, f in PEAK_BF16 if all(k in name for k in key.split())), None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def pct(x: float | None) -> str:
    return f"{100 * x:.1f}%" if x is not None else "n/a"


def bench(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    ours = build_ours(args.model, args.block_size, args.seed)
    hf = build_hf(ours.config, args.hf_activation)
    copy_weights(ours, hf)
    cfg = ours.config
    gen = torch.Generator(device=device).manual_seed(args.seed)
    shape = (args.batch_size, args.block_size + 1)
    windows = [
        torch.randint(0, GPT2_VOCAB, shape, generator=gen, device=device) for _ in range(args.warmup + args.steps)
    ]
    check = check_parity(ours, hf, windows[0], autocast, 1e-2 if dtype == "bf16" else 1e-3)
    print(
        f"check: loss ours {check['ours_loss']:.6f} HF {check['hf_loss']:.6f} |diff| {check['abs_diff']:.2e} "
        f"(tolerance {check['tolerance']:g}), max |logit diff| {check['max_abs_logit_diff']:.2e}; parameters "
        f"{check['params_ours']:,} ours - {check['vocab_padding_params']:,} padding vs {check['params_hf']:,} HF: "
        + ("ok" if check["ok"] else "FAILED")
    )
    n = ours.num_params()  # all parameters minus wpe, tied wte/lm_head counted once
    flops_tok = 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    peak = peak_flops(device, dtype, args.peak_tflops)
    result: dict[str, Any] = {
        "bench": "train",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "device": device_name(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "config": {
            "model": args.model,
            "n_layer": cfg.n_layer,
            "n_head": cfg.n_head,
            "n_embd": cfg.n_embd,
            "block_size": cfg.block_size,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "warmup": args.warmup,
            "runs": args.runs,
            "compile": args.compile,
            "dtype": dtype,
            "hf_activation": args.hf_activation,
            "hf_attention": hf.config._attn_implementation,
            "vocab": {"ours": cfg.vocab_size, "hf": GPT2_VOCAB},
            "lr": LR,
            "betas": BETAS,
            "weight_decay": WEIGHT_DECAY,
            "grad_clip": CLIP,
            "seed": args.seed,
        },
        "mfu_n_params": n,
        "flops_per_token": flops_tok,
        "peak_flops": peak,
        "check": check,
    }
    if not check["ok"] or args.check:
        return result

    sides = [
        Side("ours", ours, copy.deepcopy(ours.state_dict()), torch.compile(ours) if args.compile else ours, ours_loss),
        Side("hf", hf, copy.deepcopy(hf.state_dict()), torch.compile(hf) if args.compile else hf, hf_loss),
    ]
    for side in sides:
        side.model.train()
    runs = []
    for i in range(args.runs):
        rec: dict[str, Any] = {"run": i + 1}
        for side in sides if i % 2 == 0 else sides[::-1]:
            r = rec[side.name] = timed_run(side, windows, args.warmup, autocast, flops_tok, peak)
            mem = f", {r['max_memory_gib']:.2f} GiB" if r["max_memory_gib"] is not None else ""
            print(
                f"run {i + 1}/{args.runs} {side.name:>4}: {r['tokens_per_s']:,.0f} tok/s, {r['ms_per_step']:.1f} "
                f"ms/step, MFU {pct(r['mfu'])}{mem}; loss {r['loss_first']:.3f} -> {r['loss_last']:.3f}",
                flush=True,
            )
        rec["ratio"] = round(rec["ours"]["tokens_per_s"] / rec["hf"]["tokens_per_s"], 4)
        runs.append(rec)

    def med(name: str, key: str) -> float | None:
        vals = [r[name][key] for r in runs if r[name][key] is not None]
        return round(statistics.median(vals), 4) if vals else None

    result["runs"] = runs
    result["median"] = {
        name: {k: med(name, k) for k in ("tokens_per_s", "ms_per_step", "mfu", "max_memory_gib")}
        for name in ("ours", "hf")
    }
    result["ratio_tokens_per_s"] = round(statistics.median(r["ratio"] for r in runs), 4)
    return result


def summary(res: dict[str, Any]) -> str:
    c, chk = res["config"], res["check"]
    head = (
        f"train-bench {c['model']} B={c['batch_size']} T={c['block_size']} {c['dtype']} "
        f"{'compiled' if c['compile'] else 'eager'} on {res['device']}: "
    )
    parity = f"loss parity |diff| {chk['abs_diff']:.1e}"
    if "median" not in res:
        return head + parity + (" (ok)" if chk["ok"] else f" FAILED (tolerance {chk['tolerance']:g})")
    o, h = res["median"]["ours"], res["median"]["hf"]
    return head + (
        f"ours {o['tokens_per_s']:,.0f} tok/s (MFU {pct(o['mfu'])}), HF {h['tokens_per_s']:,.0f} tok/s "
        f"(MFU {pct(h['mfu'])}), ours/HF {res['ratio_tokens_per_s']:.3f}x (median of {c['runs']} runs); {parity}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gpt2", choices=list(PRESETS))
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16, help="micro-batch")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps per run, before the timed ones")
    ap.add_argument("--runs", type=int, default=3, help="runs of each model, interleaved; medians reported")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models")
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 autocast on CUDA, fp32 on CPU")
    ap.add_argument("--peak-tflops", type=float, help="peak TFLOP/s for MFU (default: from the GPU's name, bf16)")
    ap.add_argument("--hf-activation", default="gelu_new", choices=["gelu_new", "gelu_pytorch_tanh"])
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--check", action="store_true", help="only the loss-parity check, no timing")
    ap.add_argument("--out", default="bench-train.json")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.runs < 1 or args.warmup < 0:
        ap.error("--steps and --runs must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    res = bench(args)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    print(summary(res))
    return 0 if res["check"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
