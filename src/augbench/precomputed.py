"""Pools whose CLIP embeddings ship with them, read part by part where they lie (nothing is copied).

    python -m augbench.precomputed --layout datacomp --folder commonpool/ --model ViT-L-14 \
        --pretrained openai --out shards.csv

Two layouts, each a part per shard, its embeddings beside its metadata, rows in the same order:

- ``clip-retrieval`` (what ``clip-retrieval inference`` writes, and LAION's embedding
  releases): ``img_emb/img_emb_<i>.npy``, ``text_emb/text_emb_<i>.npy``, ``metadata/metadata_<i>.parquet``;
- ``datacomp`` (DataComp's CommonPool and DataComp-1B): ``<name>.parquet`` with ``<name>.npz``
  beside it, whose arrays ``l14_img``, ``l14_txt`` (ViT-L/14) and ``b32_img``, ``b32_txt``
  (ViT-B/32) are the image and caption embeddings.

An embedding file is named by a *spec*: a ``.npy`` path, or ``<file>.npz::<array>``. ``open_embeddings``
memory-maps either (an ``.npz`` stored uncompressed, as ``numpy.savez`` writes it, is mapped
at its member's offset in the zip), so a job reads the rows it touches and no more.

Checks on load, which ``shard_table`` makes before any search: each part's metadata and
embeddings have as many rows; every part has the width of ``clip.model``; and a few of the
first part's captions, embedded by ``clip.model``, match their stored text embeddings (else
the embeddings came from another CLIP). That vectors have unit length is checked by the
job that reads them (``check_unit_rows``), a shard at a time.

``embedding-reader`` (PyPI) reads the clip-retrieval layout too, but as batches streamed
into memory, not as arrays mapped in place, it reads no ``.npz``, and it pins pandas<3
(this environment has pandas 3): so this small reader.
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from augbench.cli import run, start_logging
from augbench.files import atomic_path
from augbench.pool_parts import CAPTION_COLUMNS, TABLE_COLUMNS, check_clip_model, clip_retrieval_parts, open_embeddings

log = logging.getLogger(__name__)

LAYOUTS = ("clip-retrieval", "datacomp")
# DataComp's arrays per CLIP: image and caption embeddings.
DATACOMP_ARRAYS = {"ViT-L-14": ("l14_img", "l14_txt"), "ViT-B-32": ("b32_img", "b32_txt")}


def layout_parts(folder: str, layout: str, model: str | None = None) -> list[dict[str, str]]:
    """Each part of a folder in part order: {metadata, images, captions} (embedding specs)."""
    root = Path(folder)
    if layout == "clip-retrieval":
        return [
            {"metadata": str(part["metadata"]), "images": str(part["img_emb"]), "captions": str(part["text_emb"])}
            for part in clip_retrieval_parts(folder)
        ]
    if layout != "datacomp":
        raise ValueError(f"unknown layout {layout!r}: one of {LAYOUTS}")
    if model not in DATACOMP_ARRAYS:
        raise ValueError(
            f"DataComp ships embeddings of {sorted(DATACOMP_ARRAYS)}, not of clip.model {model}: "
            "set clip.model to one of them, or embed the pool with yours"
        )
    images, captions = DATACOMP_ARRAYS[model]
    parts = []
    for metadata in sorted(root.glob("*.parquet"), key=_natural):
        arrays = metadata.with_suffix(".npz")
        if not arrays.exists():
            raise ValueError(f"DataComp folder {folder}: {metadata.name} has no {arrays.name} beside it")
        parts.append({"metadata": str(metadata), "images": f"{arrays}::{images}", "captions": f"{arrays}::{captions}"})
    if not parts:
        raise ValueError(f"DataComp folder {folder} has no <name>.parquet with <name>.npz beside it")
    return parts


def _natural(path: Path) -> list:
    return [int(piece) if piece.isdigit() else piece for piece in re.split(r"(\d+)", path.name)]


def _rows_of_parquet(path: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


def shard_table(
    folder: str,
    layout: str,
    out: str,
    model: str | None = None,
    pretrained: str | None = None,
    shards: int | None = None,
    caption_column: str | None = None,
    n_captions: int = 8,
    check_against_model: bool = True,
) -> pd.DataFrame:
    """Write the table of a folder's parts as pool shards (rows, first pool row, files), checked.

    ``shards``, where given, is the count the config expects (pool.shards). ``model`` picks
    DataComp's arrays, and the widths and a few captions' embeddings are checked against it
    (see the module's doc) unless ``check_against_model`` is False.
    """
    parts = layout_parts(folder, layout, model)
    if shards is not None and len(parts) != shards:
        raise ValueError(f"{folder} holds {len(parts)} parts ({layout} layout): set pool.shards: {len(parts)}")
    rows, widths = [], set()
    for part in parts:
        count = _rows_of_parquet(part["metadata"])
        for kind in ("images", "captions"):
            shape = open_embeddings(part[kind]).shape
            if len(shape) != 2 or shape[0] != count:
                raise ValueError(
                    f"{part[kind]} has {shape[0] if shape else 0} rows but {part['metadata']} has {count}: "
                    "a part's embeddings and metadata must correspond row by row"
                )
            widths.add(shape[1])
        rows.append(count)
    if len(widths) != 1:
        raise ValueError(f"the embeddings in {folder} differ in width: {sorted(widths)}")
    if model and check_against_model:
        check_model(parts[0], widths.pop(), model, pretrained, folder, caption_column, n_captions)
    table = pd.DataFrame(
        {
            "shard": range(len(parts)),
            "rows": rows,
            "offset": np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64),
            "metadata": [part["metadata"] for part in parts],
            "images": [part["images"] for part in parts],
            "captions": [part["captions"] for part in parts],
        },
        columns=TABLE_COLUMNS,
    )
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    return table


def check_model(part, width, model, pretrained, folder, caption_column=None, n_captions: int = 8) -> None:
    """The width of ``model``, and the first captions of ``part`` embedded by it against the stored ones."""
    metadata = pd.read_parquet(part["metadata"])
    column = caption_column or next((name for name in CAPTION_COLUMNS if name in metadata), None)
    captions = [] if column is None else metadata[column].fillna("").astype(str).iloc[:n_captions].tolist()
    check_clip_model(folder, width, model, pretrained, captions, open_embeddings(part["captions"]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", required=True, help="the pool's parts: metadata beside embeddings")
    parser.add_argument("--layout", required=True, choices=LAYOUTS)
    parser.add_argument("--out", required=True, help="CSV of the parts as pool shards")
    parser.add_argument("--model", default=None, help="the CLIP the embeddings must come from")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--shards", type=int, default=None, help="the parts the config expects (pool.shards)")
    parser.add_argument("--caption-column", default=None, help="the metadata's caption column (default: found)")
    args = parser.parse_args(argv)
    start_logging()
    table = shard_table(
        args.folder, args.layout, args.out, args.model, args.pretrained, args.shards, args.caption_column
    )
    log.info("%d parts, %d rows, listed in %s", len(table), int(table.rows.sum()), args.out)


if __name__ == "__main__":
    run(main)
