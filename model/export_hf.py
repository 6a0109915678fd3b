"""Export a training checkpoint as a Hugging Face GPT2LMHeadModel directory: `python -m model.export_hf CKPT DIR`.

The directory loads with `GPT2LMHeadModel.from_pretrained(DIR)` / `AutoTokenizer.from_pretrained(DIR)` and runs
under lm-eval's `hf` model. See docs/EXPORT.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from model.gpt import GPT2_VOCAB
from model.train import read_checkpoint, strip_wrappers
from pipeline.core.errors import PipelineError

if TYPE_CHECKING:
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

EOT = GPT2_VOCAB - 1  # <|endoftext|>: GPT-2's only special token, used as bos, eos and (for batching) pad
# nn.Linear stores (out, in); HF's Conv1D stores (in, out).
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# GPT-2's BPE files as OpenAI published them; tiktoken caches each under sha1(url) and pins its sha256.
BPE_FILES = {
    "vocab.json": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    ),
    "merges.txt": (
        "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
        "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    ),
}
GPT2_ENCODINGS = ("gpt2", "r50k_base")  # the same ranks under two names
PROBES = ("hello world", "  Ünïcødé — 日本語 🤖\n\n\tend", "it's 3.14159 DON'T", "a<|endoftext|>b")


def _zero_biases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # bias=False models: a zero bias is exactly no bias (LayerNorm: y + 0; Linear: xW^T + 0), and
    # GPT2LMHeadModel always has one. Weights are still (out, in) here, so shape[0] is the bias length.
    out = dict(state)
    for key, w in state.items():
        if key.startswith(("transformer.h.", "transformer.ln_f.")) and key.endswith(".weight"):
            out.setdefault(key.removesuffix("weight") + "bias", torch.zeros(w.shape[0], dtype=w.dtype))
    return out


def to_hf_state_dict(state: dict[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    state = _zero_biases(strip_wrappers(state))
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.h\.(\d+)\.", k))}
    if layers != set(range(n_layer)):
        raise PipelineError(f"checkpoint has blocks {sorted(layers)} but its gpt_config says n_layer={n_layer}")
    wte = state.get("transformer.wte.weight")
    if wte is None:
        raise PipelineError("checkpoint has no transformer.wte.weight: not a model.gpt GPT")
    if wte.shape[0] < GPT2_VOCAB:
        raise PipelineError(f"vocabulary of {wte.shape[0]} rows is smaller than GPT-2's {GPT2_VOCAB}")
    lm_head = state.get("lm_head.weight", wte)
    if lm_head.shape != wte.shape or not torch.equal(lm_head, wte):
        raise PipelineError("lm_head.weight differs from transformer.wte.weight: GPT-2 ties them")
    out = {}
    for key, value in state.items():
        if key.endswith(CONV1D):
            value = value.t()
        out[key] = value.contiguous()
    # Rows 50257.. are padding for faster matmuls, never an input or a target; HF's GPT-2 has exactly 50257.
    out["transformer.wte.weight"] = out["lm_head.weight"] = wte[:GPT2_VOCAB].clone()
    return out


def hf_config(gpt_config: dict[str, Any]) -> GPT2Config:
    from transformers import GPT2Config

    older: dict[str, Any] = {"n_ctx": gpt_config["block_size"]}  # what older transformers read for the context
    return GPT2Config(
        vocab_size=GPT2_VOCAB,
        n_positions=gpt_config["block_size"],
        **older,
        n_embd=gpt_config["n_embd"],
        n_layer=gpt_config["n_layer"],
        n_head=gpt_config["n_head"],
        activation_function="gelu_new",  # the tanh approximation: model.gpt's F.gelu(approximate="tanh")
        resid_pdrop=gpt_config["dropout"],
        embd_pdrop=gpt_config["dropout"],
        attn_pdrop=gpt_config["dropout"],
        layer_norm_epsilon=1e-5,  # nn.LayerNorm's default, which model.gpt uses
        bos_token_id=EOT,
        eos_token_id=EOT,
        tie_word_embeddings=True,
    )


def build_model(ckpt: dict[str, Any], dtype: torch.dtype) -> GPT2LMHeadModel:
    from transformers import GPT2LMHeadModel

    gcfg = ckpt["gpt_config"]
    state = to_hf_state_dict(ckpt["model"], gcfg["n_layer"])
    # Not on the meta device: older transformers keep the causal mask as a non-persistent buffer it must build.
    model = GPT2LMHeadModel(hf_config(gcfg))
    try:
        model.load_state_dict(state, strict=True)  # copies into the tied parameter twice: same values
    except RuntimeError as e:
        raise PipelineError(f"checkpoint does not fit GPT2LMHeadModel: {' '.join(str(e).split())}") from None
    return cast(Any, model).to(dtype).eval()  # transformers' stubs type .to() for devices only


def generation_config(ckpt: dict[str, Any]) -> GenerationConfig:
    from transformers import GenerationConfig

    cfg = ckpt.get("config", {})
    # The trainer's own sampling settings; None there means "off", which HF spells top_k=0 / top_p=1.0.
    return GenerationConfig(
        bos_token_id=EOT,
        eos_token_id=EOT,
        pad_token_id=EOT,
        do_sample=True,
        temperature=cfg.get("temperature", 1.0),
        top_k=cfg.get("top_k") or 0,
        top_p=cfg.get("top_p") or 1.0,
    )


def _tiktoken_cached(url: str, sha256: str) -> bytes | None:
    # tiktoken's own cache lookup, without its download fallback.
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    cache = cache or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    path = Path(cache) / hashlib.sha1(url.encode()).hexdigest()
    data = path.read_bytes() if path.is_file() else None
    return data if data is not None and hashlib.sha256(data).hexdigest() == sha256 else None


def write_tokenizer(out: Path, encoding: str, block_size: int) -> str | None:
    """GPT-2's tokenizer files from tiktoken's cache; returns why not if they cannot be made offline."""
    if encoding not in GPT2_ENCODINGS:
        return f"the checkpoint was trained with tokenizer {encoding!r}, not GPT-2's"
    from pipeline.text.vocab import tokenizer

    try:
        enc = tokenizer(encoding)  # fills tiktoken's cache where it can download
    except PipelineError as e:
        return str(e)
    files = {name: _tiktoken_cached(url, sha) for name, (url, sha) in BPE_FILES.items()}
    if None in files.values():
        return "GPT-2's encoder.json/vocab.bpe are not in tiktoken's cache (see TIKTOKEN_CACHE_DIR)"
    for name, data in files.items():  # encoder.json is HF's vocab.json, vocab.bpe its merges.txt
        (out / name).write_bytes(cast(bytes, data))
    from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]  # exported lazily

    tok = GPT2TokenizerFast.from_pretrained(out, model_max_length=block_size)
    tok.save_pretrained(out)  # adds tokenizer.json and tokenizer_config.json
    # transformers 5 saves from_pretrained's own arguments as if they were the tokenizer's: drop them.
    config_path = out / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text())
    for key in ("is_local", "local_files_only"):
        tok_config.pop(key, None)
    config_path.write_text(json.dumps(tok_config, indent=2, sort_keys=True) + "\n")
    for text in PROBES:
        if tok.encode(text) != enc.encode(text, allowed_special={"<|endoftext|>"}):
            raise PipelineError(f"exported tokenizer disagrees with tiktoken {encoding} on {text!r}")
    return None


def last_eval(checkpoint: Path, step: int) -> dict[str, Any] | None:
    # model.train writes <out_dir>/metrics.jsonl beside <out_dir>/checkpoints/ckpt.pt
    metrics = checkpoint.resolve().parent.parent / "metrics.jsonl"
    if not metrics.is_file():
        return None
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    evals = [r for r in rows if r.get("kind") == "eval" and r.get("step", step + 1) <= step]
    return evals[-1] if evals else None


def model_card(ckpt: dict[str, Any], checkpoint: Path, n_params: int, dtype: str, tokenizer_note: str | None) -> str:
    g, c, step = ckpt["gpt_config"], ckpt.get("config", {}), ckpt.get("step", 0)
    world = len(ckpt.get("ranks") or [None])  # one rank_state per DDP rank, whichever mode ran them
    tokens = step * c.get("batch_size", 0) * c.get("grad_accum", 1) * g["block_size"] * world
    ev = last_eval(checkpoint, step)
    val = f"{ev['val_loss']:.4f} (step {ev['step']})" if ev else "not recorded beside the checkpoint"
    tok = "GPT-2's BPE, same ids as tiktoken `gpt2`" if tokenizer_note is None else f"not included: {tokenizer_note}"
    return f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [gpt2, openwebtext]
---

# GPT-2 ({c.get("model", "custom")}) trained on an OpenWebText replication

A GPT-2 language model trained from scratch by `model.train` and exported by `model.export_hf` as a
`GPT2LMHeadModel` ({n_params:,} parameters, {dtype}).

| | |
|---|---|
| checkpoint | `{checkpoint}` |
| step | {step} of {c.get("max_steps", "?")} (~{tokens:,} tokens) |
| model preset | `{c.get("model", "?")}`: n_layer={g["n_layer"]}, n_head={g["n_head"]}, n_embd={g["n_embd"]}, \
block_size={g["block_size"]}, dropout={g["dropout"]}, bias={g.get("bias", True)} |
| training data | `{c.get("data", "?")}` |
| optimizer | AdamW, lr {c.get("lr", "?")} -> {c.get("min_lr", "?")}, batch {c.get("batch_size", "?")} x \
{c.get("grad_accum", 1)} accumulation x {world} worker(s), seed {c.get("seed", "?")} |
| validation loss | {val} |
| tokenizer | {tok} |

The vocabulary is GPT-2's 50,257 tokens: training padded it to {g["vocab_size"]} rows, which were cropped
(those rows are never targets). Context length is {g["block_size"]} tokens.

## Load

```python
from transformers import AutoTokenizer, GPT2LMHeadModel

model = GPT2LMHeadModel.from_pretrained("<this dir>")
tokenizer = AutoTokenizer.from_pretrained("<this dir>")
ids = tokenizer("The", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=40)[0]))
```

## Evaluate

```
lm_eval --model hf --model_args pretrained=<this dir> --tasks lambada_openai,hellaswag --device cuda:0 --batch_size 16
```
"""


