"""Retrieve extra training images from the pool by CLIP similarity, the pool in shards: a search per
shard (map), then a merge of their candidates (reduce).

    python -m augbench.sharded_retrieval search --pool pool.csv --shard 3 --shards 8 \
        --pool-embeddings shard3.npy [--image-embeddings shard3_images.npy] --exclude shard3_excluded.csv \
        --queries prompts.npy --subset subset.csv --classes classes.txt --round 0 --out round0/shard3.npz
    python -m augbench.sharded_retrieval merge --pool pool.csv --candidates round0/shard*.npz \
        --subset subset.csv --classes classes.txt --out-dir round0/merged

The queries and the searched embeddings make the method:
- ``retrieve_text``: each class prompt's CLIP text embedding searches the pool's image embeddings;
- ``retrieve_caption``: the same queries search the pool's caption (text) embeddings;
- ``retrieve_image``: each real training image's CLIP image embedding searches the pool's
  image embeddings, and what it finds takes the query image's class (``--query-manifest``).

Every class gets its quota (see ``augbench.quotas.class_quotas``), shared evenly among its
queries. An image that several classes retrieve goes to the closest class that still has
room, and is used once; identical images (the same picture under many URLs) count once,
the best-scoring copy (ties to the lowest row). With ``--min-clip-score`` (or
``--min-clip-score-file``) a pool image is only taken for a class if its CLIP score against
the class prompt (``--class-prompts``) reaches that class's threshold (``augbench.quality``).

No job reads more than one shard's vectors. A shard search returns, for every query, its
best ``depth`` rows (global pool rows, scores, the image fingerprint that tells identical
images, and whether the CLIP-score filter passes the row for the query's class). The
candidates' manifest rows (path, caption, URL) travel with them, so the merge reads no
pool metadata: at billions of rows its chosen images lie in nearly every shard. The
depth is generous: ``DEPTH_GROWTH`` times the first search depth (each query's share of
its class's quota, times ``overfetch``) in round 0, and ``DEPTH_GROWTH`` times more each
later round.

The merge applies the rules above to the union, widening a short class's depth until its
quota is met. It only uses the part of each query's merged list that is exact: a shard that
was cut off at depth d could still hold rows scoring up to its d-th score, so only
candidates scoring above every cut-off shard's last score are known to be the pool's
best. When a short class needs deeper lists than that, the merge writes ``status.json``
naming the shards whose cut-off could hide a better candidate, and a next round searches
only those shards, deeper (Snakemake: the merge is a checkpoint, see workflow/rules/retrieve.smk).
Ranking is by (score, pool row), so with exact search any split of the pool into shards
gives the same manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from augbench.cli import add_settings, run, setting, settings_from, start_logging
from augbench.files import atomic_path, read_classes, read_manifest, write_manifest
from augbench.pool_parts import (
    block_pieces,
    check_unit_rows,
    chosen_rows_manifest,
    excluded_in_shard,
)
from augbench.quality import class_thresholds, read_class_features, write_quality
from augbench.quotas import candidate_quotas, class_quotas
from augbench.search import build_index, release_pages, search_index

log = logging.getLogger(__name__)

DEPTH_GROWTH = 4  # each round returns this many times more candidates per query than the last
NO_ROW = np.iinfo(np.int64).max  # pads a query's list; sorts after every real row
# What a candidate's manifest row keeps for the added manifest (with its pool row).
CANDIDATE_COLUMNS = ("path", "caption", "url")


@dataclass
class Retrieval:
    """How a retrieval method searches the pool and what it takes (its entry in the method registry,
    and the index's memory budget, ``pool.index_memory_gb``); the files searched are the job's."""

    per_class: int | None = setting(None, help="images per class (None: as many as real)", config="methods.*.per_class")
    overfetch: float = setting(
        2.0,
        help="candidates fetched per query, as a multiple of its share of the quota",
        config="methods.*.overfetch",
    )
    dedup: bool = setting(True, help="count identical pool images once", config="methods.*.dedup")
    search: str = setting(
        "auto", help='"auto", or a faiss index factory string ("Flat", "IVF1024,PQ64")', config="methods.*.search"
    )
    nprobe: int | None = setting(
        None,
        help="inverted lists visited per query (IVF indexes; None: a hundredth of them, at least 8)",
        config="methods.*.nprobe",
    )
    index_memory_gb: float = setting(
        16.0, help="memory the automatic index choice may use", config="pool.index_memory_gb"
    )
    min_clip_score: float | None = setting(
        None, help="CLIP score a retrieved image must reach", config="methods.*.min_clip_score"
    )
    min_clip_score_file: str | None = setting(
        None, help="TSV of per-class thresholds (class, score)", config="methods.*.min_clip_score_file"
    )
    # Not methods.*.download.factor: a method that downloads nothing retrieves its quota, no candidates.
    candidate_factor: float | None = setting(
        None, help="retrieve this many times each quota, as candidates to download (None: the quota)"
    )


def searchable_rows(
    image_embeddings: np.ndarray, excluded: np.ndarray | None = None, chunk: int = 1 << 16
) -> np.ndarray:
    """Rows of a shard to search: every readable image not in ``excluded`` (rows that ``augbench.exclude``
    lists). An image the embedding could not read has a zero row (a real embedding has norm 1)."""
    allowed = np.ones(len(image_embeddings), dtype=bool)
    if excluded is not None:
        allowed[np.asarray(excluded, dtype=np.int64)] = False
    keep = []
    for start in range(0, len(image_embeddings), chunk):
        block = np.array(image_embeddings[start : start + chunk], dtype=np.float32)  # a copy: pages released below
        release_pages(image_embeddings)
        readable = (np.einsum("ij,ij->i", block, block) > 0.25) & allowed[start : start + chunk]
        keep.append(start + np.flatnonzero(readable))
    return np.concatenate(keep).astype(np.int64) if keep else np.zeros(0, dtype=np.int64)


def fingerprint_digests(vectors: np.ndarray, rows: np.ndarray, decimals: int = 3, chunk: int = 1 << 14) -> np.ndarray:
    """The fingerprint of each of ``rows``, as two uint64 per row, so identical images match across shards.

    Web pools repeat images (the same picture under many URLs); identical images have identical
    image embeddings, so a rounded embedding is their fingerprint, kept as a 16-byte digest (a
    million 768-d keys would take 3 GB). Image embeddings even when captions are searched: many
    different pictures share a caption ("a photo of a three")."""
    rows = np.asarray(rows)
    out = np.zeros((len(rows), 2), dtype=np.uint64)
    for start in range(0, len(rows), chunk):
        block = np.round(np.asarray(vectors[rows[start : start + chunk]], dtype=np.float32), decimals) + 0.0
        release_pages(vectors)
        digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in block)
        out[start : start + len(block)] = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)
    return out


def query_plan(
    subset_manifest: str, n_classes: int, n_queries: int, settings: Retrieval, query_manifest: str | None = None
) -> tuple[list[int], np.ndarray, list[int], int]:
    """(quota per class, class of each query, each class's share per query, the first search's depth)."""
    quotas = class_quotas(read_manifest(subset_manifest), n_classes, settings.per_class)
    if settings.candidate_factor is not None:
        quotas = candidate_quotas(quotas, settings.candidate_factor)
    labels = np.arange(n_queries) if query_manifest is None else read_manifest(query_manifest).label.to_numpy()
    labels = np.asarray(labels, dtype=int)
    if len(labels) != n_queries:
        raise ValueError(f"{n_queries} queries but {len(labels)} query labels")
    per_class = np.bincount(labels, minlength=n_classes)[:n_classes]
    asked = [c for c in range(n_classes) if quotas[c] > 0 and per_class[c] == 0]
    if asked:
        raise ValueError(f"class(es) {asked} have a quota but no query")
    share = [int(np.ceil(quotas[c] / max(1, per_class[c]))) for c in range(n_classes)]
    first = max(1, int(np.ceil(max(share, default=1) * settings.overfetch)))
    return quotas, labels, share, first


def round_depth(first: int, round_: int) -> int:
    return first * DEPTH_GROWTH ** (round_ + 1)


def search_shard(
    pool_manifest: str | None,
    shard: int,
    shards: int,
    pool_embeddings: str | None,
    queries_path: str,
    subset_manifest: str,
    classes_path: str,
    out: str,
    settings: Retrieval | None = None,
    *,
    round_: int = 0,
    query_manifest: str | None = None,
    image_embeddings: str | None = None,
    class_prompts: str | None = None,
    exclude: str | None = None,
    parts: int = 1,
    shard_table: str | None = None,
    index: str = "images",
) -> dict[str, np.ndarray]:
    """Search one job's block of the pool and write its candidates: the ``shard``-th of ``shards`` blocks
    of the pool manifest's rows (``pool_embeddings`` and ``image_embeddings`` hold its rows), or, with a
    shard table, its ``shard``-th block of ``parts`` parts (their ``index`` embeddings searched).

    A block of ``parts`` shards is indexed one shard after another (one index in memory at a time),
    and their lists are joined as one shard's would be."""
    settings = settings or Retrieval()
    classes = read_classes(classes_path)
    queries = np.ascontiguousarray(np.load(queries_path), dtype=np.float32)
    _, labels, _, first = query_plan(subset_manifest, len(classes), len(queries), settings, query_manifest)
    thresholds = class_thresholds(classes_path, settings.min_clip_score, settings.min_clip_score_file)
    features = None
    if thresholds is not None:
        if not class_prompts:
            raise ValueError("a min_clip_score needs the class prompts' CLIP embeddings (--class-prompts)")
        features = read_class_features(class_prompts, classes)
    wanted = round_depth(first, round_)
    lists = {
        "rows": np.full((len(queries), 0), -1, dtype=np.int64),
        "scores": np.full((len(queries), 0), -np.inf, dtype=np.float32),
        "digests": np.zeros((len(queries), 0, 2), dtype=np.uint64),
        "passes": np.ones((len(queries), 0), dtype=bool),
    }
    found_rows = []  # each piece's candidate rows of the manifest, by pool row
    searchable = 0
    for piece in block_pieces(
        pool_manifest, shard, shards, parts, shard_table, pool_embeddings, image_embeddings, index
    ):
        frame, offset, embeddings, fingerprints, name = piece
        for array in (embeddings, fingerprints):
            if len(array) != len(frame):
                raise ValueError(f"{name} has {len(array)} rows but its part of the pool has {len(frame)}")
            check_unit_rows(array, name)
        excluded = excluded_in_shard(exclude, frame, offset) if exclude else None
        # Identical images are told apart in the merge (they may lie in different shards): none is dropped here.
        searched = searchable_rows(fingerprints, excluded)
        searchable += len(searched)
        if len(searched) == 0:
            continue
        found_index = build_index(
            embeddings, searched, settings.search, settings.index_memory_gb * 1e9, settings.nprobe
        )
        scores, ids = search_index(found_index, queries, min(wanted, len(searched)))
        del found_index
        local = np.where(ids >= 0, searched[np.maximum(ids, 0)], -1)
        found = local >= 0
        digests = np.zeros(local.shape + (2,), dtype=np.uint64)
        passes = np.ones(local.shape, dtype=bool)
        unique = np.unique(local[found])
        where = np.searchsorted(unique, local[found])
        digests[found] = fingerprint_digests(fingerprints, unique)[where]
        found_rows.append(candidate_rows(frame, unique, offset))
        if features is not None:
            vectors = np.asarray(fingerprints[unique], dtype=np.float32)
            release_pages(fingerprints)
            query_class = np.broadcast_to(labels[:, None], local.shape)[found]
            similarity = np.einsum("ij,ij->i", vectors[where], features[query_class])
            passes[found] = similarity >= np.asarray(thresholds)[query_class]
        piece_lists = {
            "rows": np.where(found, local + offset, -1),
            "scores": np.where(found, scores, -np.inf).astype(np.float32),
            "digests": digests,
            "passes": passes,
        }
        lists = {key: np.concatenate([lists[key], piece_lists[key]], axis=1) for key in lists}
        order = np.lexsort((np.where(lists["rows"] >= 0, lists["rows"], NO_ROW), -lists["scores"]), axis=1)
        order = order[:, :wanted]
        lists = {
            key: np.take_along_axis(value, order[:, :, None] if value.ndim == 3 else order, axis=1)
            for key, value in lists.items()
        }
    depth = min(searchable, wanted)
    result = {key: value[:, :depth] for key, value in lists.items()}
    kept = pd.concat(found_rows, ignore_index=True) if found_rows else candidate_rows(pd.DataFrame(), [], 0)
    kept = kept[kept.pool_row.isin(np.unique(result["rows"]))]
    result |= {
        "searchable": np.int64(searchable),
        "depth": np.int64(depth),
        "shard": np.int64(shard),
        "round": np.int64(round_),
        "manifest": table_bytes(kept),
    }
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **result)
    log.info("block %d of %d: %d searchable rows, %d candidates per query", shard, shards, searchable, depth)
    return result


