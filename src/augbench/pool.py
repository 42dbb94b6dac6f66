"""Read the pool (the diffusion model's pre-training data) in the layouts people have it in.

    python -m augbench.pool webdataset --shards pool/ --out pool.csv [--threads 8]
    python -m augbench.pool webdataset --shards pool/ --shard 3 --of 128 --out listings/shard3.parquet
    python -m augbench.pool table --listing listings/shard0.parquet ... --out listings.csv
    python -m augbench.pool clip-retrieval --folder embeddings/ --out pool.csv \
        --images pool_images.npy [--captions pool_captions.npy] --unreadable unreadable.csv \
        [--webdataset pool.csv] [--model ViT-L-14 --pretrained laion2b_s32b_b82k]

``webdataset``: img2dataset's shards, tars whose members ``<key>.jpg`` (or .png, .webp),
``<key>.txt`` (caption) and ``<key>.json`` (url, caption, LAION's NSFW, similarity ...)
share a key. Nothing is extracted: each image is a row whose path names the member's
bytes inside its tar (``shard.tar::key.jpg@offset+size``, read by ``augbench.images``);
the caption and the json's scalar fields become columns.

A pool of thousands of tars is listed by several jobs: ``--shard k --of n`` lists the k-th of n
blocks of the tars (in name order) into its own listing (Parquet), and ``table`` writes the
shard table of the listings (``augbench.pool_parts``: rows and first pool row of each), after
checking that no sample key repeats across them. Every later job then reads its own listing
alone; the pool's rows are the listings' rows in order, so the tars' order as one listing gives.

``clip-retrieval``: the folder ``clip-retrieval inference`` writes, used as it is:
``img_emb/img_emb_<i>.npy``, ``text_emb/text_emb_<i>.npy`` and
``metadata/metadata_<i>.parquet``, whose rows correspond. It becomes the pool manifest
and the embedding files that embedding the pool would write, in the same row order.
The metadata's ``image_path`` is the image's file, or, when clip-retrieval read
webdataset shards, the sample's key, which ``--webdataset`` (the shards' listing) resolves.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import math
import multiprocessing
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from augbench.cli import run, start_logging
from augbench.embedding_files import merge_parts
from augbench.files import atomic_path, write_manifest
from augbench.images import tar_member_path
from augbench.pool_parts import TABLE_COLUMNS, check_clip_model, check_unit_rows, clip_retrieval_parts
from augbench.shards import shard_block
from augbench.unreadable import write_unreadable

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# json fields of img2dataset that are bookkeeping, not facts about the image.
SKIPPED_FIELDS = {"exif", "status", "error_message", "key", "label"}


def shard_files(shards: str) -> list[str]:
    """The tars a folder holds (not its subfolders), or a glob pattern matches, in name order."""
    if Path(shards).is_dir():
        files = sorted(str(path) for path in Path(shards).glob("*.tar"))
    else:
        files = sorted(glob.glob(shards))
    if not files:
        raise ValueError(f"pool shards {shards} name no .tar file")
    return files


def _split_member(name: str) -> tuple[str, str]:
    """(key, suffix) of a webdataset member: the key runs up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (dot + suffix).lower()


