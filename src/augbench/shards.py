"""Splitting work into shards, so that 1,000 classes or a million images are a few jobs."""

from __future__ import annotations

import numpy as np


def shard_block(n_items: int, shard: int, shards: int) -> np.ndarray:
    """The item indices of one shard: contiguous, near-equal blocks that cover 0..n_items-1 once."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return np.array_split(np.arange(n_items), shards)[shard]
