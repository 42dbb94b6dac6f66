"""Retrieve extra training images from the pool by CLIP similarity.

``text`` queries: for each class, the class prompt's CLIP text embedding searches the
pool's CLIP image embeddings; the nearest images are labelled with that class.

    python -m augbench.retrieve --pool pool.csv --pool-embeddings pool.npy \
        --queries prompts.npy --subset subset.csv --classes classes.txt --out added.csv

Every class gets its quota (see ``augbench.subset.class_quotas``). An image that several
classes retrieve goes to the closest class that still has room, and is used once.
The search over-fetches and widens until every class has its quota, or says which
class the pool cannot fill.
"""

from __future__ import annotations

import argparse
import logging

import faiss
import numpy as np
import pandas as pd

from augbench.files import read_classes, read_manifest, write_manifest
from augbench.subset import class_quotas

log = logging.getLogger(__name__)


def exact_index(embeddings: np.ndarray) -> faiss.Index:
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def assign_nearest(
    index: faiss.Index, queries: np.ndarray, quotas: list[int], overfetch: float = 2.0
) -> list[tuple[int, int, float]]:
    """Return (class, pool row, similarity) triples, ``quotas[c]`` per class, each row once.

    Candidate pairs are taken best first: an image that several classes retrieve
    goes to the closest class that still has room. The search fetches
    ``overfetch`` times the largest quota and widens until every quota is met.
    """
    if len(queries) != len(quotas):
        raise ValueError(f"{len(queries)} queries but {len(quotas)} class quotas")
    n_pool = index.ntotal
    k = min(n_pool, max(1, int(np.ceil(max(quotas) * overfetch))))
    while True:
        scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        order = np.argsort(-scores, axis=None, kind="stable")
        labels, ranks = np.unravel_index(order, scores.shape)
        room = list(quotas)
        taken: set[int] = set()
        chosen = []
        for label, rank in zip(labels.tolist(), ranks.tolist()):
            row = int(rows[label, rank])
            if row < 0 or room[label] == 0 or row in taken:
                continue
            taken.add(row)
            room[label] -= 1
            chosen.append((label, row, float(scores[label, rank])))
        short = [label for label, left in enumerate(room) if left > 0]
        if not short or k >= n_pool:
            break
        k = min(n_pool, k * 2)
    if short:
        raise ValueError(
            f"the pool of {n_pool} images cannot fill the quota of class(es) {short}: "
            "lower augment.per_class or use a larger pool"
        )
    return sorted(chosen, key=lambda item: (item[0], -item[2], item[1]))


def retrieve(
    pool_manifest: str,
    pool_embeddings: str,
    queries_path: str,
    subset_manifest: str,
    classes_path: str,
    out: str,
    per_class: int | None = None,
    overfetch: float = 2.0,
) -> pd.DataFrame:
    classes = read_classes(classes_path)
    pool = read_manifest(pool_manifest)
    embeddings = np.load(pool_embeddings, mmap_mode="r")
    if len(embeddings) != len(pool):
        raise ValueError(f"{pool_embeddings} has {len(embeddings)} rows but {pool_manifest} lists {len(pool)} images")
    queries = np.load(queries_path)
    quotas = class_quotas(read_manifest(subset_manifest), len(classes), per_class)
    chosen = assign_nearest(exact_index(np.asarray(embeddings)), queries, quotas, overfetch)
    rows = [row for _, row, _ in chosen]
    added = pd.DataFrame(
        {
            "path": pool.path.to_numpy()[rows],
            "label": [label for label, _, _ in chosen],
            "score": [score for _, _, score in chosen],
            "pool_row": rows,
        }
    )
    if "caption" in pool:
        added["caption"] = pool.caption.to_numpy()[rows]
    write_manifest(out, added)
    return added


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", required=True, help="pool manifest")
    parser.add_argument("--pool-embeddings", required=True, help=".npy of pool image embeddings, rows as the manifest")
    parser.add_argument("--queries", required=True, help=".npy with one query embedding per class")
    parser.add_argument("--subset", required=True, help="the real subset, which sets the per-class quota")
    parser.add_argument("--classes", required=True)
    parser.add_argument("--out", required=True, help="manifest of retrieved images")
    parser.add_argument("--per-class", type=int, default=None, help="images per class (default: as many as real)")
    parser.add_argument("--overfetch", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    added = retrieve(
        args.pool,
        args.pool_embeddings,
        args.queries,
        args.subset,
        args.classes,
        args.out,
        args.per_class,
        args.overfetch,
    )
    log.info("retrieved %d images into %s", len(added), args.out)


if __name__ == "__main__":
    main()
