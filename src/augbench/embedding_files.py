"""The ``.npy`` files embeddings are kept in: float32 rows in the order of their manifest.

A large pool is embedded by several jobs, a block of rows each; ``merge_parts`` joins
the blocks chunk by chunk into a memory-mapped file, so a pool's embeddings never have
to fit in memory.
"""

from __future__ import annotations

import numpy as np

from augbench.files import atomic_path


def save_embeddings(out: str, features: np.ndarray) -> None:
    """Write embeddings as a float32 ``.npy``, whole or not at all."""
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, features.astype(np.float32))


def merge_parts(parts: list[str], out: str) -> int:
    """Concatenate row blocks of embeddings in the order given; return the number of rows."""
    arrays = [np.load(part, mmap_mode="r") for part in parts]
    widths = {array.shape[1] for array in arrays}
    if len(widths) != 1:
        raise ValueError(f"embedding parts {parts} differ in width: {sorted(widths)}")
    rows = sum(len(array) for array in arrays)
    with atomic_path(out) as tmp:
        merged = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, widths.pop()))
        start = 0
        for array in arrays:
            for chunk in range(0, len(array), 1 << 16):
                block = array[chunk : chunk + (1 << 16)]
                merged[start : start + len(block)] = block
                start += len(block)
        merged.flush()
        del merged
    return rows