def candidate_rows(frame: pd.DataFrame, rows, offset: int) -> pd.DataFrame:
    """The manifest rows (``CANDIDATE_COLUMNS`` a pool has) of a piece's ``rows``, by pool row."""
    rows = np.asarray(rows, dtype=np.int64)
    picked = pd.DataFrame({"pool_row": rows + offset})
    for column in CANDIDATE_COLUMNS:
        if column in frame:
            picked[column] = frame[column].to_numpy()[rows].astype(str)
    return picked


def table_bytes(frame: pd.DataFrame) -> np.ndarray:
    """A table as Parquet bytes, stored in a candidates file beside its arrays (no pickle)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def bytes_table(array: np.ndarray) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(array.tobytes()))


class Candidates:
    """Every query's best candidates over the shards read, ranked by (score desc, row asc), and what
    the shards' cut-offs leave unknown."""

    def __init__(self, files: list[str]):
        self.files = list(files)
        headers = [np.load(path) for path in self.files]
        self.searchable = sum(int(header["searchable"]) for header in headers)
        self.shards = [int(header["shard"]) for header in headers]
        # Whole lists of the shards searched to the end, and twice the deepest list of the others
        # (the widening looks twice as deep; dropping more is what a cut-off does, see _add).
        whole = sum(int(header["depth"]) for header in headers if int(header["depth"]) >= int(header["searchable"]))
        cut = [int(header["depth"]) for header in headers if int(header["depth"]) < int(header["searchable"])]
        keep = whole + 2 * max(cut, default=0)
        self.rows = self.scores = self.digests = self.passes = None
        self.cutoff = None  # per query, the highest last score of a shard that was cut off
        # The candidates' manifest rows, where every shard's file holds them (files of older runs do not).
        carried = all("manifest" in header for header in headers)
        self.manifest = [] if carried else None
        for header in headers:
            self._add(header)
            if carried:
                self.manifest.append(bytes_table(header["manifest"]))
            if self.scores.shape[1] > 4 * keep:  # sorting once per few shards, not at every one
                self._rank(keep)
                self._drop_unranked_rows()
        if self.rows is not None:
            self._rank(keep)
            self._drop_unranked_rows()

    def _drop_unranked_rows(self) -> None:
        """Keep the manifest rows of the candidates still ranked: one table, as small as the lists."""
        if self.manifest is not None:
            joined = pd.concat(self.manifest, ignore_index=True)
            self.manifest = [joined[joined.pool_row.isin(np.unique(self.rows))]]

    def manifest_of(self, rows: list[int]) -> pd.DataFrame | None:
        """The manifest rows of these pool rows, in their order (None where the shards' files hold none)."""
        if self.manifest is None:
            return None
        table = self.manifest[0] if self.manifest else pd.DataFrame({"pool_row": []})
        table = table.drop_duplicates("pool_row").set_index("pool_row")
        missing = sorted(set(rows) - set(table.index))
        if missing:
            raise ValueError(f"the candidates files {self.files[:3]} lack the manifest rows of pool rows {missing[:5]}")
        return table.loc[rows].reset_index(drop=True)

    def _add(self, header) -> None:
        rows, scores = header["rows"], header["scores"]
        cut = int(header["depth"]) < int(header["searchable"])
        last = scores[:, -1] if cut and scores.shape[1] else np.full(len(scores), -np.inf, np.float32)
        if self.rows is None:
            self.rows, self.scores = rows, scores
            self.digests, self.passes, self.cutoff = header["digests"], header["passes"], last
            return
        self.rows = np.concatenate([self.rows, rows], axis=1)
        self.scores = np.concatenate([self.scores, scores], axis=1)
        self.digests = np.concatenate([self.digests, header["digests"]], axis=1)
        self.passes = np.concatenate([self.passes, header["passes"]], axis=1)
        self.cutoff = np.maximum(self.cutoff, last)

    def _rank(self, keep: int) -> None:
        """Rank each query's candidates by (score desc, row asc) and keep the best ``keep``."""
        if self.scores.shape[1] > keep:
            # The candidates dropped are unknown from now on, as a cut-off shard's.
            part = np.argpartition(-self.scores, keep - 1, axis=1)
            dropped = np.take_along_axis(self.scores, part[:, keep:], axis=1).max(axis=1)
            self.cutoff = np.maximum(self.cutoff, dropped)
            self._take(part[:, :keep])
        self._take(np.lexsort((np.where(self.rows >= 0, self.rows, NO_ROW), -self.scores), axis=1))

    def _take(self, order: np.ndarray) -> None:
        for name in ("rows", "scores", "passes"):
            setattr(self, name, np.take_along_axis(getattr(self, name), order, axis=1))
        self.digests = np.take_along_axis(self.digests, order[:, :, None], axis=1)

    def exact_depth(self) -> np.ndarray:
        """Per query, how many of its best candidates are surely the pool's best (scored above every cut-off)."""
        return ((self.scores > self.cutoff[:, None]) & (self.rows >= 0)).sum(axis=1)

    def shards_to_deepen(self, queries: np.ndarray, wanted: dict[int, int]) -> list[int]:
        """Shards cut off at or above the ``wanted[q]``-th best known score of some query q (deeper, they may
        hold better rows)."""
        queries = np.asarray(queries, dtype=np.int64)
        ranks = np.array([wanted[int(query)] for query in queries], dtype=np.int64)
        known = self.scores.shape[1]
        bars = np.full(len(queries), -np.inf, dtype=np.float32)
        within = ranks <= known
        bars[within] = self.scores[queries[within], ranks[within] - 1]
        needed = []
        for path, shard in zip(self.files, self.shards):
            header = np.load(path)
            if int(header["depth"]) >= int(header["searchable"]) or header["scores"].shape[1] == 0:
                continue
            if (header["scores"][queries, -1] >= bars).any():
                needed.append(shard)
        return sorted(needed)


