import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pool_search import retrieve_whole_pool

from augbench import sharded_retrieval
from augbench.copies import COLUMNS
from augbench.files import read_manifest, write_classes, write_manifest
from augbench.sharded_retrieval import Retrieval
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
        settings or Retrieval(per_class=40, overfetch=1.0),
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
    settings = Retrieval(per_class=120, overfetch=0.1)
    added = _sharded(pool, "text", 3, tmp_path, settings)
    assert (tmp_path / "text3" / "round1").exists()
    assert len(added) == 480 and added.pool_row.is_unique
    pd.testing.assert_frame_equal(added, _sharded(pool, "text", 1, tmp_path, settings))
    wide = Retrieval(per_class=120, overfetch=4.0)  # round 0 deep enough at once
    pd.testing.assert_frame_equal(added, _sharded(pool, "text", 3, tmp_path / "wide", wide))


def test_a_class_the_sharded_pool_cannot_fill_is_named(pool, tmp_path):
    with pytest.raises(ValueError, match=r"cannot fill the quota of class\(es\) .*"):
        _sharded(pool, "text", 3, tmp_path, Retrieval(per_class=200, overfetch=1.0))


def test_approximate_shard_indexes_recall_most_of_the_exact_merge(pool, tmp_path):
    exact = _sharded(pool, "text", 3, tmp_path, Retrieval(per_class=40, overfetch=1.0))
    ivf = Retrieval(per_class=40, overfetch=1.0, search="IVF4,Flat", nprobe=2)
    approximate = _sharded(pool, "text", 3, tmp_path / "ivf", ivf)
    recall = len(set(exact.pool_row) & set(approximate.pool_row)) / len(exact)
    assert recall >= 0.8


# The retrieval rules, on a pool of one shard.


def _write_pool(folder, embeddings, subset_labels, queries, classes=("x", "y"), **columns):
    """pool.csv and pool.npy of the embeddings, the subset's labels, queries.npy and classes.txt; their paths."""
    paths = [f"p{i}" for i in range(len(embeddings))]
    write_manifest(folder / "pool.csv", pd.DataFrame({"path": paths, "label": -1, **columns}))
    np.save(folder / "pool.npy", _unit(embeddings))
    np.save(folder / "queries.npy", _unit(queries))
    write_manifest(
        folder / "subset.csv",
        pd.DataFrame({"path": [f"s{i}" for i in range(len(subset_labels))], "label": subset_labels}),
    )
    write_classes(folder / "classes.txt", list(classes))
    return [str(folder / name) for name in ("pool.csv", "pool.npy", "queries.npy", "subset.csv", "classes.txt")]


def test_contested_image_goes_to_the_closer_class_and_is_used_once(tmp_path):
    # Row 2 is near both queries but nearer to class 0.
    paths = _write_pool(tmp_path, [[1, 0.1], [0.1, 1], [1, 0.9], [1, 0.2], [0.2, 1]], [0, 0, 0, 1, 1], [[1, 0], [0, 1]])
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"), Retrieval(overfetch=1.0))
    assert {c: sorted(added[added.label == c].pool_row) for c in (0, 1)} == {0: [0, 2, 3], 1: [1, 4]}
    assert added.pool_row.is_unique


def test_search_widens_until_every_quota_is_met(tmp_path):
    rng = np.random.default_rng(0)
    # Class 1's query is close to everything of class 0 too; a narrow first search leaves it short.
    pool = np.vstack([rng.normal([5, 0], 0.3, (30, 2)), rng.normal([0, 5], 0.3, (6, 2))])
    paths = _write_pool(tmp_path, pool, [0] * 5 + [1] * 5, [[1, 0], [1, 1]])
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"), Retrieval(overfetch=1.0))
    assert added.label.value_counts().sort_index().tolist() == [5, 5]


def test_a_class_that_is_never_closest_still_gets_its_quota(tmp_path):
    pool = np.random.default_rng(2).normal([5, 0], 0.5, (20, 2))
    paths = _write_pool(tmp_path, pool, [0] * 4 + [1] * 4, [[1, 0], [1, 0.05]])
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"))
    assert added.label.value_counts().sort_index().tolist() == [4, 4] and added.pool_row.is_unique


