import numpy as np
import pandas as pd
import pytest

from augbench import retrieve, search
from augbench.files import write_classes, write_manifest
from augbench.search import build_index


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_contested_image_goes_to_the_closer_class_and_is_used_once():
    # Row 2 is near both queries but nearer to class 0.
    pool = _unit([[1, 0.1], [0.1, 1], [1, 0.9], [1, 0.2], [0.2, 1]])
    queries = _unit([[1, 0], [0, 1]])
    chosen = retrieve.assign_nearest(build_index(pool), queries, quotas=[3, 2], overfetch=1.0)
    by_class = {c: sorted(r for cc, r, _ in chosen if cc == c) for c in (0, 1)}
    assert by_class == {0: [0, 2, 3], 1: [1, 4]}
    rows = [r for _, r, _ in chosen]
    assert len(rows) == len(set(rows))


def test_search_widens_until_every_quota_is_met():
    rng = np.random.default_rng(0)
    # Class 1's query is close to everything of class 0 too; a narrow first search leaves it short.
    pool = _unit(np.vstack([rng.normal([5, 0], 0.3, (30, 2)), rng.normal([0, 5], 0.3, (6, 2))]))
    queries = _unit([[1, 0], [1, 1]])
    chosen = retrieve.assign_nearest(build_index(pool), queries, quotas=[5, 5], overfetch=1.0)
    counts = np.bincount([c for c, _, _ in chosen], minlength=2)
    assert counts.tolist() == [5, 5]


def test_pool_too_small_names_the_class():
    pool = _unit([[1, 0], [0.9, 0.1], [0, 1]])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\]"):
        retrieve.assign_nearest(build_index(pool), _unit([[1, 0], [0, 1]]), quotas=[1, 3])


def test_retrieve_writes_a_manifest_with_pool_paths_and_labels(tmp_path):
    rng = np.random.default_rng(1)
    centres = _unit(rng.normal(size=(3, 8)))
    labels = np.repeat(np.arange(3), 10)
    embeddings = _unit(centres[labels] + 0.05 * rng.normal(size=(30, 8)))
    pool = pd.DataFrame({"path": [f"pool/{i}.png" for i in range(30)], "label": -1, "caption": "c"})
    write_manifest(tmp_path / "pool.csv", pool)
    np.save(tmp_path / "pool.npy", embeddings)
    np.save(tmp_path / "queries.npy", centres)
    subset = pd.DataFrame({"path": [f"s{i}" for i in range(6)], "label": [0, 0, 1, 1, 2, 2]})
    write_manifest(tmp_path / "subset.csv", subset)
    write_classes(tmp_path / "classes.txt", ["a", "b", "c"])
    added = retrieve.retrieve(
        str(tmp_path / "pool.csv"),
        str(tmp_path / "pool.npy"),
        str(tmp_path / "queries.npy"),
        str(tmp_path / "subset.csv"),
        str(tmp_path / "classes.txt"),
        str(tmp_path / "added.csv"),
    )
    assert added.label.value_counts().sort_index().tolist() == [2, 2, 2]
    # Every retrieved image really is of the class it is labelled with.
    assert (labels[added.pool_row] == added.label).all()
    assert added.path.tolist() == [f"pool/{r}.png" for r in added.pool_row]


def test_retrieve_rejects_embeddings_that_do_not_match_the_pool(tmp_path):
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": ["a", "b"], "label": -1}))
    np.save(tmp_path / "pool.npy", np.ones((3, 4), np.float32))
    np.save(tmp_path / "q.npy", np.ones((1, 4), np.float32))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["s"], "label": [0]}))
    write_classes(tmp_path / "classes.txt", ["a"])
    with pytest.raises(ValueError, match="has 3 rows but"):
        retrieve.retrieve(
            *(str(tmp_path / n) for n in ("pool.csv", "pool.npy", "q.npy", "subset.csv", "classes.txt", "o.csv"))
        )


def test_a_class_that_is_never_closest_still_gets_its_quota():
    rng = np.random.default_rng(2)
    pool = _unit(rng.normal([5, 0], 0.5, (20, 2)))
    queries = _unit([[1, 0], [1, 0.05]])
    chosen = retrieve.assign_nearest(build_index(pool), queries, quotas=[4, 4])
    assert np.bincount([c for c, _, _ in chosen], minlength=2).tolist() == [4, 4]
    assert len({r for _, r, _ in chosen}) == 8


def test_image_queries_label_what_they_find_and_share_the_quota():
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(2, 8)))
    pool = _unit(np.repeat(centres, 20, axis=0) + 0.1 * rng.normal(size=(40, 8)))
    # Two query images per class; each class wants 6 images, 3 per query image.
    queries = _unit(np.repeat(centres, 2, axis=0) + 0.05 * rng.normal(size=(4, 8)))
    query_labels = np.array([0, 0, 1, 1])
    index = build_index(pool)
    chosen = retrieve.assign_nearest(index, queries, [6, 6], overfetch=2.0, query_labels=query_labels)
    assert np.bincount([c for c, _, _ in chosen], minlength=2).tolist() == [6, 6]
    assert all((row < 20) == (label == 0) for label, row, _ in chosen)
    # Classes listed in a different order than their queries are still matched by label.
    swapped = retrieve.assign_nearest(index, queries[::-1], [6, 6], query_labels=query_labels[::-1])
    assert sorted(swapped) == sorted(chosen)