def merge(
    candidates: Candidates,
    quotas: list[int],
    labels: np.ndarray,
    share: list[int],
    first: int,
    dedup: bool = True,
    class_names: list[str] | None = None,
    filtered: bool = False,
) -> tuple[list[tuple[int, int, float]] | None, list[int], list[int]]:
    """(class, pool row, score) triples, each class's refusals by the CLIP-score filter, and the shards to deepen
    (then the triples are None: the candidates are not deep enough yet)."""
    n_classes = len(quotas)
    depth = np.full(n_classes, first)
    exact = candidates.exact_depth()
    n_pool = candidates.searchable
    while True:
        # Each query's list must be known exact as deep as its class looks, else a shard searches deeper.
        unsure = np.flatnonzero((depth[labels] > exact) & (candidates.cutoff > -np.inf))
        if len(unsure):
            wanted = {int(query): int(depth[labels[query]]) for query in unsure}
            deeper = candidates.shards_to_deepen(unsure, wanted)
            if deeper:
                return None, [0] * n_classes, deeper
            exact[unsure] = depth[labels[unsure]]  # no cut-off shard can hold a better row
        limit = np.minimum(depth[labels], exact)
        query_of, rank_of = np.nonzero(np.arange(candidates.rows.shape[1])[None, :] < limit[:, None])
        scores = candidates.scores[query_of, rank_of]
        rows = candidates.rows[query_of, rank_of]
        order = np.lexsort((rows, query_of, -scores))
        # Python lists, walked once: indexing numpy arrays element by element is slow.
        ordered_queries = query_of[order].tolist()
        ordered_rows = rows[order].tolist()
        ordered_scores = scores[order].tolist()
        ordered_passes = candidates.passes[query_of[order], rank_of[order]].tolist()
        if dedup:
            digests = candidates.digests[query_of[order], rank_of[order]]
            ordered_keys = list(zip(digests[:, 0].tolist(), digests[:, 1].tolist()))
        else:
            ordered_keys = ordered_rows
        label_of = labels.tolist()
        room = list(quotas)
        query_room = [share[label] for label in label_of]
        taken: set = set()
        refused: list[set[int]] = [set() for _ in range(n_classes)]
        chosen = []
        for query, row, score, passes, key in zip(
            ordered_queries, ordered_rows, ordered_scores, ordered_passes, ordered_keys
        ):
            label = label_of[query]
            if row < 0 or room[label] == 0 or query_room[query] == 0 or key in taken:
                continue
            if not passes:
                refused[label].add(row)
                continue
            taken.add(key)
            room[label] -= 1
            query_room[query] -= 1
            chosen.append((label, row, score))
        short = [label for label, left in enumerate(room) if left > 0 and depth[label] < n_pool]
        if not short:
            break
        # A short class looks twice as deep.
        depth[short] = np.minimum(n_pool, depth[short] * 2)
    short = [label for label, left in enumerate(room) if left > 0]
    if short:
        named = f" ({', '.join(class_names[c] for c in short)})" if class_names else ""
        with_filter = " with images whose CLIP score reaches the class's min_clip_score" if filtered else ""
        remedy = "lower min_clip_score, " if filtered else ""
        raise ValueError(
            f"the pool of {n_pool} images cannot fill the quota of class(es) {short}{named}{with_filter}: "
            f"{remedy}lower augment.per_class or use a larger pool"
        )
    chosen = sorted(chosen, key=lambda item: (item[0], -item[2], item[1]))
    return chosen, [len(rows_refused) for rows_refused in refused], []


