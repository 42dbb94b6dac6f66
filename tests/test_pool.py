"""Pools in the layouts people have: webdataset shards, Parquet manifests, clip-retrieval folders."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from augbench import pool
from augbench.files import read_manifest
from augbench.images import ManifestImages, UnreadableImage, load_rgb


def _png(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path, samples) -> None:
    """An img2dataset shard: per sample <key>.png, <key>.txt, <key>.json (any member may be left out)."""
    with tarfile.open(path, "w") as tar:
        for key, colour, caption, meta in samples:
            if colour is not None:
                _add(tar, f"{key}.png", _png(colour))
            if caption is not None:
                _add(tar, f"{key}.txt", caption.encode())
            if meta is not None:
                _add(tar, f"{key}.json", json.dumps(meta).encode())


@pytest.fixture
def shards(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    write_shard(
        folder / "00000.tar",
        [
            ("000000000", (255, 0, 0), "a red card", {"url": "http://a/0.png", "NSFW": "UNLIKELY", "exif": "{}"}),
            ("000000001", (0, 255, 0), "a green card", {"url": "http://a/1.png", "NSFW": "NSFW", "width": 6}),
        ],
    )
    write_shard(
        folder / "00001.tar",
        [
            ("000010000", (0, 0, 255), None, {"url": "http://a/2.png", "caption": "blue, from the json"}),
            ("000010001", None, None, {"url": "http://a/3.png", "status": "failed_to_download"}),
        ],
    )
    (folder / "notes.txt").write_text("not a shard")
    return folder


def test_webdataset_shards_list_one_row_per_image_with_caption_and_json_fields(shards, tmp_path):
    frame = pool.list_webdataset(str(shards), str(tmp_path / "pool.csv"))
    listed = read_manifest(tmp_path / "pool.csv", labelled=False)
    assert listed.key.tolist() == ["000000000", "000000001", "000010000"]  # the image-less sample is left out
    assert listed.caption.tolist() == ["a red card", "a green card", "blue, from the json"]
    assert listed.NSFW.tolist() == ["UNLIKELY", "NSFW", ""]
    assert listed.url.tolist() == ["http://a/0.png", "http://a/1.png", "http://a/2.png"]
    assert "exif" not in listed and "status" not in listed
    assert (listed.label == -1).all()
    assert listed.path[0].startswith(f"{shards}/00000.tar::000000000.png@")
    assert len(frame) == 3
    # Each row reads back as its image, by seeking into the tar, through the one image loader.
    colours = [load_rgb(path).getpixel((0, 0)) for path in listed.path]
    assert colours == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    assert load_rgb(listed.path[2]).size == (6, 4)
    # Shards listed at once come in shard order all the same.
    at_once = pool.list_webdataset(str(shards), str(tmp_path / "again.csv"), processes=2)
    assert at_once.path.tolist() == listed.path.tolist()


def test_a_glob_of_shards_and_a_member_named_without_offset_read_too(shards, tmp_path):
    frame = pool.list_webdataset(str(shards / "0000[1].tar"), str(tmp_path / "pool.csv"))
    assert frame.key.tolist() == ["000010000"]
    assert load_rgb(f"{shards}/00000.tar::000000001.png").getpixel((0, 0)) == (0, 255, 0)
    with pytest.raises(UnreadableImage, match="no member|not found"):
        load_rgb(f"{shards}/00000.tar::missing.png")


def test_training_reads_tar_members_like_files(shards, tmp_path):
    listed = pool.list_webdataset(str(shards), str(tmp_path / "pool.csv"))
    images = ManifestImages(listed.path.tolist(), [3, 1, 4], lambda image: np.asarray(image))
    pixels, label = images[1]
    assert label == 1 and pixels.shape == (4, 6, 3) and tuple(pixels[0, 0]) == (0, 255, 0)


def test_a_member_outside_its_tar_or_not_an_image_is_unreadable(shards, tmp_path):
    listed = pool.list_webdataset(str(shards), str(tmp_path / "pool.csv"))
    tar, _, member = listed.path[0].partition("::")
    name = member.partition("@")[0]
    with pytest.raises(UnreadableImage, match="ends before"):
        load_rgb(f"{tar}::{name}@999999+10")
    with pytest.raises(UnreadableImage, match="cannot be read"):
        load_rgb(f"{tar}::{name}@0+100")  # the tar header, not the image


def test_shards_that_hold_nothing_usable_are_refused(tmp_path):
    with pytest.raises(ValueError, match="name no .tar file"):
        pool.list_webdataset(str(tmp_path), str(tmp_path / "pool.csv"))
    write_shard(tmp_path / "a.tar", [("1", None, "no image", None)])
    with pytest.raises(ValueError, match="hold no image member"):
        pool.list_webdataset(str(tmp_path), str(tmp_path / "pool.csv"))
    write_shard(tmp_path / "b.tar", [("1", (0, 0, 0), None, None)])
    write_shard(tmp_path / "c.tar", [("1", (0, 0, 0), None, None)])
    with pytest.raises(ValueError, match="repeat the sample key"):
        pool.list_webdataset(str(tmp_path), str(tmp_path / "pool.csv"))
    (tmp_path / "a.tar").write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="a.tar is not a readable tar"):
        pool.list_webdataset(str(tmp_path), str(tmp_path / "pool.csv"))


def test_parquet_manifests_read_and_a_pool_needs_no_label(tmp_path):
    frame = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "caption": ["a cat", None], "NSFW": ["UNLIKELY", "NSFW"]})
    frame.to_parquet(tmp_path / "pool.parquet")
    listed = read_manifest(tmp_path / "pool.parquet", labelled=False)
    assert listed.label.tolist() == [-1, -1]
    assert listed.caption.tolist() == ["a cat", ""]
    assert listed.NSFW.tolist() == ["UNLIKELY", "NSFW"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['label'\]"):
        read_manifest(tmp_path / "pool.parquet")  # a labelled split still needs its labels
    frame.rename(columns={"path": "image_path"}).to_csv(tmp_path / "nopath.csv", index=False)
    with pytest.raises(ValueError, match=r"nopath.csv lacks column\(s\) \['path'\]; it has \['image_path'"):
        read_manifest(tmp_path / "nopath.csv", labelled=False)


def _unit(rows: int, width: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, width))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def write_clip_retrieval(folder, parts, width: int = 8, text=None, numbers=None) -> None:
    """A clip-retrieval inference folder: per part a metadata frame and its image and text embeddings."""
    for kind in ("img_emb", "text_emb", "metadata"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for number, metadata in zip(numbers or range(len(parts)), parts):
        np.save(folder / "img_emb" / f"img_emb_{number}.npy", _unit(len(metadata), width, number))
        vectors = _unit(len(metadata), width, 100 + number) if text is None else text[number]
        np.save(folder / "text_emb" / f"text_emb_{number}.npy", vectors)
        metadata.to_parquet(folder / "metadata" / f"metadata_{number}.parquet")


def _metadata(paths, captions):
    return pd.DataFrame({"image_path": paths, "caption": captions, "url": [f"http://x/{p}" for p in paths]})


def _assemble(folder, tmp_path, **options):
    return pool.assemble_clip_retrieval(
        str(folder),
        str(tmp_path / "pool.csv"),
        str(tmp_path / "images.npy"),
        str(tmp_path / "unreadable.csv"),
        captions_out=options.pop("captions_out", str(tmp_path / "captions.npy")),
        **options,
    )


def test_a_clip_retrieval_folder_becomes_the_pool_manifest_and_embeddings_in_row_order(tmp_path):
    folder = tmp_path / "emb"
    parts = [_metadata(["a.jpg", "b.jpg"], ["x", "y"]), _metadata(["c.jpg"], ["z"]), _metadata(["d.jpg"], ["w"])]
    # Part 10 comes after part 2: by number, not by name.
    write_clip_retrieval(folder, parts, numbers=[0, 10, 2])
    _assemble(folder, tmp_path)
    listed = read_manifest(tmp_path / "pool.csv", labelled=False)
    assert listed.path.tolist() == ["a.jpg", "b.jpg", "d.jpg", "c.jpg"]
    assert listed.url.tolist() == ["http://x/a.jpg", "http://x/b.jpg", "http://x/d.jpg", "http://x/c.jpg"]
    images = np.load(tmp_path / "images.npy")
    assert images.dtype == np.float32 and images.shape == (4, 8)
    expected = np.concatenate([np.load(folder / "img_emb" / f"img_emb_{n}.npy") for n in (0, 2, 10)]).astype(np.float32)
    np.testing.assert_array_equal(images, expected)
    assert np.load(tmp_path / "captions.npy").shape == (4, 8)
    assert len(read_manifest(tmp_path / "unreadable.csv")) == 0


def test_zero_image_embeddings_are_listed_as_unreadable(tmp_path):
    folder = tmp_path / "emb"
    write_clip_retrieval(folder, [_metadata(["a.jpg", "b.jpg", "c.jpg"], ["x", "y", "z"])])
    vectors = np.load(folder / "img_emb" / "img_emb_0.npy")
    vectors[1] = 0
    np.save(folder / "img_emb" / "img_emb_0.npy", vectors)
    _assemble(folder, tmp_path, captions_out=None)
    unreadable = read_manifest(tmp_path / "unreadable.csv")
    assert unreadable.path.tolist() == ["b.jpg"]
    assert not (tmp_path / "captions.npy").exists()


def test_clip_retrieval_keys_resolve_to_the_webdataset_members(shards, tmp_path):
    pool.list_webdataset(str(shards), str(tmp_path / "listing.csv"))
    folder = tmp_path / "emb"
    write_clip_retrieval(folder, [_metadata(["000010000", "000000000"], ["blue", "red"])])
    frame = _assemble(folder, tmp_path, webdataset_manifest=str(tmp_path / "listing.csv"))
    assert frame.key.tolist() == ["000010000", "000000000"]
    assert [load_rgb(path).getpixel((0, 0)) for path in frame.path] == [(0, 0, 255), (255, 0, 0)]
    write_clip_retrieval(folder, [_metadata(["000010000", "999"], ["blue", "?"])])
    with pytest.raises(ValueError, match=r"1 image_path key\(s\) .* not in the pool shards .*\['999'\]"):
        _assemble(folder, tmp_path, webdataset_manifest=str(tmp_path / "listing.csv"))


def _break(folder, how):
    if how == "missing part":
        (folder / "text_emb" / "text_emb_1.npy").unlink()
    elif how == "row counts":
        np.save(folder / "img_emb" / "img_emb_1.npy", _unit(3, 8, 0))
    elif how == "widths":
        np.save(folder / "img_emb" / "img_emb_1.npy", _unit(1, 16, 0))
    elif how == "not normalised":
        np.save(folder / "img_emb" / "img_emb_1.npy", 2 * _unit(1, 8, 0))
    elif how == "no image_path":
        pd.DataFrame({"caption": ["z"]}).to_parquet(folder / "metadata" / "metadata_1.parquet")
    elif how == "empty":
        for path in (folder / "metadata").iterdir():
            path.unlink()


BROKEN = {
    "missing part": r"lacks text_emb/ part\(s\) \['text_emb_1.npy'\]",
    "row counts": r"img_emb_1.npy has 3 rows but .*metadata_1.parquet has 1",
    "widths": r"differ in width: \[8, 16\]",
    "not normalised": r"img_emb row 2 has length 2.000, not 1",
    "no image_path": "no image_path column",
    "empty": r"has no metadata/metadata_<i>.parquet",
}


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_clip_retrieval_folder_is_refused_with_what_is_wrong(how, tmp_path):
    folder = tmp_path / "emb"
    write_clip_retrieval(folder, [_metadata(["a.jpg", "b.jpg"], ["x", "y"]), _metadata(["c.jpg"], ["z"])])
    _break(folder, how)
    with pytest.raises(ValueError, match=BROKEN[how]):
        _assemble(folder, tmp_path)
    assert not (tmp_path / "pool.csv").exists() and not (tmp_path / "images.npy").exists()


def test_embeddings_of_another_clip_are_refused(tiny_clip, tmp_path):
    from augbench.clip_embeddings import embed_texts

    captions = ["a photo of a three", "a seven", "a blurry one"]
    ours = embed_texts(captions, None, tiny_clip, None, "cpu")
    folder = tmp_path / "emb"
    write_clip_retrieval(folder, [_metadata(["a", "b", "c"], captions)], width=ours.shape[1], text=[ours])
    _assemble(folder, tmp_path, model=tiny_clip)
    assert np.load(tmp_path / "captions.npy").shape == ours.shape
    write_clip_retrieval(folder, [_metadata(["a", "b", "c"], captions)], width=ours.shape[1])
    with pytest.raises(ValueError, match="do not match clip.model .*another CLIP"):
        _assemble(folder, tmp_path, model=tiny_clip)
    write_clip_retrieval(tmp_path / "wide", [_metadata(["a"], ["x"])], width=ours.shape[1] + 1)
    with pytest.raises(ValueError, match=f"have {ours.shape[1] + 1} dimensions but clip.model"):
        _assemble(tmp_path / "wide", tmp_path, model=tiny_clip)


def test_stub_stands_in_for_pool_shards_parquet_and_a_clip_retrieval_folder(tmp_path):
    import yaml

    from augbench.stub import make_stub

    config = {"pool": {"manifest": "data/pool/*.tar", "embeddings": "data/emb"}, "dataset": {"val": "v.parquet"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    made = make_stub(str(tmp_path / "c.yaml"), str(tmp_path))
    assert sorted(path.relative_to(tmp_path).as_posix() for path in made) == [
        "data/emb",
        "data/pool/stub.tar",
        "v.parquet",
    ]
    assert (tmp_path / "data" / "emb").is_dir() and (tmp_path / "v.parquet").is_file()
    assert make_stub(str(tmp_path / "c.yaml"), str(tmp_path)) == []


def test_blocks_of_tars_listed_apart_and_joined_by_a_table_are_the_pool_listed_at_once(shards, tmp_path):
    from augbench import pool_parts

    write_shard(shards / "00002.tar", [("000020000", (9, 9, 9), "grey", {"url": "http://a/4.png", "NSFW": 1})])
    pool.list_webdataset(str(shards), str(tmp_path / "whole.csv"))
    whole = read_manifest(tmp_path / "whole.csv", labelled=False)
    for of in (1, 2, 3):
        listings = [str(tmp_path / f"of{of}_{shard}.parquet") for shard in range(of)]
        for shard, listing in enumerate(listings):
            pool.list_webdataset_block(str(shards), shard, of, listing)
        table = pool.listing_table(listings, str(tmp_path / f"of{of}.csv"))
        assert table.rows.sum() == len(whole) and table.offset.tolist() == [0, *table.rows.cumsum()[:-1]]
        assert (table.images == "").all() and (table.captions == "").all()
        joined = pd.concat([pool_parts.part_manifest(listing) for listing in listings], ignore_index=True)
        for column in ("path", "key", "caption", "url", "label"):
            assert joined[column].tolist() == whole[column].tolist(), column
        # A job reads its listing through the table; the merge, the rows it chose, shard by shard.
        block = pool_parts.manifest_block(str(tmp_path / f"of{of}.csv"), of - 1, of)
        assert block.path.tolist() == whole.path.tolist()[int(table.offset.iloc[-1]) :]
        chosen = pool_parts.chosen_rows_manifest(None, str(tmp_path / f"of{of}.csv"), [3, 0, 2])
        assert chosen.path.tolist() == whole.path[[3, 0, 2]].tolist()
    # One tar's json says NSFW "UNLIKELY", another's NSFW 1: in one listing the column is text, as a CSV reads it.
    assert pool_parts.part_manifest(str(tmp_path / "of1_0.parquet")).NSFW.tolist() == whole.NSFW.tolist()
    assert whole.NSFW.tolist() == ["UNLIKELY", "NSFW", "", "1"]


def test_listing_blocks_of_tars_refuses_what_it_cannot_list_naming_it(shards, tmp_path):
    with pytest.raises(ValueError, match="are 2 tar.*fewer than the 3 jobs"):
        pool.list_webdataset_block(str(shards / "0000[01].tar"), 0, 3, str(tmp_path / "l.parquet"))
    write_shard(shards / "00002.tar", [("9", None, "no image", None)])
    with pytest.raises(ValueError, match=r"pool shard 2 of 3 \(00002.tar .. 00002.tar\) hold no image"):
        pool.list_webdataset_block(str(shards), 2, 3, str(tmp_path / "l.parquet"))
    (shards / "00002.tar").write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="00002.tar is not a readable tar"):
        pool.list_webdataset_block(str(shards), 1, 2, str(tmp_path / "l.parquet"))
    # A key in two blocks' listings: the table names it and both listings.
    write_shard(shards / "00002.tar", [("000000001", (1, 1, 1), "again", None)])
    listings = [str(tmp_path / f"{shard}.parquet") for shard in range(3)]
    for shard, listing in enumerate(listings):
        pool.list_webdataset_block(str(shards), shard, 3, listing)
    with pytest.raises(ValueError, match=r"repeat 1 sample key\(s\): 000000001 \(.*0.parquet, .*2.parquet\)"):
        pool.listing_table(listings, str(tmp_path / "table.csv"))


def test_keys_read_a_batch_at_a_time_give_the_table_and_its_repeats(shards, tmp_path, monkeypatch):
    listings = [str(tmp_path / f"{shard}.parquet") for shard in range(2)]
    for shard, listing in enumerate(listings):
        pool.list_webdataset_block(str(shards), shard, 2, listing)
    whole = pool.listing_table(listings, str(tmp_path / "whole.csv"))
    monkeypatch.setattr(pool, "KEY_BATCH_ROWS", 1)
    assert pool.listing_table(listings, str(tmp_path / "batched.csv")).equals(whole)
    # A repeat in the second batch of a listing, of a key in another's first.
    frame = pd.read_parquet(listings[0])
    pd.concat([frame, pd.read_parquet(listings[1]).head(1)]).to_parquet(listings[0], index=False)
    with pytest.raises(ValueError, match=r"repeat 1 sample key\(s\): \d+ \(.*0.parquet, .*1.parquet\)"):
        pool.listing_table(listings, str(tmp_path / "table.csv"))


def test_the_listing_command_lists_a_block_and_tables_the_listings(shards, tmp_path):
    listings = []
    for shard in range(2):
        listings += ["--listing", str(tmp_path / f"{shard}.parquet")]
        pool.main(["webdataset", "--shards", str(shards), "--shard", str(shard), "--of", "2", "--out", listings[-1]])
    pool.main(["table", *listings, "--out", str(tmp_path / "table.csv")])
    assert pd.read_csv(tmp_path / "table.csv").rows.tolist() == [2, 1]
    with pytest.raises(SystemExit):
        pool.main(["webdataset", "--shards", str(shards), "--shard", "0", "--out", str(tmp_path / "x.parquet")])


def test_the_table_job_asks_for_the_memory_its_listings_rows_need(shards, tmp_path):
    listings = [str(tmp_path / f"{shard}.parquet") for shard in range(2)]
    # Before the listings are written (a dry run), the rule's least; its job counts their rows.
    assert pool.table_memory_mb(listings, least_mb=8000) == 8000
    for shard, listing in enumerate(listings):
        pool.list_webdataset_block(str(shards), shard, 2, listing)
    assert pool.table_memory_mb(listings, least_mb=8000) == 8000  # three rows
    assert pool.table_memory_mb(listings, least_mb=0) == pool.table_memory(3, 2) == pool.TABLE_BASE_MB + 1
    # Every row's hash, and a batch of a listing's keys while they are read: Re-LAION needs more than 8 GB.
    assert pool.table_memory(2_100_000_000, 16_400_000) == 500 + 18_900 + 350
    assert pool.table_memory(10_000_000, 5_000_000) == 500 + 90 + 350