def test_a_class_with_a_quota_but_no_query_is_named():
    pool = _unit([[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have a quota but no query"):
        retrieve.assign_nearest(build_index(pool), _unit([[1, 0]]), [1, 1], query_labels=np.array([0]))


def test_cli_labels_image_queries_by_the_query_manifest(tmp_path):
    rng = np.random.default_rng(4)
    centres = _unit(rng.normal(size=(2, 8)))
    labels = np.repeat([0, 1], 10)
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": [f"p{i}" for i in range(20)], "label": -1}))
    np.save(tmp_path / "pool.npy", _unit(centres[labels] + 0.05 * rng.normal(size=(20, 8))))
    subset = pd.DataFrame({"path": ["a", "b", "c"], "label": [1, 0, 1]})
    write_manifest(tmp_path / "subset.csv", subset)
    np.save(tmp_path / "queries.npy", centres[subset.label])
    write_classes(tmp_path / "classes.txt", ["x", "y"])
    retrieve.main(
        ["--pool", str(tmp_path / "pool.csv"), "--pool-embeddings", str(tmp_path / "pool.npy"),
         "--queries", str(tmp_path / "queries.npy"), "--query-manifest", str(tmp_path / "subset.csv"),
         "--subset", str(tmp_path / "subset.csv"), "--classes", str(tmp_path / "classes.txt"),
         "--out", str(tmp_path / "added.csv")]
    )  # fmt: skip
    added = pd.read_csv(tmp_path / "added.csv")
    assert sorted(added.label) == [0, 1, 1]
    assert (labels[added.pool_row] == added.label).all()


def test_identical_pool_images_are_added_once(tmp_path):
    # The pool repeats the image nearest to class 0 three times (as web pools repeat pictures).
    embeddings = _unit([[1, 0.01], [1, 0.01], [1, 0.01], [1, 0.3], [1, 0.5], [0, 1], [0.1, 1]])
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": [f"p{i}" for i in range(7)], "label": -1}))
    np.save(tmp_path / "pool.npy", embeddings)
    np.save(tmp_path / "queries.npy", _unit([[1, 0], [0, 1]]))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["a", "b", "c", "d"], "label": [0, 0, 1, 1]}))
    write_classes(tmp_path / "classes.txt", ["x", "y"])
    paths = [str(tmp_path / name) for name in ("pool.csv", "pool.npy", "queries.npy", "subset.csv", "classes.txt")]
    added = retrieve.retrieve(*paths, str(tmp_path / "added.csv"))
    assert sorted(added[added.label == 0].path) == ["p0", "p3"]  # one copy of the repeated image, then the next
    # Without de-duplication the copies fill the quota (the user asked for it).
    repeated = retrieve.retrieve(*paths, str(tmp_path / "added.csv"), retrieve.Retrieval(dedup=False))
    assert set(repeated[repeated.label == 0].path) < {"p0", "p1", "p2"}


def test_pictures_that_share_a_caption_are_not_duplicates(tmp_path):
    # Four different pictures, all captioned alike: the caption index sees one text four times.
    captions = _unit([[1, 0]] * 4 + [[0, 1]] * 4)
    images = _unit(np.random.default_rng(0).normal(size=(8, 4)))
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": [f"p{i}" for i in range(8)], "label": -1}))
    np.save(tmp_path / "captions.npy", captions)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "queries.npy", _unit([[1, 0], [0, 1]]))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": list("abcdef"), "label": [0, 0, 0, 1, 1, 1]}))
    write_classes(tmp_path / "classes.txt", ["x", "y"])
    paths = [str(tmp_path / name) for name in ("pool.csv", "captions.npy", "queries.npy", "subset.csv", "classes.txt")]
    added = retrieve.retrieve(*paths, str(tmp_path / "added.csv"), image_embeddings=str(tmp_path / "images.npy"))
    assert added.label.value_counts().sort_index().tolist() == [3, 3]
    assert set(added[added.label == 0].path) < {"p0", "p1", "p2", "p3"}