def merge_shards(
    pool_manifest: str,
    candidate_files: list[str],
    queries_path: str,
    subset_manifest: str,
    classes_path: str,
    out_dir: str,
    settings: Retrieval | None = None,
    *,
    query_manifest: str | None = None,
    shard_table: str | None = None,
) -> dict:
    """Merge shard candidates into ``out_dir``: ``status.json`` always; with ``"done": true`` also
    ``added.csv`` and ``quality.csv``, else ``"deepen"`` lists the shards a next round searches deeper."""
    settings = settings or Retrieval()
    classes = read_classes(classes_path)
    n_queries = len(np.load(queries_path, mmap_mode="r"))
    quotas, labels, share, first = query_plan(subset_manifest, len(classes), n_queries, settings, query_manifest)
    thresholds = class_thresholds(classes_path, settings.min_clip_score, settings.min_clip_score_file)
    candidates = Candidates(candidate_files)
    if candidates.rows is None or len(candidates.rows) != n_queries:
        raise ValueError(f"the candidates {candidate_files[:3]} are not for the {n_queries} queries of {queries_path}")
    if candidates.searchable == 0 and sum(quotas):
        raise ValueError(
            f"no image of the pool is left to search in {len(candidate_files)} shard(s): each is unreadable or "
            "listed in the exclusion tables (check contamination.*_threshold and the safety tags)"
        )
    chosen, refused, deeper = merge(
        candidates, quotas, labels, share, first, settings.dedup, classes, filtered=thresholds is not None
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    status = {"done": chosen is not None, "deepen": deeper}
    if chosen is not None:
        rows = [row for _, row, _ in chosen]
        pool = candidates.manifest_of(rows)
        if pool is None:  # candidates searched by an earlier version, without their manifest rows
            pool = chosen_rows_manifest(pool_manifest, shard_table, rows)
        added = pd.DataFrame(
            {
                "path": pool.path.to_numpy(),
                "label": [label for label, _, _ in chosen],
                "score": [score for _, _, score in chosen],
                "pool_row": rows,
            }
        )
        for column in ("caption", "url"):
            if column in pool:
                added[column] = pool[column].to_numpy()
        write_manifest(str(out / "added.csv"), added)
        kept = np.bincount(added.label.to_numpy(dtype=int), minlength=len(classes))
        write_quality(str(out / "quality.csv"), classes, thresholds, kept, refused)
        log.info("merged %d shards: %d images added", len(candidate_files), len(added))
    else:
        log.info("merged %d shards: shards %s must be searched deeper", len(candidate_files), deeper)
    with atomic_path(str(out / "status.json")) as tmp:
        Path(tmp).write_text(json.dumps(status))
    return status


def latest_rounds(shards: int, deepened: list[list[int]]) -> list[int]:
    """The round whose candidates each shard's merge reads: round 0 for all, then the last round
    that deepened it (``deepened[r]``: the shards round r's merge asked round r+1 to search)."""
    latest = [0] * shards
    for round_, asked in enumerate(deepened):
        for shard in asked:
            latest[shard] = round_ + 1
    return latest


def retrieve_sharded(
    pool_manifest: str,
    shard_embeddings: list[str],
    queries_path: str,
    subset_manifest: str,
    classes_path: str,
    work_dir: str,
    settings: Retrieval | None = None,
    *,
    shard_image_embeddings: list[str] | None = None,
    shard_excluded: list[str] | None = None,
    query_manifest: str | None = None,
    class_prompts: str | None = None,
    parts: int = 1,
    shard_table: str | None = None,
    max_rounds: int = 10,
) -> pd.DataFrame:
    """The map and reduce in one process, round after round, as the workflow runs them; the added manifest."""
    shards = len(shard_embeddings)
    work = Path(work_dir)
    deepened: list[list[int]] = []
    for round_ in range(max_rounds):
        asked = range(shards) if round_ == 0 else deepened[-1]
        for shard in asked:
            search_shard(
                pool_manifest,
                shard,
                shards,
                shard_embeddings[shard],
                queries_path,
                subset_manifest,
                classes_path,
                str(work / f"round{round_}/shard{shard}.npz"),
                settings,
                round_=round_,
                query_manifest=query_manifest,
                image_embeddings=shard_image_embeddings[shard] if shard_image_embeddings else None,
                class_prompts=class_prompts,
                exclude=shard_excluded[shard] if shard_excluded else None,
                parts=parts,
                shard_table=shard_table,
            )
        latest = latest_rounds(shards, deepened)
        files = [str(work / f"round{latest[shard]}/shard{shard}.npz") for shard in range(shards)]
        merged = work / f"round{round_}/merged"
        status = merge_shards(
            pool_manifest,
            files,
            queries_path,
            subset_manifest,
            classes_path,
            str(merged),
            settings,
            query_manifest=query_manifest,
            shard_table=shard_table,
        )
        if status["done"]:
            return read_manifest(str(merged / "added.csv"))
        deepened.append(status["deepen"])
    raise RuntimeError(f"the merge still asked for deeper shard searches after {max_rounds} rounds")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    search = commands.add_parser("search", help="search one shard of the pool")
    search.add_argument("--shard", type=int, required=True)
    search.add_argument("--shards", type=int, required=True, help="blocks the pool's rows are split into")
    search.add_argument("--pool-embeddings", help=".npy of the block's image or caption embeddings (with --pool)")
    search.add_argument(
        "--index", choices=("images", "captions"), default="images", help="what a shard table's parts search"
    )
    search.add_argument("--image-embeddings", help="the shard's image embeddings (default: --pool-embeddings)")
    search.add_argument("--exclude", help="table of pool rows to leave out (augbench.exclude)")
    search.add_argument("--class-prompts", help=".npy of the class prompts' CLIP text embeddings")
    search.add_argument("--round", type=int, default=0, help="round of the search (deeper each round)")
    search.add_argument("--parts", type=int, default=1, help="shards in the block, indexed one at a time")
    search.add_argument("--out", required=True, help=".npz of the shard's candidates")
    merged = commands.add_parser("merge", help="merge the shards' candidates into the added manifest")
    merged.add_argument("--candidates", nargs="+", required=True, help="each shard's latest candidates (.npz)")
    merged.add_argument("--out-dir", required=True, help="gets status.json, and added.csv and quality.csv when done")
    for sub in (search, merged):
        pool = sub.add_mutually_exclusive_group(required=True)
        pool.add_argument("--pool", help="pool manifest (a shard is a block of its rows)")
        pool.add_argument("--shard-table", help="the pool's parts as shards (augbench.precomputed)")
        sub.add_argument("--queries", required=True, help=".npy of query embeddings")
        sub.add_argument("--query-manifest", help="manifest whose labels give each query's class (image queries)")
        sub.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
        sub.add_argument("--classes", required=True)
        add_settings(sub, Retrieval)
    args = parser.parse_args(argv)
    start_logging()
    settings = settings_from(args, Retrieval)
    if args.command == "search":
        search_shard(
            args.pool,
            args.shard,
            args.shards,
            args.pool_embeddings,
            args.queries,
            args.subset,
            args.classes,
            args.out,
            settings,
            round_=args.round,
            query_manifest=args.query_manifest,
            image_embeddings=args.image_embeddings,
            class_prompts=args.class_prompts,
            exclude=args.exclude,
            parts=args.parts,
            shard_table=args.shard_table,
            index=args.index,
        )
    else:
        merge_shards(
            args.pool,
            args.candidates,
            args.queries,
            args.subset,
            args.classes,
            args.out_dir,
            settings,
            query_manifest=args.query_manifest,
            shard_table=args.shard_table,
        )


if __name__ == "__main__":
    run(main)
