"""Retrieval from a pool held as one shard: a search and a merge (``augbench.sharded_retrieval``),
round after round, as the workflow runs them for a pool of one shard."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from augbench.sharded_retrieval import Retrieval, retrieve_sharded


def retrieve_whole_pool(
    pool_manifest: str,
    pool_embeddings: str,
    queries: str,
    subset_manifest: str,
    classes: str,
    work_dir: str,
    settings: Retrieval | None = None,
    *,
    image_embeddings: str | None = None,
    exclude: str | None = None,
    query_manifest: str | None = None,
    class_prompts: str | None = None,
    quality_out: str | None = None,
) -> pd.DataFrame:
    """The added manifest; ``quality_out`` gets the last merge's table of what the CLIP-score filter passed over."""
    added = retrieve_sharded(
        pool_manifest,
        [pool_embeddings],
        queries,
        subset_manifest,
        classes,
        work_dir,
        settings,
        shard_image_embeddings=[image_embeddings] if image_embeddings else None,
        shard_excluded=[exclude] if exclude else None,
        query_manifest=query_manifest,
        class_prompts=class_prompts,
    )
    if quality_out:
        last = max(
            Path(work_dir).glob("round*/merged"), key=lambda merged: int(merged.parent.name.removeprefix("round"))
        )
        shutil.copy(last / "quality.csv", quality_out)
    return added
