import numpy as np
import pandas as pd
import pytest
from test_pool import _metadata, write_clip_retrieval

from augbench import pool_parts, precomputed, sharded_retrieval
from augbench.files import write_classes, write_manifest

# DataComp's ViT-L/14 arrays, without loading that CLIP to check them (the check is tested on a tiny one below).
L14 = {"model": "ViT-L-14", "check_against_model": False}


def _unit(rows, width, seed):
    vectors = np.random.default_rng(seed).normal(size=(rows, width))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def write_datacomp(folder, sizes, width=16, compressed=False):
    """DataComp's layout: per part <name>.parquet (uid, url, text) and <name>.npz of float16 embeddings."""
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for part, size in enumerate(sizes):
        uids = [f"{start + row:08x}" for row in range(size)]
        metadata = pd.DataFrame({"uid": uids, "url": [f"http://x/{uid}.jpg" for uid in uids], "text": "a photo"})
        metadata.to_parquet(folder / f"{part:08d}.parquet")
        arrays = {"l14_img": _unit(size, width, part), "l14_txt": _unit(size, width, 100 + part)}
        arrays |= {"b32_img": _unit(size, 4, 200 + part), "b32_txt": _unit(size, 4, 300 + part)}
        (np.savez_compressed if compressed else np.savez)(folder / f"{part:08d}.npz", **arrays)
        start += size


def test_datacomp_parts_become_shards_read_where_they_lie(tmp_path):
    write_datacomp(tmp_path / "dc", [5, 7, 3])
    table = precomputed.shard_table(str(tmp_path / "dc"), "datacomp", str(tmp_path / "shards.csv"), **L14, shards=3)
    assert table.rows.tolist() == [5, 7, 3] and table.offset.tolist() == [0, 5, 12]
    spec = table.images.iloc[1]
    assert spec.endswith("00000001.npz::l14_img")
    mapped = pool_parts.open_embeddings(spec)
    assert isinstance(mapped, np.memmap)  # mapped in place, not read into memory
    np.testing.assert_array_equal(mapped, np.load(tmp_path / "dc" / "00000001.npz")["l14_img"])
    with pytest.raises(ValueError, match="holds 3 parts .*set pool.shards: 3"):
        precomputed.shard_table(str(tmp_path / "dc"), "datacomp", str(tmp_path / "shards.csv"), **L14, shards=4)


def test_a_compressed_npz_is_read_and_a_part_that_does_not_correspond_is_refused(tmp_path):
    write_datacomp(tmp_path / "dc", [4, 2], compressed=True)
    spec = f"{tmp_path / 'dc' / '00000000.npz'}::l14_txt"
    np.testing.assert_array_equal(
        pool_parts.open_embeddings(spec), np.load(tmp_path / "dc" / "00000000.npz")["l14_txt"]
    )
    np.savez(tmp_path / "dc" / "00000001.npz", l14_img=_unit(3, 16, 0), l14_txt=_unit(2, 16, 1))
    with pytest.raises(ValueError, match="l14_img has 3 rows but .*00000001.parquet has 2"):
        precomputed.shard_table(str(tmp_path / "dc"), "datacomp", str(tmp_path / "t.csv"), **L14)
    with pytest.raises(ValueError, match="DataComp ships embeddings of"):
        precomputed.layout_parts(str(tmp_path / "dc"), "datacomp", model="RN50")


def test_clip_retrieval_parts_are_checked_against_clip_model(tiny_clip, tmp_path):
    from augbench.clip_embeddings import embed_texts

    captions = ["a photo of a three", "a seven", "a blurry one"]
    ours = embed_texts(captions, None, tiny_clip, None, "cpu")
    good, other = tmp_path / "good", tmp_path / "other"
    write_clip_retrieval(good, [_metadata(["a", "b", "c"], captions)], width=ours.shape[1], text=[ours])
    write_clip_retrieval(other, [_metadata(["a", "b", "c"], captions)], width=ours.shape[1])
    table = precomputed.shard_table(str(good), "clip-retrieval", str(tmp_path / "t.csv"), model=tiny_clip)
    assert table.rows.tolist() == [3]
    with pytest.raises(ValueError, match="do not match clip.model .*another CLIP"):
        precomputed.shard_table(str(other), "clip-retrieval", str(tmp_path / "t.csv"), model=tiny_clip)


def test_retrieval_from_datacomp_shards_equals_retrieval_from_the_joined_pool(tmp_path):
    sizes = [40, 25, 35]
    write_datacomp(tmp_path / "dc", sizes)
    table = precomputed.shard_table(str(tmp_path / "dc"), "datacomp", str(tmp_path / "shards.csv"), **L14)
    joined = pd.concat([pool_parts.part_manifest(path) for path in table.metadata], ignore_index=True)
    write_manifest(tmp_path / "pool.csv", joined)
    np.save(tmp_path / "pool.npy", np.concatenate([pool_parts.open_embeddings(s) for s in table.images]))
    np.save(tmp_path / "prompts.npy", _unit(3, 16, 7).astype(np.float32))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": list("abc"), "label": [0, 1, 2]}))
    write_classes(tmp_path / "classes.txt", ["x", "y", "z"])
    common = [str(tmp_path / name) for name in ("prompts.npy", "subset.csv", "classes.txt")]
    settings = sharded_retrieval.Retrieval(per_class=10, overfetch=1.0)
    by_parts = sharded_retrieval.retrieve_sharded(
        None,
        table.images.tolist(),
        *common,
        str(tmp_path / "parts"),
        settings,
        shard_table=str(tmp_path / "shards.csv"),
    )
    whole = sharded_retrieval.retrieve_sharded(
        str(tmp_path / "pool.csv"), [str(tmp_path / "pool.npy")], *common, str(tmp_path / "whole"), settings
    )
    pd.testing.assert_frame_equal(by_parts, whole)
    assert by_parts.path.str.startswith("http://x/").all() and (by_parts.caption == "a photo").all()


def test_embeddings_that_are_not_unit_length_are_refused_by_the_search(tmp_path):
    write_datacomp(tmp_path / "dc", [6])
    arrays = dict(np.load(tmp_path / "dc" / "00000000.npz"))
    arrays["l14_img"][2] *= 3
    np.savez(tmp_path / "dc" / "00000000.npz", **arrays)
    table = precomputed.shard_table(str(tmp_path / "dc"), "datacomp", str(tmp_path / "shards.csv"), **L14)
    np.save(tmp_path / "prompts.npy", _unit(1, 16, 7).astype(np.float32))
    write_manifest(tmp_path / "subset.csv", pd.DataFrame({"path": ["a"], "label": [0]}))
    write_classes(tmp_path / "classes.txt", ["x"])
    with pytest.raises(ValueError, match="row 2 has length 3.000, not 1"):
        sharded_retrieval.search_shard(
            None,
            0,
            1,
            table.images.iloc[0],
            *(str(tmp_path / name) for name in ("prompts.npy", "subset.csv", "classes.txt", "c.npz")),
            shard_table=str(tmp_path / "shards.csv"),
        )