@pytest.mark.parametrize("dedup", [True, False])
def test_an_unreadable_pool_image_is_never_retrieved(tmp_path, dedup):
    # p0 could not be read (its image embedding is zero); its caption is the best match.
    images = _unit(np.random.default_rng(1).normal(size=(6, 4)))
    images[0] = 0.0
    captions = _unit([[1, 0]] * 3 + [[0, 1]] * 3)
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": [f"p{i}" for i in range(6)], "label": -1}))
    np.save(tmp_path / "captions.npy", captions)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "queries.npy", _unit([[1, 0], [0, 1]]))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": list("abcd"), "label": [0, 0, 1, 1]}))
    write_classes(tmp_path / "classes.txt", ["x", "y"])
    paths = [str(tmp_path / name) for name in ("pool.csv", "captions.npy", "queries.npy", "subset.csv", "classes.txt")]
    added = retrieve.retrieve(
        *paths,
        str(tmp_path / "added.csv"),
        retrieve.Retrieval(dedup=dedup),
        image_embeddings=str(tmp_path / "images.npy"),
    )
    assert "p0" not in set(added.path)
    assert sorted(added[added.label == 0].path) == ["p1", "p2"]


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
    shallow = retrieve.assign_nearest(index, queries, [5, 5])
    assert index.searches == 1
    # 2,500 images for one class: a search deeper than the GPU returns, answered by the CPU copy
    deep = retrieve.assign_nearest(index, queries, [2500, 0])
    assert len(deep) == 2500 and len({row for _, row, _ in deep}) == 2500
    assert deep == retrieve.assign_nearest(build_index(pool).cpu_index, queries, [2500, 0])
    assert shallow == retrieve.assign_nearest(index.cpu_index, queries, [5, 5])


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


def _caption_pool(tmp_path):
    """Captions say class x for rows 0-5, but the images of rows 0 and 1 show class y."""
    captions = _unit([[1, 0.01], [1, 0.02], [1, 0.1], [1, 0.12], [1, 0.2], [1, 0.22], [0, 1], [0.01, 1]])
    images = _unit([[0, 1], [0.05, 1], [1, 0.1], [1, 0.15], [1, 0.2], [1, 0.25], [0.1, 1], [0.15, 1]])
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": [f"p{i}" for i in range(8)], "label": -1}))
    np.save(tmp_path / "captions.npy", captions)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "prompts.npy", _unit([[1, 0], [0, 1]]))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": list("abcd"), "label": [0, 0, 1, 1]}))
    write_classes(tmp_path / "classes.txt", ["x", "y"])
    names = ("pool.csv", "captions.npy", "prompts.npy", "subset.csv", "classes.txt", "added.csv")
    return [str(tmp_path / name) for name in names]


def _retrieve_filtered(tmp_path, paths, **settings):
    return retrieve.retrieve(
        *paths,
        retrieve.Retrieval(overfetch=1.0, **settings),
        image_embeddings=str(tmp_path / "images.npy"),
        class_prompts=str(tmp_path / "prompts.npy"),
        quality_out=str(tmp_path / "quality.csv"),
    )


def test_clip_score_filter_passes_over_low_scores_and_still_fills_the_quotas(tmp_path):
    paths = _caption_pool(tmp_path)
    unfiltered = _retrieve_filtered(tmp_path, paths)
    assert sorted(unfiltered[unfiltered.label == 0].path) == ["p0", "p1"]  # the caption matches, the image does not
    assert pd.read_csv(tmp_path / "quality.csv").dropped.tolist() == [0, 0]
    filtered = _retrieve_filtered(tmp_path, paths, min_clip_score=0.5)
    assert sorted(filtered[filtered.label == 0].path) == ["p2", "p3"]  # the search widened past p0 and p1
    assert sorted(filtered[filtered.label == 1].path) == ["p6", "p7"]
    table = pd.read_csv(tmp_path / "quality.csv")
    assert table.dropped.tolist() == [2, 0] and table.kept.tolist() == [2, 2]
    assert table.min_clip_score.tolist() == [0.5, 0.5]


def test_per_class_thresholds_and_a_class_the_filtered_pool_cannot_fill(tmp_path):
    paths = _caption_pool(tmp_path)
    (tmp_path / "thresholds.tsv").write_text("x\t0.5\ny\t-1\n")
    added = _retrieve_filtered(tmp_path, paths, min_clip_score_file=str(tmp_path / "thresholds.tsv"))
    assert sorted(added[added.label == 0].path) == ["p2", "p3"]
    assert pd.read_csv(tmp_path / "quality.csv").min_clip_score.tolist() == [0.5, -1.0]
    # Of the images that look like y, only p0's reaches 0.9999: y stays one short of its two.
    (tmp_path / "thresholds.tsv").write_text("x\t0.5\ny\t0.9999\n")
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] \(y\) with images whose CLIP score reaches"):
        _retrieve_filtered(tmp_path, paths, min_clip_score_file=str(tmp_path / "thresholds.tsv"))


def test_a_refused_image_can_still_go_to_another_class():
    pool = _unit([[1, 0.1], [1, 0.3], [0.3, 1]])
    # Class 0 refuses row 0; class 1 takes it as its second image.
    chosen, refused = retrieve.assign_filtered(
        build_index(pool), _unit([[1, 0], [0, 1]]), [1, 2], accept=lambda row, label: (row, label) != (0, 0)
    )
    assert sorted((label, row) for label, row, _ in chosen) == [(0, 1), (1, 0), (1, 2)]
    assert refused == [1, 0]
