import numpy as np
import pytest

from augbench import clip_embeddings, embed
from augbench.files import read_classes, read_manifest
from augbench.prompts import class_prompts


def test_image_embeddings_follow_the_manifest_and_are_unit_length(miniworld, tiny_clip, tmp_path):
    manifest = miniworld / "val" / "manifest.csv"
    features = embed.embed_images(
        str(manifest), str(tmp_path / "val.npy"), embed.ImageEmbedding(tiny_clip, batch_size=16, num_workers=0)
    )
    assert features.shape == (len(read_manifest(manifest)), 64)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "val.npy"), features)


def test_prompt_embeddings_have_one_row_per_class(miniworld, tiny_clip, tmp_path):
    classes = read_classes(miniworld / "classes.txt")
    prompts = class_prompts(classes, "a photo of a {}")
    assert prompts[7] == "a photo of a seven"
    features = clip_embeddings.embed_texts(prompts, str(tmp_path / "p.npy"), tiny_clip)
    assert features.shape == (10, 64)
    # Different class names give different embeddings.
    assert np.unique(features.round(5), axis=0).shape[0] == 10


def test_template_without_placeholder_is_rejected():
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        class_prompts(["cat"], "a photo")


def test_captions_command_embeds_one_row_per_pool_image(miniworld, tiny_clip, tmp_path):
    pool = miniworld / "pool" / "manifest.csv"
    embed.main(["captions", "--manifest", str(pool), "--out", str(tmp_path / "c.npy"), "--model", tiny_clip])
    features = np.load(tmp_path / "c.npy")
    assert features.shape == (len(read_manifest(pool)), 64)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)


def test_pool_embedded_in_shards_and_joined_equals_one_job(miniworld, tiny_clip, tmp_path):
    from augbench.embedding_files import merge_parts

    pool = str(miniworld / "pool" / "manifest.csv")
    whole = embed.embed_images(
        pool, str(tmp_path / "whole.npy"), embed.ImageEmbedding(tiny_clip, batch_size=64, num_workers=0)
    )
    parts = [str(tmp_path / f"part{k}.npy") for k in range(3)]
    for shard, part in enumerate(parts):
        embed.embed_images(
            pool, part, embed.ImageEmbedding(tiny_clip, batch_size=64, num_workers=0), shard=shard, shards=3
        )
    assert sum(len(np.load(part)) for part in parts) == len(whole)
    assert merge_parts(parts, str(tmp_path / "joined.npy")) == len(whole)
    np.testing.assert_allclose(np.load(tmp_path / "joined.npy"), whole, atol=1e-5)


def test_unreadable_pool_images_get_zero_rows_and_are_listed(miniworld, tiny_clip, tmp_path):
    from augbench.files import write_manifest

    pool = read_manifest(miniworld / "pool" / "manifest.csv").head(6).copy()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    pool.loc[[1, 4], "path"] = [str(tmp_path / "empty.png"), str(tmp_path / "text.jpg")]
    write_manifest(tmp_path / "pool.csv", pool)
    features = embed.embed_images(
        str(tmp_path / "pool.csv"),
        str(tmp_path / "pool.npy"),
        embed.ImageEmbedding(tiny_clip, batch_size=4, num_workers=0),
        unreadable=str(tmp_path / "unreadable.csv"),
    )
    norms = np.linalg.norm(features, axis=1)
    np.testing.assert_allclose(norms[[0, 2, 3, 5]], 1.0, rtol=1e-5)
    assert (features[[1, 4]] == 0).all()
    listed = read_manifest(tmp_path / "unreadable.csv")
    assert listed.path.tolist() == [str(tmp_path / "empty.png"), str(tmp_path / "text.jpg")]
    assert listed.reason.str.contains("cannot be read").all()
