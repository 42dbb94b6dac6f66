import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pool_search import retrieve_whole_pool

from augbench import copies, exclude, pool_parts
from augbench.files import read_manifest, write_classes, write_manifest
from augbench.sharded_retrieval import Retrieval

REPO = Path(__file__).resolve().parents[1]
MINIWORLD_CLIP = f"local-dir:{REPO / 'resources' / 'miniworld' / 'models' / 'clip'}"
# The tiny CLIP's copy threshold set by hand (config.yaml calibrates one, auto, which catches 99%
# of enlarged copies: about 0.95): it scores 2x and 4x rescaled copies of a digit down to 0.93.
TINY_CLIP_THRESHOLD = 0.92


def _unit(rows):
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _at_similarity(reference, similarity, rng):
    """A unit vector whose cosine similarity to the unit vector ``reference`` is ``similarity``."""
    other = rng.normal(size=reference.shape)
    other -= (other @ reference) * reference
    other /= np.linalg.norm(other)
    return similarity * reference + np.sqrt(1 - similarity**2) * other


def _manifest(path, names, **columns):
    write_manifest(path, pd.DataFrame({"path": names, "label": -1, **columns}))
    return str(path)


def test_blockwise_search_of_a_memory_mapped_pool_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "pool.npy", _unit(rng.normal(size=(1000, 16))))
    pool = np.load(tmp_path / "pool.npy", mmap_mode="r")
    references = _unit(rng.normal(size=(37, 16)))
    similarity, matched = copies.nearest(pool, references, block=64)
    brute = np.asarray(pool) @ references.T
    np.testing.assert_array_equal(matched, brute.argmax(axis=1))
    np.testing.assert_allclose(similarity, brute.max(axis=1), atol=1e-5)


def test_a_pool_image_at_or_above_the_threshold_is_a_duplicate_and_one_below_is_not():
    rng = np.random.default_rng(1)
    references = _unit(rng.normal(size=(2, 32)))
    similarities = [1.0, 0.97, 0.951, 0.949, 0.5]
    pool_vectors = np.stack([_at_similarity(references[1], s, rng) for s in similarities]).astype(np.float32)
    pool = pd.DataFrame({"path": [f"p{i}" for i in range(5)], "label": -1})
    refs = pd.DataFrame({"path": ["val/a.png", "val/b.png"], "label": [0, 1]})
    found = copies.duplicates(pool, pool_vectors, refs, references, 0.95, copies.EVAL_DUPLICATE)
    assert found.pool_row.tolist() == [0, 1, 2]
    assert (found.matched == "val/b.png").all() and (found.reason == copies.EVAL_DUPLICATE).all()
    np.testing.assert_allclose(found.similarity, similarities[:3], atol=1e-5)
    # An exact copy counts at threshold 1, although float32 may score it a rounding error below.
    assert copies.duplicates(pool, pool_vectors, refs, references, 1.0, "x").pool_row.tolist() == [0]


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.5])
def test_a_threshold_outside_0_1_is_refused(threshold):
    frame = pd.DataFrame({"path": ["a"], "label": [0]})
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]"):
        copies.duplicates(frame, _unit([[1, 0]]), frame, _unit([[1, 0]]), threshold, copies.EVAL_DUPLICATE)


def test_evaluation_and_training_copies_have_their_own_thresholds_and_null_turns_a_check_off(tmp_path):
    rng = np.random.default_rng(2)
    val, train = _unit(rng.normal(size=(1, 16))), _unit(rng.normal(size=(1, 16)))
    # Row 0 is 0.96 from the validation image, row 1 0.96 from the training image, row 2 unrelated.
    pool = np.stack([_at_similarity(val[0], 0.96, rng), _at_similarity(train[0], 0.96, rng), -val[0]])
    np.save(tmp_path / "pool.npy", pool.astype(np.float32))
    np.save(tmp_path / "val.npy", val)
    np.save(tmp_path / "train.npy", train)
    paths = {
        "pool_manifest": _manifest(tmp_path / "pool.csv", ["p0", "p1", "p2"]),
        "pool_embeddings": str(tmp_path / "pool.npy"),
        "out": str(tmp_path / "excluded.csv"),
        "eval_manifest": _manifest(tmp_path / "val.csv", ["v0"]),
        "eval_embeddings": str(tmp_path / "val.npy"),
        "train_manifest": _manifest(tmp_path / "train.csv", ["t0"]),
        "train_embeddings": str(tmp_path / "train.npy"),
    }
    table = exclude.exclusions(**paths, checks=copies.CopyChecks(eval_threshold=0.95, train_threshold=0.95))
    assert table[["pool_row", "reason", "matched"]].values.tolist() == [
        [0, copies.EVAL_DUPLICATE, "v0"],
        [1, copies.TRAIN_DUPLICATE, "t0"],
    ]
    assert pd.read_csv(tmp_path / "excluded.csv").columns.tolist() == copies.COLUMNS
    # A stricter evaluation threshold spares row 0; a null training threshold skips that check.
    table = exclude.exclusions(**paths, checks=copies.CopyChecks(eval_threshold=0.99, train_threshold=None))
    assert table.empty and pd.read_csv(tmp_path / "excluded.csv").columns.tolist() == copies.COLUMNS
    with pytest.raises(ValueError, match="--train-threshold needs --train-manifest and --train-embeddings"):
        checks = copies.CopyChecks(train_threshold=0.9)
        exclude.exclusions(paths["pool_manifest"], paths["pool_embeddings"], paths["out"], checks)


