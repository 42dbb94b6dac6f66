"""A pool's shards as jobs read them: embeddings memory-mapped where they lie, and the manifest rows of
one shard (a block of the pool manifest's rows, or a part that a shard table lists).

A shard table (``TABLE_COLUMNS``) lists a pool's parts in pool order: each part's rows, its first
pool row, its metadata and the specs of its image and caption embeddings. Two kinds are written:
``augbench.precomputed``'s, a part per pool shard with the embeddings that ship with it; and
``augbench.pool table``'s, a listing (Parquet manifest rows) per job's block of webdataset tars,
which names no embeddings: the job that embeds a block writes them, and the jobs that read them
are given them (``--pool-embeddings``), as for a block of a pool manifest.

An embedding file is named by a *spec*: a ``.npy`` path, or ``<file>.npz::<array>`` (DataComp's
layout, see ``augbench.precomputed``). An ``.npz`` stored uncompressed, as ``numpy.savez``
writes it, is mapped at its member's offset in the zip, so a job reads the rows it touches.
"""

from __future__ import annotations

import logging
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from augbench.files import read_manifest
from augbench.search import release_pages
from augbench.shards import shard_block

log = logging.getLogger(__name__)

TABLE_COLUMNS = ["shard", "rows", "offset", "metadata", "images", "captions"]
CAPTION_COLUMNS = ("caption", "text", "TEXT")  # clip-retrieval's, DataComp's, LAION's
# clip-retrieval inference's files of a part <i>.
PARTS = {"img_emb": "img_emb_{}.npy", "text_emb": "text_emb_{}.npy", "metadata": "metadata_{}.parquet"}
ZIP_LOCAL_HEADER = 30  # bytes before a member's name in a zip's local file header


