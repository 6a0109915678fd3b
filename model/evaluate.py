"""Evaluate a checkpoint: loss and perplexity over a whole split, and LAMBADA last-word accuracy.

    python -m model.evaluate runs/train/checkpoints/ckpt.pt --data runs/demo/tokens --lambada lambada_test.jsonl

LAMBADA (Paperno et al. 2016) asks for the last word of a passage. The file is one JSON object a line with a `text`
field (the format of EleutherAI's `lambada_openai`), or plain text with one passage a line. The target is the last
space-separated word; a passage counts as correct when greedy decoding gives every token of " <word>" (as
lm-evaluation-harness scores `lambada_openai`: no stop-word filter, unlike the GPT-2 paper's own figure).
Reference figures for GPT-2 124M: docs/TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from model.data import TokenData
from model.gpt import GPT, GPTConfig
from pipeline.core.errors import PipelineError
from pipeline.text.vocab import tokenizer


def load_model(checkpoint: str | Path, device: str = "cpu") -> tuple[GPT, dict[str, Any]]:
    from model.train import read_checkpoint, strip_wrappers

    state = read_checkpoint(Path(checkpoint))
    model = GPT(GPTConfig(**state["gpt_config"]))
    model.load_state_dict(strip_wrappers(state["model"]))
    return model.to(device).eval(), state


def _autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else nullcontext()


@torch.no_grad()
def split_loss(
    model: GPT,
    data: str | Path,
    split: str = "val",
    batch_size: int = 8,
    max_batches: int | None = None,
    tokenizer_name: str = "gpt2",
) -> dict[str, Any]:
    """Mean next-token loss over the split read once in order (every window of block_size tokens). The shards are
    re-hashed and checked against the model's tokenizer (name and vocabulary hash) first."""
    from pipeline.text.vocab import vocab_sha256

    device = next(model.parameters()).device.type
    d = TokenData(data, split, tokenizer_name, vocab_sha256(tokenizer_name))
    T = model.config.block_size
    left = int(sum((d.lengths - 1) // T))  # windows of T+1 tokens, T apart, in every shard
    total, windows, batches = 0.0, 0, 0
    while left and (max_batches is None or batches < max_batches):
        b = min(batch_size, left)
        x, y = d.next_batch(b, T)
        with _autocast(device):
            _, loss = model(x.to(device), y.to(device))
        total += loss.item() * b  # weighted: the last batch may be smaller
        windows, left, batches = windows + b, left - b, batches + 1
    mean = total / max(windows, 1)
    return {"split": split, "loss": mean, "ppl": math.exp(min(mean, 50)), "tokens": windows * T}


def read_passages(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"{p}: cannot read ({e})") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if p.suffix == ".jsonl":
            try:
                text = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise PipelineError(f"{p}:{i}: expected a JSON object with a 'text' field ({e})") from None
        else:
            text = line
        if " " not in text.strip():
            raise PipelineError(f"{p}:{i}: a passage needs a context and a last word")
        out.append(text.strip())
    return out


@torch.no_grad()
def lambada(model: GPT, path: str | Path, tokenizer_name: str = "gpt2", limit: int | None = None) -> dict[str, Any]:
    enc = tokenizer(tokenizer_name)
    device = next(model.parameters()).device.type
    T = model.config.block_size
    correct, nll_sum, n = 0, 0.0, 0
    for text in read_passages(path)[:limit]:
        context, word = text.rsplit(" ", 1)
        ctx, tgt = enc.encode_ordinary(context), enc.encode_ordinary(" " + word)
        ids = (ctx + tgt)[-(T + 1) :]  # the passage's end, if longer than the context window
        x = torch.tensor([ids[:-1]], device=device)  # (1, L)
        y = torch.full_like(x, -1)  # loss only on the target word's tokens
        y[0, -len(tgt) :] = torch.tensor(tgt, device=device)
        with _autocast(device):
            logits, loss = model(x, y)
        greedy = logits[0, -len(tgt) :, : enc.n_vocab].argmax(-1).tolist()
        correct += greedy == tgt
        nll_sum += loss.item() * len(tgt)  # the word's log-likelihood, summed over its tokens
        n += 1
    if not n:
        raise PipelineError(f"{path}: no passages")
    return {"passages": n, "accuracy": correct / n, "ppl": math.exp(nll_sum / n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", help="a tokenize output or corpus manifest: loss and perplexity over its val split")
    ap.add_argument("--split", default="val")
    ap.add_argument("--max-batches", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lambada", help="LAMBADA-format file (.jsonl with 'text', or one passage a line)")
    ap.add_argument("--limit", type=int, default=None, help="first N passages only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    try:
        model, state = load_model(args.checkpoint, args.device)
        result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "step": state["step"]}
        tok = state.get("config", {}).get("tokenizer", "gpt2")
        if args.data:
            result["loss"] = split_loss(model, args.data, args.split, args.batch_size, args.max_batches, tok)
        if args.lambada:
            result["lambada"] = lambada(model, args.lambada, tok, args.limit)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
