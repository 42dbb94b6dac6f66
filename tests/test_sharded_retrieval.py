import numpy as np
import pandas as pd
import pytest

from augbench import retrieve, sharded_retrieval
from augbench.copies import COLUMNS
from augbench.files import write_classes, write_manifest
from augbench.shards import shard_block


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """600 images of 4 classes in 16-d, with copies far apart (so in different shards), unreadable and
    excluded rows, and captions whose embeddings differ from the images'."""
    root = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(4, 16)))
    kind = rng.integers(0, 4, 600)
    images = _unit(centres[kind] + 0.6 * rng.normal(size=(600, 16)))
    images[500:520] = images[0:20]  # copies, in another shard at any split
    images[[7, 300]] = 0.0  # unreadable
    captions = _unit(centres[kind] + 0.9 * rng.normal(size=(600, 16)))
    write_manifest(root / "pool.csv", pd.DataFrame({"path": [f"p{i}" for i in range(600)], "label": -1}))
    np.save(root / "images.npy", images)
    np.save(root / "captions.npy", captions)
    np.save(root / "prompts.npy", centres)
    subset = pd.DataFrame({"path": [f"s{i}" for i in range(24)], "label": np.repeat(np.arange(4), 6)})
    write_manifest(root / "subset.csv", subset)
    np.save(root / "subset.npy", _unit(centres[subset.label] + 0.6 * rng.normal(size=(24, 16))))
    write_classes(root / "classes.txt", ["a", "b", "c", "d"])
    excluded = pd.DataFrame({"pool_row": [3, 450], "path": ["p3", "p450"], "reason": "safety tag"})
    excluded.reindex(columns=COLUMNS).to_csv(root / "excluded.csv", index=False)
    return root


def _split(root, name, shards):
    array = np.load(root / f"{name}.npy")
    paths = []
    for shard in range(shards):
        path = root / f"{name}_{shards}_{shard}.npy"
        np.save(path, array[shard_block(len(array), shard, shards)])
        paths.append(str(path))
    return paths


METHODS = {  # searched embeddings, queries, query manifest
    "text": ("images", "prompts.npy", None),
    "image": ("images", "subset.npy", "subset.csv"),
    "caption": ("captions", "prompts.npy", None),
}


def _sharded(root, method, shards, tmp_path, settings=None, parts=1):
    searched, queries, query_manifest = METHODS[method]
    return sharded_retrieval.retrieve_sharded(
        str(root / "pool.csv"),
        _split(root, searched, shards),
        str(root / queries),
        str(root / "subset.csv"),
        str(root / "classes.txt"),
        str(tmp_path / f"{method}{shards}"),
        settings or retrieve.Retrieval(per_class=40, overfetch=1.0),
        shard_image_embeddings=_split(root, "images", shards),
        shard_excluded=[str(root / "excluded.csv")] * shards,
        query_manifest=str(root / query_manifest) if query_manifest else None,
        parts=parts,
    )


@pytest.mark.parametrize("method", sorted(METHODS))
def test_exact_search_gives_the_same_manifest_at_1_3_and_8_shards(pool, method, tmp_path):
    manifests = [_sharded(pool, method, shards, tmp_path) for shards in (1, 3, 8)]
    for other in manifests[1:]:
        pd.testing.assert_frame_equal(manifests[0], other)
    added = manifests[0]
    assert added.label.value_counts().sort_index().tolist() == [40] * 4
    assert not set(added.pool_row) & {3, 7, 300, 450}  # excluded and unreadable rows
    images = np.load(pool / "images.npy")
    fingerprints = {np.round(images[row], 3).tobytes() for row in added.pool_row}
    assert len(fingerprints) == len(added)  # identical images once


def test_a_job_that_searches_its_shards_one_after_another_gives_the_same_manifest(pool, tmp_path):
    # pool.shards: 8 with pool.shards_per_job: 4, as two jobs of four shards each.
    one = _sharded(pool, "image", 1, tmp_path)
    pd.testing.assert_frame_equal(one, _sharded(pool, "image", 2, tmp_path / "blocks", parts=4))


def test_a_merge_that_needs_deeper_lists_has_shards_search_deeper_in_a_next_round(pool, tmp_path):
    # A first search of 10 per query (4 times that per shard) is far from the quota of 120: later rounds deepen it.
    settings = retrieve.Retrieval(per_class=120, overfetch=0.1)
    added = _sharded(pool, "text", 3, tmp_path, settings)
    assert (tmp_path / "text3" / "round1").exists()
    assert len(added) == 480 and added.pool_row.is_unique
    pd.testing.assert_frame_equal(added, _sharded(pool, "text", 1, tmp_path, settings))
    wide = retrieve.Retrieval(per_class=120, overfetch=4.0)  # round 0 deep enough at once
    pd.testing.assert_frame_equal(added, _sharded(pool, "text", 3, tmp_path / "wide", wide))


def test_the_merge_agrees_with_the_single_job_retrieval_on_image_searches(pool, tmp_path):
    settings = retrieve.Retrieval(per_class=40, overfetch=1.0)
    single = retrieve.retrieve(
        str(pool / "pool.csv"),
        str(pool / "images.npy"),
        str(pool / "prompts.npy"),
        str(pool / "subset.csv"),
        str(pool / "classes.txt"),
        str(tmp_path / "single.csv"),
        settings,
        exclude=str(pool / "excluded.csv"),
    )
    sharded = _sharded(pool, "text", 3, tmp_path, settings)
    assert sorted(zip(single.pool_row, single.label)) == sorted(zip(sharded.pool_row, sharded.label))


def test_a_class_the_sharded_pool_cannot_fill_is_named(pool, tmp_path):
    with pytest.raises(ValueError, match=r"cannot fill the quota of class\(es\) .*"):
        _sharded(pool, "text", 3, tmp_path, retrieve.Retrieval(per_class=200, overfetch=1.0))


def test_approximate_shard_indexes_recall_most_of_the_exact_merge(pool, tmp_path):
    exact = _sharded(pool, "text", 3, tmp_path, retrieve.Retrieval(per_class=40, overfetch=1.0))
    ivf = retrieve.Retrieval(per_class=40, overfetch=1.0, search="IVF4,Flat", nprobe=2)
    approximate = _sharded(pool, "text", 3, tmp_path / "ivf", ivf)
    recall = len(set(exact.pool_row) & set(approximate.pool_row)) / len(exact)
    assert recall >= 0.8