def test_the_pool_too_small_for_a_quota_names_the_class(tmp_path):
    paths = _write_pool(tmp_path, [[1, 0], [0.9, 0.1], [0, 1]], [0, 1, 1, 1], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"cannot fill the quota of class\(es\) \[1\] \(y\)"):
        retrieve_whole_pool(*paths, str(tmp_path / "work"))


def test_the_manifest_names_pool_paths_labels_and_captions(tmp_path):
    rng = np.random.default_rng(1)
    centres = _unit(rng.normal(size=(3, 8)))
    labels = np.repeat(np.arange(3), 10)
    embeddings = centres[labels] + 0.05 * rng.normal(size=(30, 8))
    paths = _write_pool(tmp_path, embeddings, [0, 0, 1, 1, 2, 2], centres, ("a", "b", "c"), caption="c")
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"))
    assert added.label.value_counts().sort_index().tolist() == [2, 2, 2]
    assert (labels[added.pool_row] == added.label).all()  # every image is of the class it is labelled with
    assert added.path.tolist() == [f"p{r}" for r in added.pool_row] and (added.caption == "c").all()


def test_the_merge_reads_no_pool_metadata_the_candidates_carry_their_rows(tmp_path):
    """At billions of rows the chosen images lie in nearly every shard: the merge takes their paths,
    captions and URLs from the shards' candidates, never from the pool's manifest or listings."""
    rng = np.random.default_rng(2)
    centres = _unit(rng.normal(size=(3, 8)))
    labels = np.repeat(np.arange(3), 10)
    embeddings = centres[labels] + 0.05 * rng.normal(size=(30, 8))
    captions = [f"caption {row}" for row in range(30)]
    urls = [f"https://example.org/{row}.jpg" for row in range(30)]
    pool, vectors, queries, subset, classes = _write_pool(
        tmp_path, embeddings, [0, 0, 1, 1, 2, 2], centres, ("a", "b", "c"), caption=captions, url=urls
    )
    work = tmp_path / "work"
    added = retrieve_whole_pool(pool, vectors, queries, subset, classes, str(work))
    assert added.caption.tolist() == [captions[row] for row in added.pool_row]
    assert added.url.tolist() == [urls[row] for row in added.pool_row]
    rounds = sorted(work.glob("round*/shard0.npz"), key=lambda path: int(path.parent.name.removeprefix("round")))
    # Candidates searched by an earlier version hold no manifest rows: their merge reads the pool's.
    with np.load(rounds[-1]) as candidates:
        np.savez(tmp_path / "earlier.npz", **{key: candidates[key] for key in candidates.files if key != "manifest"})
    for files, pool_left in (([str(tmp_path / "earlier.npz")], True), ([str(rounds[-1])], False)):
        if not pool_left:
            Path(pool).unlink()
        again = tmp_path / f"again_{pool_left}"
        status = sharded_retrieval.merge_shards(pool, files, queries, subset, classes, str(again), Retrieval())
        assert status["done"]
        pd.testing.assert_frame_equal(read_manifest(again / "added.csv"), added)


def test_embeddings_that_do_not_match_the_pool_are_refused(tmp_path):
    paths = _write_pool(tmp_path, [[1, 0], [0, 1]], [0], [[1, 0]], ("a",))
    np.save(tmp_path / "pool.npy", _unit(np.ones((3, 2))))
    with pytest.raises(ValueError, match="has 3 rows but block 0 of 1 of the pool has 2"):
        retrieve_whole_pool(*paths, str(tmp_path / "work"))


def test_image_queries_label_what_they_find_and_share_the_quota(tmp_path):
    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(2, 8)))
    pool = np.repeat(centres, 20, axis=0) + 0.1 * rng.normal(size=(40, 8))
    # Two query images per class; each class wants 6 images, 3 per query image.
    queries = np.repeat(centres, 2, axis=0) + 0.05 * rng.normal(size=(4, 8))
    paths = _write_pool(tmp_path, pool, [0, 0, 1, 1], queries)
    settings = Retrieval(per_class=6)
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"), settings, query_manifest=paths[3])
    assert added.label.value_counts().sort_index().tolist() == [6, 6]
    assert ((added.pool_row < 20) == (added.label == 0)).all()
    # Queries listed in another order than their classes are still matched by the query manifest's labels.
    np.save(tmp_path / "queries.npy", _unit(queries)[::-1])
    write_manifest(tmp_path / "reversed.csv", pd.DataFrame({"path": list("abcd"), "label": [1, 1, 0, 0]}))
    swapped = retrieve_whole_pool(
        *paths, str(tmp_path / "swapped"), settings, query_manifest=str(tmp_path / "reversed.csv")
    )
    assert sorted(zip(swapped.label, swapped.pool_row)) == sorted(zip(added.label, added.pool_row))


