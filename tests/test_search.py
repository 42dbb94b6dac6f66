import numpy as np
import pytest

from augbench import search
from augbench.search import build_index, search_index


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_automatic_index_is_exact_for_small_pools_and_ivf_for_large_ones():
    from augbench.search import choose_factory

    assert choose_factory(10_000, 768, 16e9) == "Flat"
    assert choose_factory(1_000_000, 768, 16e9) == "IVF1024,SQfp16"  # 1.5 GB of half-precision vectors fit
    factory = choose_factory(100_000_000, 768, 16e9)  # 300 GB do not: product-quantised codes
    assert factory.startswith("IVF8192,PQ") and 768 % int(factory.split("PQ")[1]) == 0


def test_ivf_index_finds_nearly_all_exact_neighbours_on_clustered_embeddings():
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(50, 32)))
    pool = _unit(centres[rng.integers(0, 50, 20_000)] + 0.15 * rng.normal(size=(20_000, 32)))
    queries = _unit(centres[rng.integers(0, 50, 100)] + 0.15 * rng.normal(size=(100, 32)))
    _, exact = build_index(pool).search(queries, 20)
    # Every second row only, as when identical images are left out: ids are positions among those rows.
    rows = np.arange(0, 20_000, 2)
    _, found = build_index(pool, rows, factory="IVF128,Flat").search(queries, 20)
    _, expected = build_index(pool, rows).search(queries, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(found, expected)])
    assert recall >= 0.95
    assert exact.shape == (100, 20) and found.max() < len(rows)


# faiss on the GPU (a GPU build of faiss, a GPU in the job), played here by a stand-in with
# faiss-gpu's limit: it returns at most GPU_MAX_K neighbours a query.


class _GpuStandIn:
    def __init__(self, index):
        self.index, self.ntotal, self.searches = index, index.ntotal, 0

    def search(self, queries, k):
        if k > search.GPU_MAX_K:
            raise RuntimeError(f"k = {k} is above the GPU's {search.GPU_MAX_K}")
        self.searches += 1
        return self.index.search(queries, k)


@pytest.fixture
def one_gpu(tmp_path, monkeypatch):
    driver = tmp_path / "nvidia-version"
    driver.write_text("NVRM version: stand-in")
    monkeypatch.setattr(search, "NVIDIA_DRIVER", driver)
    monkeypatch.setattr(search.faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(search.faiss, "index_cpu_to_all_gpus", _GpuStandIn, raising=False)


def test_a_gpu_index_searches_on_the_gpu_and_deeper_than_it_can_on_the_cpu(one_gpu):
    rng = np.random.default_rng(0)
    pool = _unit(rng.normal(size=(3000, 8)))
    queries = _unit(rng.normal(size=(2, 8)))
    index = build_index(pool)
    assert isinstance(index, _GpuStandIn)
    _, shallow = search_index(index, queries, 10)
    assert index.searches == 1
    # 2,500 neighbours a query: a search deeper than the GPU returns, answered by the CPU copy
    _, deep = search_index(index, queries, 2500)
    assert index.searches == 1 and deep.shape == (2, 2500)
    np.testing.assert_array_equal(deep, index.cpu_index.search(queries, 2500)[1])
    np.testing.assert_array_equal(shallow, index.cpu_index.search(queries, 10)[1])


def test_faiss_is_not_asked_for_gpus_on_a_node_without_the_driver(one_gpu, tmp_path, monkeypatch):
    pool = _unit(np.random.default_rng(0).normal(size=(100, 8)))
    monkeypatch.setattr(search, "NVIDIA_DRIVER", tmp_path / "absent")

    def abort():  # what an older faiss-gpu does on a node without the driver
        raise AssertionError("faiss asked CUDA for GPUs")

    monkeypatch.setattr(search.faiss, "get_num_gpus", abort, raising=False)
    assert not isinstance(build_index(pool), _GpuStandIn)


def test_an_index_the_gpu_cannot_hold_stays_on_the_cpu(one_gpu, monkeypatch):
    def refuse(index):
        raise RuntimeError("this PQ code size is not implemented on the GPU")

    monkeypatch.setattr(search.faiss, "index_cpu_to_all_gpus", refuse, raising=False)
    pool = _unit(np.random.default_rng(0).normal(size=(100, 8)))
    index = build_index(pool)
    assert index.search(pool[:1], 1)[1][0, 0] == 0