def test_reference_embeddings_must_match_their_manifest(tmp_path):
    np.save(tmp_path / "pool.npy", _unit([[1, 0]]))
    np.save(tmp_path / "val.npy", _unit([[1, 0], [0, 1]]))
    with pytest.raises(ValueError, match="2 evaluation duplicate embeddings but 1 images listed"):
        exclude.exclusions(
            _manifest(tmp_path / "pool.csv", ["p0"]),
            str(tmp_path / "pool.npy"),
            str(tmp_path / "out.csv"),
            eval_manifest=_manifest(tmp_path / "val.csv", ["v0"]),
            eval_embeddings=str(tmp_path / "val.npy"),
            checks=copies.CopyChecks(eval_threshold=0.9),
        )


def test_laion_safety_tags_are_honoured_where_the_pool_has_them():
    pool = pd.DataFrame({"path": list("abcde"), "label": -1, "NSFW": ["UNLIKELY", "UNSURE", "NSFW", "nsfw ", ""]})
    tagged = exclude.safety_tagged(pool, None, ["NSFW", "UNSURE"])
    assert tagged.pool_row.tolist() == [1, 2, 3] and (tagged.reason == copies.SAFETY_TAG).all()
    assert tagged.matched.tolist() == ["NSFW=UNSURE", "NSFW=NSFW", "NSFW=nsfw"]
    assert exclude.safety_tagged(pool, "NSFW", ["NSFW"]).pool_row.tolist() == [2, 3]
    assert exclude.safety_tagged(pool, None, []).empty  # nothing to drop
    # A pool without the column is not an error when none is named.
    assert exclude.safety_tagged(pool.drop(columns="NSFW"), None, ["NSFW"]).empty
    own = pool.rename(columns={"NSFW": "safety"})
    assert exclude.safety_tagged(own, "safety", ["unsure"]).pool_row.tolist() == [1]


def test_a_named_safety_column_the_pool_lacks_is_an_error():
    pool = pd.DataFrame({"path": ["a"], "label": -1, "caption": ["c"]})
    with pytest.raises(ValueError, match=r"pool.csv has no column 'punsafe', which pool.safety_column names"):
        exclude.safety_tagged(pool, "punsafe", ["NSFW"], "pool.csv")


def test_cli_writes_one_table_of_every_reason(tmp_path):
    rng = np.random.default_rng(3)
    val = _unit(rng.normal(size=(2, 8)))
    np.save(tmp_path / "pool.npy", np.vstack([val[1], _unit(rng.normal(size=(3, 8)))]))
    np.save(tmp_path / "val.npy", val)
    _manifest(tmp_path / "pool.csv", ["p0", "p1", "p2", "p3"], NSFW=["UNLIKELY", "NSFW", "UNSURE", "UNLIKELY"])
    _manifest(tmp_path / "val.csv", ["v0", "v1"])
    exclude.main(
        ["--pool", str(tmp_path / "pool.csv"), "--pool-embeddings", str(tmp_path / "pool.npy"),
         "--eval-manifest", str(tmp_path / "val.csv"), "--eval-embeddings", str(tmp_path / "val.npy"),
         "--eval-threshold", "0.95", "--drop-safety-values", "NSFW", "--out", str(tmp_path / "excluded.csv")]
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "excluded.csv")
    assert table[["pool_row", "reason", "matched"]].values.tolist() == [
        [0, copies.EVAL_DUPLICATE, "v1"],
        [1, copies.SAFETY_TAG, "NSFW=NSFW"],
    ]
    # An empty list keeps every tagged image.
    exclude.main(
        ["--pool", str(tmp_path / "pool.csv"), "--pool-embeddings", str(tmp_path / "pool.npy"),
         "--drop-safety-values", "", "--out", str(tmp_path / "none.csv")]
    )  # fmt: skip
    assert pd.read_csv(tmp_path / "none.csv").empty


