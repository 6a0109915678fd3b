"""Token shards for training: memory-mapped, checked against the model's tokenizer, sampled reproducibly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.core.dataset import Dataset
from pipeline.core.errors import PipelineError
from pipeline.core.stage import check_file
from pipeline.text.token_format import check_metadata, mmap_tokens, read_metadata
from pipeline.text.vocab import tokenizer as tokenizer_of


def token_files(data: str | Path, split: str) -> list[tuple[Path, dict[str, Any]]]:
    """A split's token shards with their recorded entries (sha256, bytes), from a `tokenize` output directory or a
    local corpus manifest (see pipeline/corpus/published.py: `download` makes a remote corpus local)."""
    p = Path(data)
    if p.suffix == ".json" or (p / "manifest.json").is_file():
        from pipeline.corpus.published import token_files as from_manifest

        return from_manifest(p, split)
    return Dataset(p).shard_entries(".arrow", subdir=split)


class TokenData:
    """All shards of one split (this rank's share). Two orders: `get_batch` draws windows uniformly over token
    positions (shards weighted by length) from a caller's RNG; `next_batch` reads them in order, shard after shard,
    from a cursor (`position`) that checkpoints save, so a resumed run reads on where it stopped."""

    def __init__(
        self,
        tokens_dir: str | Path,  # a tokenize output or a local manifest.json
        split: str,
        tokenizer: str = "gpt2",
        vocab_sha256: str | None = None,
        rank: int = 0,
        world_size: int = 1,
        verify: bool = True,
    ):
        files = token_files(tokens_dir, split)
        # Each DDP rank reads its own share of the shards (all of them when there are fewer shards than ranks).
        mine = files[rank::world_size] if len(files) >= world_size else files
        self.arrays: list[np.ndarray] = []
        eot = tokenizer_of(tokenizer).eot_token
        for f, entry in mine:
            if verify:  # a shard damaged since tokenize wrote it is refused by name, not trained on (~1 GB/s)
                check_file(f, entry["sha256"], entry["bytes"], hint="rerun tokenize, or download the corpus again")
            check_metadata(f, read_metadata(f), tokenizer, vocab_sha256, eot)
            arr = mmap_tokens(f)
            if len(arr):
                self.arrays.append(arr)
        self.lengths = np.array([len(a) for a in self.arrays], dtype=np.int64)
        if not len(self.arrays):
            raise PipelineError(f"{tokens_dir}: the {split} split has no tokens (raise tokenize.val_fraction?)")
        self.n_tokens = int(self.lengths.sum())
        self.position = {"shard": 0, "offset": 0, "epoch": 0}

    def next_batch(self, batch_size: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y: (B, T) int64: the next B windows in order. A window starts T tokens after the previous one (y's last
        token is the next x's first, as in nanoGPT's sequential reading); a shard's tail shorter than T+1 tokens is
        skipped; after the last shard the pass starts over (epoch + 1)."""
        if (self.lengths <= block_size).all():
            raise PipelineError(f"no shard holds more than block_size+1 = {block_size + 1} tokens; lower block_size")
        rows: list[np.ndarray] = []
        pos = self.position
        while len(rows) < batch_size:
            arr = self.arrays[pos["shard"]]
            if pos["offset"] + block_size + 1 > len(arr):
                nxt = pos["shard"] + 1
                pos = {"shard": nxt % len(self.arrays), "offset": 0, "epoch": pos["epoch"] + nxt // len(self.arrays)}
                continue
            rows.append(arr[pos["offset"] : pos["offset"] + block_size + 1].astype(np.int64))
            pos = pos | {"offset": pos["offset"] + block_size}
        self.position = pos
        buf = torch.from_numpy(np.stack(rows))  # (B, T+1)
        return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()

    def get_batch(
        self, batch_size: int, block_size: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x, y: (B, T) int64, y shifted by one. Shards shorter than a window are skipped."""
        usable = np.maximum(self.lengths - block_size - 1, 0)
        if usable.sum() == 0:
            raise PipelineError(f"no shard holds more than block_size+1 = {block_size + 1} tokens; lower block_size")
        starts = rng.integers(0, usable.sum(), size=batch_size)
        edges = np.cumsum(usable)
        shard = np.searchsorted(edges, starts, side="right")
        offset = starts - (edges[shard] - usable[shard])
        rows = [self.arrays[s][o : o + block_size + 1].astype(np.int64) for s, o in zip(shard, offset)]
        buf = torch.from_numpy(np.stack(rows))  # (B, T+1)
        return buf[:, :-1].contiguous(), buf[:, 1:].contiguous()
