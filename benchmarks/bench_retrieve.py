"""Retrieval at LAION-subset scale, the pool one shard: its wall time and peak memory.

``python -m augbench.sharded_retrieval search`` and ``merge``, as the workflow runs them for a
pool of one shard (rounds until the merge is done; bench_sharded runs them), over 1,000,000 pool
image embeddings (768-d, float32, memory-mapped from disk; the mixture of bench_search) for
1,000 class-prompt queries, 500 images per class, so each query's first search depth is
1,000 (overfetch 2). Module start-up (importing faiss, pandas) is included; the time is the
jobs' together, the peak the largest job's maximum resident memory, as GNU time reports it.
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path

import bench_search
import bench_sharded
import numpy as np
import pandas as pd

PER_CLASS = 500


def write_pool(folder: Path) -> dict[str, str]:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((bench_search.CLUSTERS, bench_search.DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    embeddings = np.lib.format.open_memmap(
        folder / "pool.npy", mode="w+", dtype=np.float32, shape=(bench_search.N, bench_search.DIM)
    )
    for start in range(0, bench_search.N, 100_000):
        embeddings[start : start + 100_000] = bench_search.mixture(rng, centres, 100_000)
    embeddings.flush()
    del embeddings
    np.save(folder / "prompts.npy", centres)  # one query per class, near its cluster
    classes = [f"class{i}" for i in range(bench_search.CLUSTERS)]
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    pd.DataFrame({"path": [f"pool/{i}.jpg" for i in range(bench_search.N)], "label": -1}).to_csv(
        folder / "pool.csv", index=False
    )
    pd.DataFrame({"path": [f"real/{i}.jpg" for i in range(len(classes))], "label": range(len(classes))}).to_csv(
        folder / "subset.csv", index=False
    )
    return {name: str(folder / name) for name in ("pool.npy", "prompts.npy", "classes.txt", "pool.csv", "subset.csv")}


def measure() -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("AUGBENCH_BENCH_TMP")) as tmp:
        files = write_pool(Path(tmp))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = bench_sharded.retrieve(
            Path(tmp),
            ["--pool", files["pool.csv"]],
            "auto",
            shards=1,
            per_class=PER_CLASS,
            shard_options=lambda shard: ["--pool-embeddings", files["pool.npy"]],
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    seconds = sum(result["searches"]) + sum(result["merges"])
    cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    added, peak_mb = result["added"], result["peak"]
    print(
        f"   {len(added):,} retrieved in {seconds:.1f} s ({cpu_seconds:.1f} s CPU; search "
        f"{sum(result['searches']):.1f} s, merge {sum(result['merges']):.1f} s, {result['rounds']} round(s)), "
        f"peak {peak_mb:,.0f} MB"
    )
    return {
        "retrieve_1m_seconds": seconds,
        "retrieve_1m_cpu_seconds": cpu_seconds,
        "retrieve_1m_peak_rss_mb": peak_mb,
        "retrieve_1m_added": len(added),
        "retrieve_1m_rounds": result["rounds"],
    }
