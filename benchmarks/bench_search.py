"""The index retrieval would choose for 1M CLIP-like embeddings, against exact search.

1,000,000 unit vectors of 768 dimensions from a mixture of 1,000 clusters (CLIP
embeddings are clustered; uniform random vectors are not a fair test: every neighbour
is about as far as any other), each about 0.8 cosine from its cluster's centre; 1,000
queries from the same mixture; k = 100. Recall@100 is the share of the exact top 100
that the index finds.
"""

from __future__ import annotations

import time

import numpy as np

N, DIM, CLUSTERS, QUERIES, K = 1_000_000, 768, 1_000, 1_000, 100
SPREAD = 0.75  # noise norm relative to the centre: cosine to the centre 1 / sqrt(1 + 0.75^2) = 0.8


def mixture(rng: np.random.Generator, centres: np.ndarray, count: int) -> np.ndarray:
    out = np.empty((count, centres.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        noise = rng.standard_normal((n, centres.shape[1]), dtype=np.float32) * (SPREAD / np.sqrt(centres.shape[1]))
        block = centres[rng.integers(0, len(centres), n)] + noise
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def measure() -> dict:
    from augbench.search import build_index, choose_factory

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLUSTERS, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    pool = mixture(rng, centres, N)
    queries = mixture(rng, centres, QUERIES)
    factory = choose_factory(N, DIM, 16e9)  # the workflow's default budget (pool.index_memory_gb)

    start = time.perf_counter()
    exact = build_index(pool, factory="Flat")
    _, truth = exact.search(queries, K)
    flat_seconds = time.perf_counter() - start
    del exact

    start = time.perf_counter()
    index = build_index(pool, factory=factory)
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    _, found = index.search(queries, K)
    search_seconds = time.perf_counter() - start
    recall = float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(found, truth)]))
    print(f"   {factory}: build {build_seconds:.1f} s, search {search_seconds:.2f} s; flat {flat_seconds:.1f} s")
    return {
        "search_index": factory,
        "search_recall_at_100": recall,
        # Flat search needs no build: its time is adding the vectors and searching.
        "search_speedup_vs_flat": flat_seconds / search_seconds,
        "search_seconds": search_seconds,
        "search_build_seconds": build_seconds,
        "search_flat_seconds": flat_seconds,
    }