def test_a_class_with_a_quota_but_no_query_is_named(tmp_path):
    paths = _write_pool(tmp_path, [[1, 0], [0, 1], [1, 1]], [0, 1], [[1, 0]])
    write_manifest(tmp_path / "queries.csv", pd.DataFrame({"path": ["q"], "label": [0]}))
    with pytest.raises(ValueError, match=r"class\(es\) \[1\] have a quota but no query"):
        retrieve_whole_pool(*paths, str(tmp_path / "work"), query_manifest=str(tmp_path / "queries.csv"))


def test_the_command_lines_search_and_merge_image_queries_labelled_by_the_query_manifest(tmp_path):
    rng = np.random.default_rng(4)
    centres = _unit(rng.normal(size=(2, 8)))
    labels = np.repeat([0, 1], 10)
    paths = _write_pool(tmp_path, centres[labels] + 0.05 * rng.normal(size=(20, 8)), [1, 0, 1], centres[[1, 0, 1]])
    common = ["--pool", paths[0], "--queries", paths[2], "--query-manifest", paths[3], "--subset", paths[3]]
    common += ["--classes", paths[4]]
    sharded_retrieval.main(
        ["search", *common, "--shard", "0", "--shards", "1", "--pool-embeddings", paths[1],
         "--out", str(tmp_path / "shard0.npz")]
    )  # fmt: skip
    sharded_retrieval.main(
        ["merge", *common, "--candidates", str(tmp_path / "shard0.npz"), "--out-dir", str(tmp_path / "merged")]
    )
    assert json.loads((tmp_path / "merged" / "status.json").read_text()) == {"done": True, "deepen": []}
    added = pd.read_csv(tmp_path / "merged" / "added.csv")
    assert sorted(added.label) == [0, 1, 1]
    assert (labels[added.pool_row] == added.label).all()


def test_identical_pool_images_are_added_once(tmp_path):
    # The pool repeats the image nearest to class 0 three times (as web pools repeat pictures).
    pool = [[1, 0.01], [1, 0.01], [1, 0.01], [1, 0.3], [1, 0.5], [0, 1], [0.1, 1]]
    paths = _write_pool(tmp_path, pool, [0, 0, 1, 1], [[1, 0], [0, 1]])
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"))
    assert sorted(added[added.label == 0].path) == ["p0", "p3"]  # one copy of the repeated image, then the next
    # Without de-duplication the copies fill the quota (the user asked for it).
    repeated = retrieve_whole_pool(*paths, str(tmp_path / "repeated"), Retrieval(dedup=False))
    assert set(repeated[repeated.label == 0].path) < {"p0", "p1", "p2"}


def _captioned_pool(folder, captions, images, subset_labels):
    """A pool searched by its captions' embeddings, whose image embeddings differ."""
    paths = _write_pool(folder, captions, subset_labels, [[1, 0], [0, 1]])
    np.save(folder / "images.npy", _unit(images))
    return paths


def test_pictures_that_share_a_caption_are_not_duplicates(tmp_path):
    # Four different pictures, all captioned alike: the caption index sees one text four times.
    images = np.random.default_rng(0).normal(size=(8, 4))
    paths = _captioned_pool(tmp_path, [[1, 0]] * 4 + [[0, 1]] * 4, images, [0, 0, 0, 1, 1, 1])
    added = retrieve_whole_pool(*paths, str(tmp_path / "work"), image_embeddings=str(tmp_path / "images.npy"))
    assert added.label.value_counts().sort_index().tolist() == [3, 3]
    assert set(added[added.label == 0].path) < {"p0", "p1", "p2", "p3"}