def _retrieval_inputs(tmp_path, embeddings):
    """A pool of the given embeddings, two classes with two real images each, one query per class."""
    paths = [f"p{i}" for i in range(len(embeddings))]
    write_manifest(tmp_path / "pool.csv", pd.DataFrame({"path": paths, "label": -1}))
    np.save(tmp_path / "pool.npy", _unit(embeddings))
    np.save(tmp_path / "queries.npy", _unit([[1, 0], [0, 1]]))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": list("abcd"), "label": [0, 0, 1, 1]}))
    write_classes(tmp_path / "classes.txt", ["x", "y"])
    return [str(tmp_path / name) for name in ("pool.csv", "pool.npy", "queries.npy", "subset.csv", "classes.txt")]


def test_retrieval_leaves_out_the_rows_of_the_exclusion_table(tmp_path):
    inputs = _retrieval_inputs(tmp_path, [[1, 0.01], [1, 0.1], [1, 0.2], [1, 0.3], [0.01, 1], [0.1, 1], [0.2, 1]])
    table = pd.DataFrame({"pool_row": [0, 4, 4], "path": ["p0", "p4", "p4"], "reason": ["a", "a", "b"]})
    table.to_csv(tmp_path / "excluded.csv", index=False)
    added = retrieve_whole_pool(*inputs, str(tmp_path / "added"), exclude=str(tmp_path / "excluded.csv"))
    assert sorted(added.path) == ["p1", "p2", "p5", "p6"]  # the nearest images, less the excluded ones
    assert sorted(retrieve_whole_pool(*inputs, str(tmp_path / "all")).path) == ["p0", "p1", "p4", "p5"]


