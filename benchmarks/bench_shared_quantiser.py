"""Does one quantiser trained across all shards change recall, against each shard training its own?

Issue 18 leaves it open: each shard's search job trains its IVF index on a sample of its own shard
(``augbench.search.build_index``), so the shards' indexes have different lists. The alternative is one
index trained once on a sample across the shards, copied empty into each shard's job and filled
there. This measures both on bench_search's clustered mixture: ``ROWS`` 768-d unit vectors in
``SHARDS`` shards, 1,000 queries from the same mixture, each shard's top k (k = 100) merged by score,
and recall@k against the exact merge. The index is the one a shard of that size gets
(``augbench.search.choose_factory`` at the workflow's default index memory), probed as the
workflow probes it; shards must be above its exact limit (200,000 rows), hence 2.5M rows in 10.

    python benchmarks/run.py --only quantiser
"""

from __future__ import annotations

import os
import time

import bench_search
import numpy as np

ROWS = int(os.environ.get("AUGBENCH_QUANTISER_ROWS", 2_500_000))
SHARDS = int(os.environ.get("AUGBENCH_QUANTISER_SHARDS", 10))
K = 100


def merged_top_k(results: list[tuple[np.ndarray, np.ndarray]], offsets: list[int]) -> np.ndarray:
    """Each query's k best pool rows over the shards' (scores, local ids)."""
    scores = np.concatenate([found_scores for found_scores, _ in results], axis=1)
    rows = np.concatenate([np.where(ids >= 0, ids + offset, -1) for (_, ids), offset in zip(results, offsets)], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(rows, order, axis=1)


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, exact)]))


def measure() -> dict:
    import faiss

    from augbench.search import build_index, choose_factory, default_nprobe, search_index, training_sample_size

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((bench_search.CLUSTERS, bench_search.DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    pool = bench_search.mixture(rng, centres, ROWS)
    queries = bench_search.mixture(rng, centres, bench_search.QUERIES)
    shards = np.array_split(np.arange(ROWS), SHARDS)
    offsets = [int(rows[0]) for rows in shards]
    factory = choose_factory(max(len(rows) for rows in shards), bench_search.DIM, 16e9)
    if not factory.startswith("IVF"):
        raise ValueError(f"shards of {ROWS // SHARDS} rows are searched exactly ({factory}): nothing to compare")
    nlist = faiss.extract_index_ivf(faiss.index_factory(bench_search.DIM, factory)).nlist

    exact = merged_top_k([search_index(build_index(pool, rows, "Flat"), queries, K) for rows in shards], offsets)

    started = time.perf_counter()
    own = [search_index(build_index(pool, rows, factory), queries, K) for rows in shards]
    own_seconds = time.perf_counter() - started

    started = time.perf_counter()
    # One sample across every shard, as large as a shard's own training sample.
    size = training_sample_size(ROWS, nlist)
    shared = faiss.index_factory(bench_search.DIM, factory, faiss.METRIC_INNER_PRODUCT)
    shared.train(pool[np.sort(rng.choice(ROWS, size=size, replace=False))])
    found = []
    for rows in shards:
        index = faiss.clone_index(shared)
        index.add(pool[rows])
        faiss.extract_index_ivf(index).nprobe = default_nprobe(factory)
        found.append(search_index(index, queries, K))
    shared_seconds = time.perf_counter() - started

    return {
        "quantiser_pool_rows": ROWS,
        "quantiser_shards": SHARDS,
        "quantiser_index": factory,
        "quantiser_recall_own_per_shard": round(recall(merged_top_k(own, offsets), exact), 4),
        "quantiser_recall_shared": round(recall(merged_top_k(found, offsets), exact), 4),
        "quantiser_own_seconds": round(own_seconds, 1),
        "quantiser_shared_seconds": round(shared_seconds, 1),
    }