@pytest.mark.parametrize("dedup", [True, False])
def test_an_unreadable_pool_image_is_never_retrieved(tmp_path, dedup):
    # p0 could not be read (its image embedding is zero); its caption is the best match.
    images = _unit(np.random.default_rng(1).normal(size=(6, 4)))
    images[0] = 0.0
    paths = _write_pool(tmp_path, [[1, 0]] * 3 + [[0, 1]] * 3, [0, 0, 1, 1], [[1, 0], [0, 1]])
    np.save(tmp_path / "images.npy", images)
    added = retrieve_whole_pool(
        *paths, str(tmp_path / "work"), Retrieval(dedup=dedup), image_embeddings=str(tmp_path / "images.npy")
    )
    assert "p0" not in set(added.path)
    assert sorted(added[added.label == 0].path) == ["p1", "p2"]


def _caption_pool(tmp_path):
    """Captions say class x for rows 0-5, but the images of rows 0 and 1 show class y."""
    captions = [[1, 0.01], [1, 0.02], [1, 0.1], [1, 0.12], [1, 0.2], [1, 0.22], [0, 1], [0.01, 1]]
    images = [[0, 1], [0.05, 1], [1, 0.1], [1, 0.15], [1, 0.2], [1, 0.25], [0.1, 1], [0.15, 1]]
    return _captioned_pool(tmp_path, captions, images, [0, 0, 1, 1])


def _retrieve_filtered(tmp_path, paths, **settings):
    return retrieve_whole_pool(
        *paths,
        str(tmp_path / f"work{len(list(tmp_path.glob('work*')))}"),
        Retrieval(overfetch=1.0, **settings),
        image_embeddings=str(tmp_path / "images.npy"),
        class_prompts=paths[2],
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


def test_an_image_the_filter_refuses_for_one_class_can_still_go_to_another(tmp_path):
    # Row 0's caption is nearest class x's prompt, but its image shows y: x passes it over, y takes it.
    paths = _captioned_pool(tmp_path, [[1, 0.1], [1, 0.3], [0.3, 1]], [[0.1, 1], [1, 0.2], [0.2, 1]], [0, 1, 1])
    added = _retrieve_filtered(tmp_path, paths, min_clip_score=0.5)
    assert sorted(zip(added.label, added.pool_row)) == [(0, 1), (1, 0), (1, 2)]
    assert pd.read_csv(tmp_path / "quality.csv").dropped.tolist() == [1, 0]


def _listed(root, method, bounds, tmp_path, parts=1):
    """The pool as webdataset listings (``augbench.pool table``) cut at ``bounds`` (where tars would
    end, not at equal blocks), each job given its listing's embeddings."""
    from augbench import pool as pool_listing

    searched, queries, query_manifest = METHODS[method]
    manifest = pd.read_csv(root / "pool.csv").assign(key=lambda frame: frame.path)
    folder = tmp_path / f"listed_{method}_{len(bounds) + 1}"
    folder.mkdir()
    listings, embeddings = [], {"images": [], searched: []}
    for shard, rows in enumerate(np.split(np.arange(len(manifest)), bounds)):
        listings.append(str(folder / f"shard{shard}.parquet"))
        pool_listing.write_listing(listings[-1], manifest.iloc[rows])
        for name in embeddings:
            embeddings[name].append(str(folder / f"{name}{shard}.npy"))
            np.save(embeddings[name][-1], np.load(root / f"{name}.npy")[rows])
    table = pool_listing.listing_table(listings, str(folder / "listings.csv"))
    assert table.offset.tolist() == [0, *bounds]
    return sharded_retrieval.retrieve_sharded(
        None,
        embeddings[searched],
        str(root / queries),
        str(root / "subset.csv"),
        str(root / "classes.txt"),
        str(folder / "work"),
        Retrieval(per_class=40, overfetch=1.0),
        shard_image_embeddings=embeddings["images"],
        shard_excluded=[str(root / "excluded.csv")] * (len(bounds) + 1),
        query_manifest=str(root / query_manifest) if query_manifest else None,
        parts=parts,
        shard_table=str(folder / "listings.csv"),
    )


@pytest.mark.parametrize("method", ["text", "caption"])
def test_listings_of_blocks_of_tars_give_the_manifest_the_whole_pool_gives(pool, method, tmp_path):
    whole = _sharded(pool, method, 1, tmp_path)
    for bounds, parts in (([250, 410], 1), ([90, 100, 300, 333, 480, 500, 590], 2)):
        pd.testing.assert_frame_equal(whole, _listed(pool, method, bounds, tmp_path, parts))