def open_embeddings(spec: str) -> np.ndarray:
    """The embeddings a spec names, memory-mapped: ``file.npy`` or ``file.npz::array``."""
    path, _, member = spec.partition("::")
    if not member:
        return np.load(path, mmap_mode="r")
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(f"{member}.npy")
        except KeyError:
            names = [name.removesuffix(".npy") for name in archive.namelist()]
            raise ValueError(f"{path} has no array {member!r} (it has {names})") from None
        if info.compress_type != zipfile.ZIP_STORED:
            # Compressed (numpy.savez_compressed): read whole, which is one shard's vectors.
            log.info("%s is compressed: reading %s into memory", path, member)
            with archive.open(info) as handle:
                return np.load(handle)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(ZIP_LOCAL_HEADER)
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        handle.seek(info.header_offset + ZIP_LOCAL_HEADER + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def check_unit_rows(array: np.ndarray, name: str, chunk: int = 1 << 16) -> np.ndarray:
    """The rows that are zero (images the embedder could not use); any other row must have unit
    length, as inner-product search takes them to."""
    zero = []
    for start in range(0, len(array), chunk):
        norms = np.linalg.norm(np.asarray(array[start : start + chunk], dtype=np.float32), axis=1)
        release_pages(array)
        off = np.flatnonzero((norms > 1e-6) & (np.abs(norms - 1) > 1e-2))
        if len(off):
            raise ValueError(
                f"{name} row {start + off[0]} has length {norms[off[0]]:.3f}, not 1: "
                "the embeddings must be L2-normalised"
            )
        zero += (start + np.flatnonzero(norms <= 1e-6)).tolist()
    return np.asarray(zero, dtype=np.int64)


def read_shard_table(path: str) -> pd.DataFrame:
    table = pd.read_csv(path, keep_default_na=False)
    missing = set(TABLE_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"shard table {path} lacks column(s) {sorted(missing)} (python -m augbench.precomputed)")
    return table


def names_embeddings(table: pd.DataFrame) -> bool:
    """Whether a shard table names each part's embeddings (precomputed parts), or none (listings)."""
    return bool((table["images"].astype(str) != "").any())


def part_manifest(metadata: str) -> pd.DataFrame:
    """A part's metadata as manifest rows: ``path`` is its image file (clip-retrieval's image_path), else
    its URL (downloaded once retrieved), else its uid; ``caption`` its caption or text. A listing of
    webdataset tars (``augbench.pool``) holds manifest rows already: all its columns are kept."""
    import pyarrow.parquet as pq

    if "path" in pq.read_schema(metadata).names:
        return read_manifest(metadata, labelled=False)
    frame = pd.read_parquet(metadata)
    for name in ("image_path", "url", "URL", "uid"):
        if name in frame:
            path = frame[name].astype(str)
            break
    else:
        raise ValueError(f"{metadata} has none of image_path, url, uid to name its images by")
    manifest = pd.DataFrame({"path": path.to_numpy(), "label": -1})
    caption = next((name for name in CAPTION_COLUMNS if name in frame), None)
    if caption:
        manifest["caption"] = frame[caption].fillna("").astype(str).to_numpy()
    for name in ("url", "URL"):
        if name in frame:
            manifest["url"] = frame[name].astype(str).to_numpy()
            break
    return manifest


def shard_manifest(
    pool_manifest: str | None, shard: int, shards: int, shard_table: str | None = None
) -> tuple[pd.DataFrame, int]:
    """A shard's manifest rows and the pool row of its first: the ``shard``-th of ``shards`` blocks of
    the pool manifest, or the part a shard table (``augbench.precomputed``) lists, read alone."""
    if shard_table:
        return _table_entry(read_shard_table(shard_table), shard, shard_table)
    pool = read_manifest(pool_manifest, labelled=False)
    block = shard_block(len(pool), shard, shards)
    return pool.iloc[block].reset_index(drop=True), int(block[0]) if len(block) else 0


def _table_entry(table: pd.DataFrame, shard: int, name: str) -> tuple[pd.DataFrame, int]:
    if not 0 <= shard < len(table):
        raise ValueError(f"shard table {name} lists {len(table)} shards, not a shard {shard}")
    entry = table.iloc[shard]
    frame = part_manifest(entry.metadata)
    if len(frame) != int(entry.rows):
        raise ValueError(f"{entry.metadata} has {len(frame)} rows but {name} lists {entry.rows}")
    return frame, int(entry.offset)


def manifest_block(manifest: str, shard: int, shards: int) -> pd.DataFrame:
    """The rows of a job's block: the ``shard``-th of ``shards`` blocks of a pool manifest's rows, or,
    where ``manifest`` is a shard table of listings (``augbench.pool table``), its ``shard``-th listing."""
    if str(manifest).endswith(".csv") and set(TABLE_COLUMNS) <= set(pd.read_csv(manifest, nrows=0).columns):
        table = read_shard_table(manifest)
        if len(table) != shards:
            raise ValueError(f"shard table {manifest} lists {len(table)} shards but the pool is in {shards} blocks")
        return _table_entry(table, shard, manifest)[0]
    frame = read_manifest(manifest, labelled=False)
    return frame.iloc[shard_block(len(frame), shard, shards)]


def excluded_in_shard(exclude: str, rows_of_shard: pd.DataFrame, offset: int) -> np.ndarray:
    """The rows of a shard (counted from its first) that an exclusion table lists, checked against its paths."""
    table = pd.read_csv(exclude, keep_default_na=False)
    missing = {"pool_row", "path"} - set(table.columns)
    if missing:
        raise ValueError(f"exclusion table {exclude} lacks column(s) {sorted(missing)}")
    rows = table.pool_row.to_numpy(dtype=np.int64)
    if (rows < 0).any():
        raise ValueError(f"exclusion table {exclude} lists pool row {rows[rows < 0][0]}: rows count from 0")
    inside = (rows >= offset) & (rows < offset + len(rows_of_shard))
    local = rows[inside] - offset
    moved = np.flatnonzero(rows_of_shard.path.to_numpy()[local] != table.path.to_numpy()[inside])
    if len(moved):
        row = int(local[moved[0]]) + offset
        raise ValueError(
            f"exclusion table {exclude} lists pool row {row} under another path: it was made for another pool"
        )
    return np.unique(local)


def chosen_rows_manifest(pool_manifest: str | None, shard_table: str | None, rows: list[int]) -> pd.DataFrame:
    """The manifest rows of the pool rows chosen (from the shards they lie in, with a shard table)."""
    if not shard_table:
        return read_manifest(pool_manifest, labelled=False).iloc[rows].reset_index(drop=True)
    table = read_shard_table(shard_table)
    rows = np.asarray(rows, dtype=np.int64)
    shard_of = np.searchsorted(table.offset.to_numpy(), rows, side="right") - 1
    frames, positions = [], []
    for shard in np.unique(shard_of).tolist():
        inside = np.flatnonzero(shard_of == shard)
        part = part_manifest(table.metadata.iloc[shard])
        frames.append(part.iloc[rows[inside] - int(table.offset.iloc[shard])])
        positions.append(inside)
    if not frames:
        return pd.DataFrame(columns=["path", "label"])
    joined = pd.concat(frames, ignore_index=True)
    return joined.iloc[np.argsort(np.concatenate(positions), kind="stable")].reset_index(drop=True)


def clip_retrieval_parts(folder: str, captions: bool = True) -> list[dict[str, Path]]:
    """The parts of a clip-retrieval folder in part order, each {kind: file}; every kind must have every part."""
    root = Path(folder)
    kinds = [kind for kind in PARTS if captions or kind != "text_emb"]
    numbers = {}
    for kind in kinds:
        pattern = re.compile(re.escape(PARTS[kind]).replace(r"\{\}", r"(\d+)") + "$")
        found = [pattern.match(path.name) for path in sorted((root / kind).glob("*"))]
        numbers[kind] = {int(match[1]): root / kind / match[0] for match in found if match}
        if not numbers[kind]:
            raise ValueError(f"clip-retrieval folder {folder} has no {kind}/{PARTS[kind].format('<i>')}")
    every = sorted(set().union(*(set(parts) for parts in numbers.values())))
    for kind in kinds:
        missing = [number for number in every if number not in numbers[kind]]
        if missing:
            names = [PARTS[kind].format(number) for number in missing[:5]]
            raise ValueError(f"clip-retrieval folder {folder} lacks {kind}/ part(s) {names}")
    return [{kind: numbers[kind][number] for kind in kinds} for number in every]


def clip_dimension(model: str, pretrained: str | None) -> tuple[int, object]:
    """The embedding width of a CLIP model, and a function embedding texts with it."""
    from augbench.clip_embeddings import embed_texts

    def encode(texts: list[str]) -> np.ndarray:
        return embed_texts(texts, None, model, pretrained, "cpu")

    return encode(["a photo"]).shape[1], encode


def check_clip_model(
    folder: str, width: int, model: str, pretrained: str | None, captions: list[str], stored: np.ndarray
) -> None:
    """That a folder's embeddings come from ``model``: their ``width``, and a few ``captions`` embedded by it
    against their ``stored`` embeddings (rows as the captions; none: the width alone)."""
    expected, encode = clip_dimension(model, pretrained)
    if width != expected:
        raise ValueError(
            f"the embeddings in {folder} have {width} dimensions but clip.model {model} gives {expected}: "
            "they were made with another CLIP"
        )
    if not captions:
        return
    stored = np.asarray(stored[: len(captions)], dtype=np.float32)
    agreement = float(np.median(np.einsum("ij,ij->i", stored, encode(list(captions)))))
    if agreement < 0.9:
        raise ValueError(
            f"the caption embeddings in {folder} do not match clip.model {model} "
            f"(median cosine {agreement:.2f} over {len(captions)} captions): they were made with another CLIP"
        )


def block_pieces(pool_manifest, shard, shards, parts, shard_table, pool_embeddings, image_embeddings, index):
    """(manifest rows, pool row of the first, searched embeddings, image embeddings, name) of each shard
    of a job's block, opened one at a time (memory-mapped, nothing read yet)."""
    table = read_shard_table(shard_table) if shard_table else None
    if table is not None and names_embeddings(table):
        for entry in table.iloc[shard * parts : (shard + 1) * parts].itertuples():
            frame = part_manifest(entry.metadata)
            if len(frame) != int(entry.rows):
                raise ValueError(f"{entry.metadata} has {len(frame)} rows but {shard_table} lists {entry.rows}")
            searched = getattr(entry, index)
            yield frame, int(entry.offset), open_embeddings(searched), open_embeddings(entry.images), searched
        return
    if table is not None:
        # Listings of blocks of tars: a job's block is its listing, its embeddings what embed_pool wrote.
        if len(table) != shards or not pool_embeddings:
            raise ValueError(
                f"shard table {shard_table} lists {len(table)} listings and names no embeddings: "
                f"a job searches one of them ({shards} blocks) with its embeddings (--pool-embeddings)"
            )
        frame, offset = _table_entry(table, shard, shard_table)
    else:
        frame, offset = shard_manifest(pool_manifest, shard, shards)
    embeddings = open_embeddings(pool_embeddings)
    fingerprints = open_embeddings(image_embeddings) if image_embeddings else embeddings
    for array, name in ((embeddings, pool_embeddings), (fingerprints, image_embeddings or pool_embeddings)):
        if len(array) != len(frame):
            raise ValueError(f"{name} has {len(array)} rows but block {shard} of {shards} of the pool has {len(frame)}")
    for part in range(parts):
        span = shard_block(len(frame), part, parts)
        if len(span) == 0:
            continue
        lo, hi = int(span[0]), int(span[-1]) + 1
        name = f"{pool_embeddings} rows {lo}..{hi - 1}"
        yield frame.iloc[lo:hi].reset_index(drop=True), offset + lo, embeddings[lo:hi], fingerprints[lo:hi], name