def test_an_exclusion_table_of_another_pool_is_refused(tmp_path):
    inputs = _retrieval_inputs(tmp_path, [[1, 0], [1, 0.1], [0, 1], [0.1, 1]])
    pool = read_manifest(tmp_path / "pool.csv")
    pd.DataFrame({"pool_row": [1], "path": ["q1"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match="lists pool row 1 under another path: it was made for another pool"):
        pool_parts.excluded_in_shard(str(tmp_path / "other.csv"), pool, 0)
    # A shard's rows are checked by their paths; the rows of other shards are theirs to check.
    pd.DataFrame({"pool_row": [3, 9], "path": ["q3", "p9"]}).to_csv(tmp_path / "later.csv", index=False)
    assert pool_parts.excluded_in_shard(str(tmp_path / "later.csv"), pool.iloc[:2], 0).tolist() == []
    with pytest.raises(ValueError, match="lists pool row 3 under another path"):
        retrieve_whole_pool(*inputs, str(tmp_path / "added"), exclude=str(tmp_path / "later.csv"))
    pd.DataFrame({"row": [1]}).to_csv(tmp_path / "bare.csv", index=False)
    with pytest.raises(ValueError, match=r"bare.csv lacks column\(s\) \['path', 'pool_row'\]"):
        pool_parts.excluded_in_shard(str(tmp_path / "bare.csv"), pool, 0)


def _plant_copies(val: pd.DataFrame, folder: Path) -> list[str]:
    """Each validation image as the web would repeat it: the file itself, re-encoded, rescaled."""
    folder.mkdir()
    planted = []
    for i, path in enumerate(val.path):
        image = Image.open(path).convert("RGB")
        shutil.copy(path, folder / f"{i}_copy.png")
        image.save(folder / f"{i}_q95.jpg", quality=95)
        image.resize((image.width * 2, image.height * 2), Image.BICUBIC).save(folder / f"{i}_x2.png")
        image.resize((image.width * 4, image.height * 4), Image.BICUBIC).save(folder / f"{i}_x4_q90.jpg", quality=90)
        planted += [str(folder / f"{i}_{kind}") for kind in ("copy.png", "q95.jpg", "x2.png", "x4_q90.jpg")]
    return planted


def test_evaluation_images_planted_in_the_pool_are_all_removed_and_never_retrieved(miniworld, tmp_path):
    """The mini-world's CLIP at the threshold set for it by hand: copies of validation images
    (the file, re-encoded, rescaled) planted among the pool are all excluded, and image queries
    that would find them first retrieve none of them."""
    from augbench.copies import CopyChecks
    from augbench.embed import ImageEmbedding, embed_images

    threshold = TINY_CLIP_THRESHOLD
    val_manifest = str(miniworld / "val" / "manifest.csv")
    val = read_manifest(val_manifest)
    pool = read_manifest(miniworld / "pool" / "manifest.csv")
    planted = _plant_copies(val, tmp_path / "planted")
    pool = pd.concat([pool, pd.DataFrame({"path": planted, "label": -1})], ignore_index=True)
    pool = pool.sample(frac=1.0, random_state=0).reset_index(drop=True)  # the copies spread among the pool
    write_manifest(tmp_path / "pool.csv", pool)
    for name, manifest in (("pool", str(tmp_path / "pool.csv")), ("val", val_manifest)):
        clip = ImageEmbedding(MINIWORLD_CLIP, batch_size=512, num_workers=0)
        embed_images(manifest, str(tmp_path / f"{name}.npy"), clip)

    table = exclude.exclusions(
        str(tmp_path / "pool.csv"),
        str(tmp_path / "pool.npy"),
        str(tmp_path / "excluded.csv"),
        eval_manifest=val_manifest,
        eval_embeddings=str(tmp_path / "val.npy"),
        checks=CopyChecks(eval_threshold=threshold),
    )
    assert set(planted) <= set(table.path), sorted(set(planted) - set(table.path))
    # Each copy is matched with the image it copies.
    origin = dict(zip(planted, np.repeat(val.path.to_numpy(), 4)))
    copies = table[table.path.isin(planted)]
    assert (copies.matched == copies.path.map(origin)).all()

    # Each validation image as a query, its class's quota as large as the class's copies:
    # without the exclusion the copies come first; with it, none is retrieved.
    np.save(tmp_path / "queries.npy", np.load(tmp_path / "val.npy"))
    inputs = [str(tmp_path / name) for name in ("pool.csv", "pool.npy", "queries.npy")]
    inputs += [val_manifest, str(miniworld / "classes.txt")]
    settings = Retrieval(per_class=4 * int(val.label.value_counts().max()))
    unfiltered = retrieve_whole_pool(*inputs, str(tmp_path / "unfiltered"), settings, query_manifest=val_manifest)
    assert len(set(unfiltered.path) & set(planted)) > len(planted) // 2
    excluded = str(tmp_path / "excluded.csv")
    added = retrieve_whole_pool(
        *inputs, str(tmp_path / "added"), settings, query_manifest=val_manifest, exclude=excluded
    )
    assert len(added) == len(unfiltered) and set(added.path).isdisjoint(planted)


def test_a_pool_excluded_whole_is_named_rather_than_searched(tmp_path):
    inputs = _retrieval_inputs(tmp_path, [[1, 0], [0, 1]])
    pd.DataFrame({"pool_row": [0, 1], "path": ["p0", "p1"]}).to_csv(tmp_path / "all.csv", index=False)
    with pytest.raises(
        ValueError, match=r"no image of the pool is left to search in 1 shard\(s\): .* \(check contamination"
    ):
        retrieve_whole_pool(*inputs, str(tmp_path / "added"), exclude=str(tmp_path / "all.csv"))


def test_a_pool_screened_shard_by_shard_lists_what_one_job_lists(tmp_path):
    # Three shards of a pool with safety tags and a copy of a validation image, screened by a job
    # each and joined (collect exclusions), list the same pool rows as one job over the whole pool.
    from augbench import collect

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(9, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tags = ["UNLIKELY", "NSFW", "UNLIKELY", "UNSURE", "UNLIKELY", "UNLIKELY", "UNLIKELY", "NSFW", "UNLIKELY"]
    pool = _manifest(tmp_path / "pool.csv", [f"p{i}" for i in range(9)], NSFW=tags)
    np.save(tmp_path / "pool.npy", vectors)
    val = _manifest(tmp_path / "val.csv", ["v0"], label=[0])
    np.save(tmp_path / "val.npy", vectors[[5]])
    checks = copies.CopyChecks(eval_threshold=0.99)
    files = {"eval_manifest": val, "eval_embeddings": str(tmp_path / "val.npy")}
    whole = exclude.exclusions(pool, str(tmp_path / "pool.npy"), str(tmp_path / "whole.csv"), checks, **files)
    parts = []
    for shard, rows in enumerate(np.array_split(np.arange(9), 3)):
        np.save(tmp_path / f"shard{shard}.npy", vectors[rows])
        parts += ["--part", str(tmp_path / f"excluded{shard}.csv")]
        exclude.exclusions(pool, str(tmp_path / f"shard{shard}.npy"), parts[-1], checks, **files, shard=shard, shards=3)
    collect.main(["exclusions", *parts, "--out", str(tmp_path / "joined.csv")])
    joined = pd.read_csv(tmp_path / "joined.csv")
    assert joined[["pool_row", "path", "reason"]].equals(whole[["pool_row", "path", "reason"]])
    assert sorted(joined.pool_row.unique()) == [1, 3, 5, 7]