def prepare_target(out_dir: Path, checkpoint: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"{out_dir} exists and is not a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise PipelineError(f"{out_dir} exists and is not empty; pass --overwrite to replace it")
    # --overwrite deletes the whole directory: only ever an earlier export, never (say) the training run itself.
    if not (out_dir / "config.json").is_file() or checkpoint.resolve().is_relative_to(out_dir.resolve()):
        raise PipelineError(f"{out_dir} is not an earlier export (no config.json, or it holds the checkpoint)")


def publish(tmp: Path, out_dir: Path) -> None:
    # rename(2) replaces an empty directory; a non-empty one (--overwrite) is moved aside first, so out_dir is
    # at every moment either absent, the old export or the complete new one.
    old = None
    if out_dir.is_dir() and any(out_dir.iterdir()):
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old)


def export(checkpoint: Path, out_dir: Path, overwrite: bool = False, dtype: str = "float32") -> Path:
    checkpoint, out_dir = Path(checkpoint), Path(out_dir).absolute()  # absolute: "." has no name to sibling
    prepare_target(out_dir, checkpoint, overwrite)
    ckpt = read_checkpoint(checkpoint)
    model = build_model(ckpt, DTYPES[dtype])
    model.generation_config = generation_config(ckpt)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        model.save_pretrained(tmp, safe_serialization=True)
        note = write_tokenizer(tmp, ckpt.get("config", {}).get("tokenizer", "gpt2"), ckpt["gpt_config"]["block_size"])
        n_params = sum(p.numel() for p in model.parameters())
        (tmp / "README.md").write_text(model_card(ckpt, checkpoint, n_params, dtype, note))
        prepare_target(out_dir, checkpoint, overwrite)  # again: another writer may have got there meanwhile
        publish(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m model.export_hf", description=__doc__)
    ap.add_argument("checkpoint", type=Path, help="a model.train checkpoint (<out_dir>/checkpoints/ckpt.pt)")
    ap.add_argument("out_dir", type=Path, help="directory to write the Hugging Face model into")
    ap.add_argument("--overwrite", action="store_true", help="replace an earlier export in out_dir")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="weights' dtype (default float32)")
    args = ap.parse_args(argv)
    try:
        out = export(args.checkpoint, args.out_dir, args.overwrite, args.dtype)
    except PipelineError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokenizer = "with tokenizer" if (out / "tokenizer.json").is_file() else "without tokenizer (see README.md)"
    print(f"export_hf: wrote {out} ({tokenizer})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