def list_shard(tar_path: str) -> list[dict]:
    """One row per image of a tar, with its caption and the scalar fields of its json."""
    samples: dict[str, dict] = {}
    with tarfile.open(tar_path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, suffix = _split_member(member.name)
            sample = samples.setdefault(key, {})
            if suffix in IMAGE_SUFFIXES and "path" not in sample:
                sample["path"] = tar_member_path(tar_path, member.name, member.offset_data, member.size)
            elif suffix == ".txt":
                sample["caption"] = tar.extractfile(member).read().decode("utf-8", errors="replace").strip()
            elif suffix == ".json":
                sample["json"] = tar.extractfile(member).read()
    rows = []
    for key, sample in samples.items():
        if "path" not in sample:
            continue  # a sample without an image (img2dataset can keep a failed download's json)
        row = {"path": sample["path"], "key": key}
        if "json" in sample:
            try:
                fields = json.loads(sample["json"])
            except ValueError as error:
                raise ValueError(f"{tar_path}: {key}.json is not JSON: {error}") from None
            row |= {
                name: value
                for name, value in fields.items()
                if name not in SKIPPED_FIELDS and name not in row and not isinstance(value, (dict, list))
            }
        if "caption" in sample:
            row["caption"] = sample["caption"]
        rows.append(row)
    return rows


# Tars a listing job reads at once, a process each (the listing rules' threads; the cost model's too).
LISTING_PROCESSES = 8


def _list_readable_shard(tar_path: str) -> pd.DataFrame:
    try:
        return pd.DataFrame(list_shard(tar_path))
    except tarfile.TarError as error:
        raise ValueError(f"pool shard {tar_path} is not a readable tar: {error}") from None


def _listing(files: list[str], processes: int, name: str) -> pd.DataFrame:
    """The manifest rows of tars, in their order (tar by tar, a frame each: no list of every row's dict),
    listed by ``processes`` worker processes a tar at a time. Not threads: reading a tar's headers
    and small members is Python work under the GIL (on bench_listing's tars, two threads on two cores took
    1.5x one thread's time)."""
    if processes <= 1 or len(files) == 1:
        frames = [_list_readable_shard(path) for path in files]
    else:
        # spawn, not fork: a forked child of a process whose libraries hold threads may hang.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(processes, len(files)), mp_context=context) as workers:
            frames = list(workers.map(_list_readable_shard, files))
    frames = [frame for frame in frames if len(frame)]
    if not frames:
        raise ValueError(f"{name} hold no image member ({', '.join(IMAGE_SUFFIXES)})")
    frame = pd.concat(frames, ignore_index=True)
    if not frame.key.is_unique:
        repeated = frame.key[frame.key.duplicated()].unique()[:5].tolist()
        raise ValueError(f"{name} repeat the sample key(s) {repeated}")
    if "caption" in frame:
        frame["caption"] = frame["caption"].fillna("").astype(str)
    frame.insert(1, "label", -1)
    return frame


def list_webdataset(shards: str, out: str, processes: int = 1) -> pd.DataFrame:
    """Write the pool manifest of webdataset shards (a folder or glob of tars), in shard order."""
    frame = _listing(shard_files(shards), processes, f"pool shards {shards}")
    write_manifest(out, frame)
    return frame


def list_webdataset_block(shards: str, shard: int, of: int, out: str, processes: int = 1) -> pd.DataFrame:
    """Write the listing (Parquet, the pool manifest's columns) of the ``shard``-th of ``of`` blocks of
    the tars, contiguous in name order, as ``augbench.shards.shard_block`` splits them."""
    files = shard_files(shards)
    if of > len(files):
        raise ValueError(
            f"pool shards {shards} are {len(files)} tar(s), fewer than the {of} jobs that list them "
            "(pool.shards / pool.shards_per_job): lower pool.shards, so that each job has a tar"
        )
    block = [files[index] for index in shard_block(len(files), shard, of)]
    name = f"the tars of pool shard {shard} of {of} ({Path(block[0]).name} .. {Path(block[-1]).name})"
    frame = _listing(block, processes, name)
    write_listing(out, frame)
    return frame


def write_listing(out: str, frame: pd.DataFrame) -> None:
    """A listing as Parquet. A json field may hold a number in one sample and text in another, which
    a Parquet column cannot: such a column is written as text (as a CSV manifest reads it back)."""
    frame = frame.copy()
    for name in frame.columns:
        if frame[name].dtype == object and frame[name].dropna().map(type).nunique() > 1:
            frame[name] = frame[name].map(lambda value: value if value is None or value != value else str(value))
    with atomic_path(out) as tmp:
        frame.to_parquet(tmp, index=False)


def listing_rows(listings: list[str]) -> list[int]:
    """Each listing's rows, from its Parquet metadata (nothing else is read)."""
    import pyarrow.parquet as pq

    return [pq.ParquetFile(listing).metadata.num_rows for listing in listings]


def listing_table(listings: list[str], out: str) -> pd.DataFrame:
    """Write the shard table (``augbench.pool_parts.TABLE_COLUMNS``) of a pool's listings, in the order
    given: each one's rows and first pool row; no embeddings are named (the jobs that embed a shard
    write them, and the jobs that read them are given them). Each sample key must be unique across
    the listings: their key columns alone are read, into 64-bit hashes (8 bytes a pool row)."""
    rows = listing_rows(listings)
    for listing, count in zip(listings, rows, strict=True):
        if count == 0:
            raise ValueError(f"pool listing {listing} lists no image")
    offsets = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
    hashes = np.empty(offsets[-1], dtype=np.uint64)
    filled = 0
    for listing in listings:
        for keys in _key_batches(listing):
            hashes[filled : filled + len(keys)] = pd.util.hash_array(keys)
            filled += len(keys)
    if filled != offsets[-1]:
        raise ValueError(f"the pool listings hold {filled} keys where their Parquet metadata counts {offsets[-1]}")
    hashes.sort()
    repeated = np.unique(hashes[1:][hashes[1:] == hashes[:-1]])
    del hashes
    if len(repeated):
        _raise_on_repeated_keys(listings, repeated)
    table = pd.DataFrame(
        {
            "shard": range(len(listings)),
            "rows": rows,
            "offset": offsets[:-1],
            "metadata": listings,
            "images": "",
            "captions": "",
        },
        columns=TABLE_COLUMNS,
    )
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table


# The table job's memory: every pool row's key hash and a byte of the mask of repeats, one batch
# of a listing's keys at a time as Python strings while they are hashed (about 350 bytes a key:
# bench_listing measured 1.9 GB at the peak for 10 M keys when a whole listing was read at once),
# and Python with pandas and pyarrow.
TABLE_BYTES_PER_ROW = 9
KEY_READ_BYTES_PER_ROW = 350
KEY_BATCH_ROWS = 1_000_000
TABLE_BASE_MB = 500


def table_memory(rows: int, largest_listing_rows: int) -> int:
    """MB the table job holds at its peak for listings of ``rows`` rows in all, the largest of
    ``largest_listing_rows`` (about 19.8 GB for Re-LAION-2B-en in listings of 16.4 M rows)."""
    held = rows * TABLE_BYTES_PER_ROW + min(largest_listing_rows, KEY_BATCH_ROWS) * KEY_READ_BYTES_PER_ROW
    return TABLE_BASE_MB + math.ceil(held / 1e6)


def table_memory_mb(listings: list[str], least_mb: int = 8000) -> int:
    """Memory the table job of ``listings`` asks for, in MB: ``least_mb``, or more where their row
    counts (Parquet metadata) need it; where a listing is not written yet (a dry run), ``least_mb``."""
    try:
        counts = listing_rows(listings)
    except OSError:  # not there yet: the job's memory is known once its listings are
        return least_mb
    return max(least_mb, table_memory(sum(counts), max(counts, default=0)))


def _key_batches(listing: str):
    """A listing's sample keys, ``KEY_BATCH_ROWS`` at a time (as Python strings they take about 350
    bytes each: a listing of 16 M read whole would hold 5.7 GB)."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(listing).iter_batches(batch_size=KEY_BATCH_ROWS, columns=["key"]):
        yield batch.column(0).to_numpy(zero_copy_only=False).astype(object)


def _raise_on_repeated_keys(listings: list[str], repeated: np.ndarray) -> None:
    """The keys behind repeated hashes, read again: an error naming them and their listings, unless the
    hashes of distinct keys merely collided."""
    found: dict[str, list[str]] = {}
    for listing in listings:
        for keys in _key_batches(listing):
            for key in keys[np.isin(pd.util.hash_array(keys), repeated)]:
                found.setdefault(str(key), []).append(listing)
    twice = {key: places for key, places in found.items() if len(places) > 1}
    if twice:
        shown = [f"{key} ({', '.join(sorted(set(places)))})" for key, places in list(twice.items())[:5]]
        raise ValueError(f"the pool listings repeat {len(twice)} sample key(s): {'; '.join(shown)}")


def assemble_clip_retrieval(
    folder: str,
    out: str,
    images_out: str,
    unreadable: str,
    captions_out: str | None = None,
    webdataset_manifest: str | None = None,
    model: str | None = None,
    pretrained: str | None = None,
) -> pd.DataFrame:
    """Write the pool manifest and embedding files from a clip-retrieval folder; return the manifest.

    With ``model``, the embeddings must have its width, and the metadata's first captions,
    embedded by it, must match their text embeddings (else they came from another CLIP).
    """
    parts = clip_retrieval_parts(folder, captions=captions_out is not None)
    frames = []
    widths = set()
    for part in parts:
        metadata = pd.read_parquet(part["metadata"])
        if "image_path" not in metadata:
            raise ValueError(
                f"{part['metadata']} has no image_path column (it has {metadata.columns.tolist()[:10]}): "
                "run clip-retrieval inference on local files or webdataset shards"
            )
        for kind in ("img_emb", "text_emb"):
            if kind not in part:
                continue
            shape = np.load(part[kind], mmap_mode="r").shape
            if len(shape) != 2 or shape[0] != len(metadata):
                raise ValueError(
                    f"{part[kind]} has {shape[0] if shape else 0} rows but {part['metadata']} "
                    f"has {len(metadata)}; the parts of one number must correspond row by row"
                )
            widths.add(shape[1])
        frames.append(metadata)
    if len(widths) != 1:
        raise ValueError(f"the embeddings in {folder} differ in width: {sorted(widths)}")
    width = widths.pop()
    pool = pd.concat(frames, ignore_index=True)
    pool = _with_paths(pool, webdataset_manifest)
    if model:
        _check_model(pool, parts, width, model, pretrained, folder)
    with atomic_path(images_out) as tmp:
        merge_parts([str(part["img_emb"]) for part in parts], str(tmp))
        zero = check_unit_rows(np.load(tmp, mmap_mode="r"), f"{folder}/img_emb")
    if captions_out:
        with atomic_path(captions_out) as tmp:
            merge_parts([str(part["text_emb"]) for part in parts], str(tmp))
            check_unit_rows(np.load(tmp, mmap_mode="r"), f"{folder}/text_emb")
    broken = pool.iloc[zero]
    write_unreadable(
        unreadable,
        pd.DataFrame({"path": broken.path, "label": -1, "reason": "clip-retrieval left a zero image embedding"}),
    )
    write_manifest(out, pool)
    return pool


def _with_paths(pool: pd.DataFrame, webdataset_manifest: str | None) -> pd.DataFrame:
    """The metadata with path and label columns: image_path is the file, or a webdataset key."""
    pool = pool.copy()
    if "caption" in pool:
        pool["caption"] = pool["caption"].fillna("").astype(str)
    if webdataset_manifest:
        listing = pd.read_csv(webdataset_manifest, usecols=["path", "key"], dtype=str, keep_default_na=False)
        where = pd.Series(listing.path.to_numpy(), index=listing.key.to_numpy())
        keys = pool.pop("image_path").astype(str)
        unknown = keys[~keys.isin(where.index)]
        if len(unknown):
            raise ValueError(
                f"{len(unknown)} image_path key(s) of the clip-retrieval metadata are not in the pool shards "
                f"({webdataset_manifest}), e.g. {unknown.head(3).tolist()}"
            )
        pool.insert(0, "key", keys.to_numpy())
        pool.insert(0, "path", where.loc[keys].to_numpy())
    else:
        pool.insert(0, "path", pool.pop("image_path").astype(str))
    pool.insert(1, "label", -1)
    return pool


def _check_model(pool, parts, width, model, pretrained, folder, n_captions: int = 8) -> None:
    """The width of ``model``, and the first captions of the first part embedded by it against the stored ones."""
    stored = np.load(parts[0]["text_emb"], mmap_mode="r") if "text_emb" in parts[0] else np.zeros((0, width))
    captions = pool.caption.iloc[: min(n_captions, len(stored))].tolist() if "caption" in pool else []
    check_clip_model(folder, width, model, pretrained, captions, stored)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    shards = commands.add_parser("webdataset", help="list webdataset shards into a pool manifest")
    shards.add_argument("--shards", required=True, help="a folder of .tar files, or a glob pattern")
    folder = commands.add_parser("clip-retrieval", help="a clip-retrieval folder as pool manifest and embeddings")
    folder.add_argument("--folder", required=True, help="holds img_emb/, text_emb/ and metadata/")
    folder.add_argument("--images", required=True, help=".npy to write the image embeddings to")
    folder.add_argument("--captions", default=None, help=".npy to write the caption embeddings to")
    folder.add_argument("--unreadable", required=True, help="CSV of the rows with a zero image embedding")
    folder.add_argument("--webdataset", default=None, help="listing of the shards clip-retrieval read (keys)")
    folder.add_argument("--model", default=None, help="the CLIP the embeddings must come from")
    folder.add_argument("--pretrained", default=None)
    shards.add_argument("--threads", type=int, default=1, help="CPUs: tars listed at once, a process each")
    shards.add_argument("--shard", type=int, default=None, help="list only the k-th block of the tars (Parquet)")
    shards.add_argument("--of", type=int, default=None, help="blocks the tars are split into (with --shard)")
    table = commands.add_parser("table", help="the shard table of the listings of blocks of tars")
    table.add_argument("--listing", action="append", required=True, help="a block's listing, in block order")
    for sub in (shards, folder, table):
        sub.add_argument("--out", required=True, help="the pool manifest (listing, shard table) to write")
    args = parser.parse_args(argv)
    start_logging()
    if args.command == "webdataset" and (args.shard is None) != (args.of is None):
        parser.error("--shard and --of go together")
    if args.command == "table":
        table = listing_table(args.listing, args.out)
        log.info("%d listings, %d pool images, in %s", len(table), int(table.rows.sum()), args.out)
        return
    if args.command == "webdataset" and args.shard is not None:
        frame = list_webdataset_block(args.shards, args.shard, args.of, args.out, args.threads)
    elif args.command == "webdataset":
        frame = list_webdataset(args.shards, args.out, args.threads)
    else:
        frame = assemble_clip_retrieval(
            args.folder,
            args.out,
            args.images,
            args.unreadable,
            args.captions,
            args.webdataset,
            args.model,
            args.pretrained,
        )
    log.info("listed %d pool images in %s", len(frame), args.out)


if __name__ == "__main__":
    run(main)
