"""Inner-product indexes over embeddings: exact for small pools, faiss IVF for large ones.

``choose_factory`` picks a faiss factory string from the pool's size and a memory
budget: exact (``Flat``) up to ``EXACT_UP_TO`` vectors; above, an inverted file with
about sqrt(n) lists holding the vectors in half precision (``IVF<nlist>,SQfp16``: half
the memory of float32, and on 1M clustered embeddings recall@100 0.9996 against 0.99999,
searching twice as fast), or with product-quantised codes
(``IVF<nlist>,PQ<m>``) when the vectors themselves do not fit the budget. A config can
name any faiss factory string instead. Vectors are added in blocks, so a memory-mapped
pool is never read whole.

With a GPU build of faiss (faiss-gpu-cu12, as the cluster's envs/augbench.yaml installs)
and a GPU in the job, the index is trained and filled on the CPU and then searched on the
GPUs. faiss's GPU search returns at most ``GPU_MAX_K`` neighbours (and visits at most that
many lists) per query, so ``search_index`` answers deeper searches from the CPU copy, which stays
in memory; an index the GPU cannot hold (some PQ code sizes) stays on the CPU.
"""

from __future__ import annotations

import logging
import mmap
import re
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

EXACT_UP_TO = 200_000
TRAINING_POINTS_PER_LIST = 40  # faiss warns below 39 per centroid
BLOCK = 1 << 16
GPU_MAX_K = 2048  # faiss-gpu's largest k and nprobe (GPU_MAX_SELECTION_K)
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # present where the NVIDIA kernel driver is loaded


def release_pages(array: np.ndarray) -> None:
    """Let the OS take back the pages of a memory-mapped array read so far.

    Pages of a mapped file that a process has read count as its memory until it exits;
    reading a pool of millions of embeddings block by block would otherwise hold all of
    it. They stay in the page cache, so reading them again is cheap.
    """
    mapping = getattr(array, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise"):
        mapping.madvise(mmap.MADV_DONTNEED)


def choose_factory(n: int, dim: int, memory_bytes: float) -> str:
    if n <= EXACT_UP_TO:
        return "Flat"
    nlist = 2 ** int(round(np.log2(np.sqrt(n))))
    if n * dim * 2 <= 0.5 * memory_bytes:  # room left for the queries and the search
        return f"IVF{nlist},SQfp16"
    # The largest code that fits, in bytes per vector: a divisor of the dimension.
    budget = max(1, int(0.5 * memory_bytes / n))
    m = max(m for m in range(1, min(dim, budget, 128) + 1) if dim % m == 0)
    return f"IVF{nlist},PQ{m}"


def default_nprobe(factory: str) -> int:
    """Lists visited per query: about 1% of them, so a search reads about 1% of the pool
    (benchmarks/README.md: recall@100 and speed on 1M clustered embeddings), but at least
    8, as a query's neighbours spread over several lists. Where recall matters more than
    time, a method's ``nprobe`` raises it."""
    match = re.match(r"IVF(\d+)", factory)
    if not match:
        return 1
    nlist = int(match.group(1))
    return min(nlist, max(8, round(nlist / 100)))


def training_sample_size(rows: int, lists: int) -> int:
    """The vectors an index of ``lists`` inverted lists is trained on: enough for k-means per list,
    at most the rows there are."""
    return min(rows, max(TRAINING_POINTS_PER_LIST * lists, 10_000))


def build_index(
    vectors: np.ndarray,
    rows: np.ndarray | None = None,
    factory: str = "auto",
    memory_bytes: float = 8e9,
    nprobe: int | None = None,
    seed: int = 0,
) -> faiss.Index:
    """An inner-product index over ``vectors[rows]`` (all rows by default); index ids are positions in ``rows``."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
    dim = vectors.shape[1]
    if factory == "auto":
        factory = choose_factory(len(rows), dim, memory_bytes)
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        nlist = faiss.extract_index_ivf(index).nlist if "IVF" in factory else 256
        size = training_sample_size(len(rows), nlist)
        sample = np.sort(np.random.default_rng(seed).choice(len(rows), size=size, replace=False))
        index.train(np.ascontiguousarray(vectors[rows[sample]], dtype=np.float32))
    for start in range(0, len(rows), BLOCK):
        index.add(np.ascontiguousarray(vectors[rows[start : start + BLOCK]], dtype=np.float32))
        release_pages(vectors)
    if "IVF" in factory:
        faiss.extract_index_ivf(index).nprobe = nprobe or default_nprobe(factory)
    log.info("index %s over %d vectors", factory, index.ntotal)
    probes = faiss.extract_index_ivf(index).nprobe if "IVF" in factory else 0
    if gpu_count() == 0 or probes > GPU_MAX_K:
        return index
    try:
        on_gpus = faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as error:  # e.g. a PQ code size the GPU kernels lack
        log.warning("index %s stays on the CPU: %s", factory, error)
        return index
    on_gpus.cpu_index = index  # for searches deeper than the GPU's GPU_MAX_K (see search_index)
    log.info("index %s searched on %d GPU(s)", factory, gpu_count())
    return on_gpus


def gpu_count() -> int:
    """The GPUs faiss can search on: none with faiss-cpu, nor on a node without the NVIDIA driver
    (asking CUDA there aborts some faiss-gpu versions instead of answering 0)."""
    if not NVIDIA_DRIVER.exists():
        return 0
    return getattr(faiss, "get_num_gpus", lambda: 0)()


def search_index(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``index.search``, from the CPU copy of an index on the GPUs where k is deeper than they search."""
    if k > GPU_MAX_K and hasattr(index, "cpu_index"):
        index = index.cpu_index
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
