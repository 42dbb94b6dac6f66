"""Retrieve extra training images from the pool by CLIP similarity.

The queries and the searched embeddings make the method:
- ``retrieve_text``: each class prompt's CLIP text embedding searches the pool's image embeddings;
- ``retrieve_caption``: the same queries search the pool's caption (text) embeddings;
- ``retrieve_image``: each real training image's CLIP image embedding searches the pool's
  image embeddings, and what it finds takes the query image's class (``--query-manifest``).

    python -m augbench.retrieve --pool pool.csv --pool-embeddings pool.npy \
        --queries prompts.npy --subset subset.csv --classes classes.txt --out added.csv

Every class gets its quota (see ``augbench.quotas.class_quotas``). An image that several
classes retrieve goes to the closest class that still has room, and is used once.
The search over-fetches and widens until every class has its quota, or says which
class the pool cannot fill. With ``--min-clip-score`` (or ``--min-clip-score-file``) a
pool image is only taken for a class if its CLIP score against the class prompt
(``--class-prompts``) reaches that class's threshold (``augbench.quality``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd

from augbench.cli import add_settings, setting, settings_from, start_logging
from augbench.copies import excluded_rows
from augbench.files import read_classes, read_manifest, write_manifest
from augbench.quality import class_thresholds, pool_filter, read_class_features, write_quality
from augbench.quotas import candidate_quotas, class_quotas
from augbench.search import build_index, release_pages, search_index

log = logging.getLogger(__name__)


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
    image_embeddings: np.ndarray,
    dedup: bool = Retrieval.dedup,
    decimals: int = 3,
    chunk: int = 1 << 16,
    excluded: np.ndarray | None = None,
) -> np.ndarray:
    """Rows of the pool to search: every readable image not in ``excluded`` (rows that
    ``augbench.exclude`` lists), or with ``dedup`` the first of each group of identical images.

    An image the embedding could not read has a zero row (a real embedding has norm 1).
    Web pools repeat images (the same picture under many URLs); identical images have
    identical embeddings, so a rounded embedding is their fingerprint (kept as a 16-byte
    digest: a million 768-d keys would take 3 GB).
    """
    allowed = np.ones(len(image_embeddings), dtype=bool)
    if excluded is not None:
        allowed[np.asarray(excluded, dtype=np.int64)] = False
    seen: set[bytes] = set()
    keep = []
    for start in range(0, len(image_embeddings), chunk):
        block = np.array(image_embeddings[start : start + chunk], dtype=np.float32)  # a copy: pages released below
        release_pages(image_embeddings)
        readable = (np.einsum("ij,ij->i", block, block) > 0.25) & allowed[start : start + chunk]
        if not dedup:
            keep += (start + np.flatnonzero(readable)).tolist()
            continue
        block = np.round(block, decimals) + 0.0
        for offset in np.flatnonzero(readable).tolist():
            key = hashlib.blake2b(block[offset].tobytes(), digest_size=16).digest()
            if key not in seen:
                seen.add(key)
                keep.append(start + offset)
    return np.asarray(keep, dtype=np.int64)


def assign_nearest(
    index: faiss.Index,
    queries: np.ndarray,
    quotas: list[int],
    overfetch: float = Retrieval.overfetch,
    query_labels: np.ndarray | None = None,
    accept: Callable[[int, int], bool] | None = None,
    class_names: list[str] | None = None,
) -> list[tuple[int, int, float]]:
    """Return (class, pool row, similarity) triples, ``quotas[c]`` per class, each row once.

    Each query belongs to a class (``query_labels``; by default query c is class c's).
    A class's quota is shared evenly among its queries, so every real image of a
    class contributes when images are the queries. Candidate pairs are taken best
    first: an image that several queries retrieve goes to the closest class that
    still has room. The search fetches ``overfetch`` times each query's share and
    widens until every quota is met. ``accept(row, class)``, where given, can refuse
    a candidate for a class (the CLIP-score filter); see ``assign_filtered``.
    """
    return assign_filtered(index, queries, quotas, overfetch, query_labels, accept, class_names)[0]


def assign_filtered(
    index: faiss.Index,
    queries: np.ndarray,
    quotas: list[int],
    overfetch: float = Retrieval.overfetch,
    query_labels: np.ndarray | None = None,
    accept: Callable[[int, int], bool] | None = None,
    class_names: list[str] | None = None,
) -> tuple[list[tuple[int, int, float]], list[int]]:
    """``assign_nearest``, and per class the pool images ``accept`` refused before its quota was met."""
    labels_of = np.arange(len(queries)) if query_labels is None else np.asarray(query_labels, dtype=int)
    if len(labels_of) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(labels_of)} query labels")
    n_classes = len(quotas)
    queries_per_class = np.bincount(labels_of, minlength=n_classes)[:n_classes]
    asked = [c for c in range(n_classes) if quotas[c] > 0 and queries_per_class[c] == 0]
    if asked:
        raise ValueError(f"class(es) {asked} have a quota but no query")
    share = [int(np.ceil(quotas[c] / max(1, queries_per_class[c]))) for c in range(n_classes)]
    n_pool = index.ntotal
    k = min(n_pool, max(1, int(np.ceil(max(share) * overfetch))))
    while True:
        scores, rows = search_index(index, queries, k)
        order = np.argsort(-scores, axis=None, kind="stable")
        query_of, rank_of = np.unravel_index(order, scores.shape)
        room = list(quotas)
        query_room = [share[label] for label in labels_of]
        taken: set[int] = set()
        refused: list[set[int]] = [set() for _ in range(n_classes)]
        chosen = []
        for query, rank in zip(query_of.tolist(), rank_of.tolist()):
            row, label = int(rows[query, rank]), int(labels_of[query])
            if row < 0 or room[label] == 0 or query_room[query] == 0 or row in taken:
                continue
            if accept is not None and not accept(row, label):
                refused[label].add(row)
                continue
            taken.add(row)
            room[label] -= 1
            query_room[query] -= 1
            chosen.append((label, row, float(scores[query, rank])))
        short = [label for label, left in enumerate(room) if left > 0]
        if not short or k >= n_pool:
            break
        k = min(n_pool, k * 2)
    if short:
        named = f" ({', '.join(class_names[c] for c in short)})" if class_names else ""
        filtered = " with images whose CLIP score reaches the class's min_clip_score" if accept else ""
        remedy = "lower min_clip_score, " if accept else ""
        raise ValueError(
            f"the pool of {n_pool} images cannot fill the quota of class(es) {short}{named}{filtered}: "
            f"{remedy}lower augment.per_class or use a larger pool"
        )
    chosen = sorted(chosen, key=lambda item: (item[0], -item[2], item[1]))
    return chosen, [len(rows_refused) for rows_refused in refused]


def retrieve(
    pool_manifest: str,
    pool_embeddings: str,
    queries_path: str,
    subset_manifest: str,
    classes_path: str,
    out: str,
    settings: Retrieval | None = None,
    *,
    query_manifest: str | None = None,
    image_embeddings: str | None = None,
    class_prompts: str | None = None,
    exclude: str | None = None,
    quality_out: str | None = None,
) -> pd.DataFrame:
    """Write the manifest of retrieved images; ``query_manifest`` labels image queries (one row per query);
    ``image_embeddings`` tell unreadable and identical pool images (default: ``pool_embeddings``);
    ``exclude`` is a table of pool rows to leave out (``augbench.exclude``). With
    ``settings.candidate_factor`` it retrieves that many times each quota, as candidates for ``augbench.download``.

    With a CLIP-score threshold (``augbench.quality``), a pool image whose image embedding is
    less similar to the class prompt's (``class_prompts``) than the class's threshold is not
    taken for that class; ``quality_out`` gets the per-class count of images passed over.
    """
    settings = settings or Retrieval()
    classes = read_classes(classes_path)
    pool = read_manifest(pool_manifest, labelled=False)
    embeddings = np.load(pool_embeddings, mmap_mode="r")
    if len(embeddings) != len(pool):
        raise ValueError(f"{pool_embeddings} has {len(embeddings)} rows but {pool_manifest} lists {len(pool)} images")
    queries = np.load(queries_path)
    query_labels = None
    if query_manifest:
        query_labels = read_manifest(query_manifest).label.to_numpy()
        if len(query_labels) != len(queries):
            raise ValueError(f"{queries_path} has {len(queries)} rows but {query_manifest} lists {len(query_labels)}")
    quotas = class_quotas(read_manifest(subset_manifest), len(classes), settings.per_class)
    thresholds = class_thresholds(classes_path, settings.min_clip_score, settings.min_clip_score_file)
    if settings.candidate_factor is not None:
        quotas = candidate_quotas(quotas, settings.candidate_factor)
    # Unreadable and identical images are found by their image embeddings, even when
    # captions are searched: many different pictures share a caption ("a photo of a three").
    fingerprints = np.load(image_embeddings, mmap_mode="r") if image_embeddings else embeddings
    if len(fingerprints) != len(pool):
        raise ValueError(
            f"{image_embeddings} has {len(fingerprints)} rows but {pool_manifest} lists {len(pool)} images"
        )
    excluded = excluded_rows(exclude, pool) if exclude else None
    searched = searchable_rows(fingerprints, settings.dedup, excluded=excluded)
    if len(searched) < len(embeddings):
        log.info(
            "searching %d of %d pool images (unreadable ones%s left out%s)",
            len(searched),
            len(pool),
            f" and {len(excluded)} listed in {exclude}" if excluded is not None else "",
            ", identical ones counted once" if settings.dedup else "",
        )
    if len(searched) == 0:
        raise ValueError(
            f"no image of the pool's {len(pool)} is left to search: each is unreadable"
            + (f" or listed in {exclude} (check contamination.*_threshold and the safety tags)" if exclude else "")
        )
    index = build_index(embeddings, searched, settings.search, settings.index_memory_gb * 1e9, settings.nprobe)
    accept = None
    if thresholds is not None:
        if not class_prompts:
            raise ValueError("a min_clip_score needs the class prompts' CLIP embeddings (--class-prompts)")
        accept = pool_filter(fingerprints, searched, read_class_features(class_prompts, classes), thresholds)
    chosen, refused = assign_filtered(index, queries, quotas, settings.overfetch, query_labels, accept, classes)
    if thresholds is not None:
        log.info("the CLIP-score filter passed over %d pool images", sum(refused))
    rows = [int(searched[row]) for _, row, _ in chosen]
    added = pd.DataFrame(
        {
            "path": pool.path.to_numpy()[rows],
            "label": [label for label, _, _ in chosen],
            "score": [score for _, _, score in chosen],
            "pool_row": rows,
        }
    )
    for column in ("caption", "url"):
        if column in pool:
            added[column] = pool[column].to_numpy()[rows]
    write_manifest(out, added)
    if quality_out:
        kept = np.bincount(added.label.to_numpy(dtype=int), minlength=len(classes))
        write_quality(quality_out, classes, thresholds, kept, refused)
    return added


def main(argv: list[str] | None = None) -> None:
    # The settings' defaults live in Retrieval: an option left out takes it (settings_from).
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="pool manifest")
    parser.add_argument(
        "--pool-embeddings", required=True, help=".npy of the pool's image or caption embeddings, rows as the manifest"
    )
    parser.add_argument("--queries", required=True, help=".npy of query embeddings (default: one per class, in order)")
    parser.add_argument("--query-manifest", help="manifest whose labels give each query's class (image queries)")
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True, help="manifest of retrieved images")
    parser.add_argument(
        "--image-embeddings",
        help="the pool's image embeddings, which tell unreadable and identical images (default: --pool-embeddings)",
    )
    parser.add_argument("--class-prompts", help=".npy of the class prompts' CLIP text embeddings")
    parser.add_argument("--quality", help="CSV of the images the CLIP-score filter passed over per class")
    parser.add_argument("--exclude", help="table of pool rows to leave out (augbench.exclude)")
    add_settings(parser, Retrieval)
    args = parser.parse_args(argv)
    start_logging()
    added = retrieve(
        args.pool,
        args.pool_embeddings,
        args.queries,
        args.subset,
        args.classes,
        args.out,
        settings_from(args, Retrieval),
        query_manifest=args.query_manifest,
        image_embeddings=args.image_embeddings,
        class_prompts=args.class_prompts,
        exclude=args.exclude,
        quality_out=args.quality,
    )
    log.info("retrieved %d images into %s", len(added), args.out)


if __name__ == "__main__":
    main()
