"""Retrieval from a pool in shards, run through the module command lines as the workflow runs them.

A synthetic pool of ``ROWS`` 768-d unit vectors (float16, as LAION's and DataComp's embeddings
ship; the clustered mixture of bench_search) in ``SHARDS`` parts, each an ``.npy`` beside a
metadata ``.parquet``, listed in a shard table (``augbench.pool_parts``). Each shard is searched by
its own ``python -m augbench.sharded_retrieval search`` job, then the merge joins them
(``merge``), round after round where it asks for deeper lists, once with the index each shard
gets by default (``--search auto``: IVF with fp16 vectors above 200,000 rows) and once exact
(``Flat``). 1,000 class-prompt queries, 100 images per class (k = 100).

Figures: each search job's wall time, the merge's, the largest job's peak resident memory (GNU
time) and recall@k: the share of the exact merge's (row, class) pairs the approximate one finds.

    python benchmarks/run.py --only sharded                                # 10,000,000 rows, 10 shards
    AUGBENCH_SHARDED_ROWS=200000 AUGBENCH_SHARDED_SEARCH=IVF64,SQfp16 python benchmarks/run.py --only sharded

``AUGBENCH_SHARDED_SEARCH`` names the approximate index (default ``auto``: at 200,000 rows a shard
is below the exact limit, so a small run names an IVF index to measure one); ``AUGBENCH_BENCH_TMP``
the folder for the pool (15 GB at full size).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_search
import numpy as np
import pandas as pd

ROWS = int(os.environ.get("AUGBENCH_SHARDED_ROWS", 10_000_000))
SHARDS = int(os.environ.get("AUGBENCH_SHARDED_SHARDS", 10))
APPROXIMATE = os.environ.get("AUGBENCH_SHARDED_SEARCH", "auto")
PER_CLASS = 100


def write_pool(folder: Path) -> Path:
    """The shards, the queries, the classes and a one-image-per-class subset; returns the shard table."""
    rng = np.random.default_rng(2)
    centres = rng.standard_normal((bench_search.CLUSTERS, bench_search.DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    entries, offset = [], 0
    for shard, rows in enumerate(np.array_split(np.arange(ROWS), SHARDS)):
        vectors = folder / f"shard{shard}.npy"
        array = np.lib.format.open_memmap(vectors, mode="w+", dtype=np.float16, shape=(len(rows), bench_search.DIM))
        for start in range(0, len(rows), 100_000):
            count = min(100_000, len(rows) - start)
            array[start : start + count] = bench_search.mixture(rng, centres, count)
        array.flush()
        del array
        metadata = folder / f"shard{shard}.parquet"
        pd.DataFrame({"image_path": [f"pool/{row}.jpg" for row in rows]}).to_parquet(metadata)
        entries.append((shard, len(rows), offset, str(metadata), str(vectors), str(vectors)))
        offset += len(rows)
    table = folder / "shards.csv"
    pd.DataFrame(entries, columns=["shard", "rows", "offset", "metadata", "images", "captions"]).to_csv(
        table, index=False
    )
    np.save(folder / "prompts.npy", centres)  # one query per class, near its cluster
    classes = [f"class{i}" for i in range(bench_search.CLUSTERS)]
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    pd.DataFrame({"path": [f"real/{i}.jpg" for i in range(len(classes))], "label": range(len(classes))}).to_csv(
        folder / "subset.csv", index=False
    )
    return table


def run_job(arguments: list[str], log: Path, module: str = "augbench.sharded_retrieval") -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one module command line."""
    command = ["/usr/bin/time", "-f", "peak_kb %M", sys.executable, "-m", module, *arguments]
    start = time.perf_counter()
    with open(log, "w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    text = log.read_text()
    if status != 0:
        raise RuntimeError(f"{' '.join(arguments[:3])} failed:\n{text[-2000:]}")
    return seconds, int(text.rsplit("peak_kb ", 1)[1].split()[0]) / 1024


def retrieve(
    folder: Path,
    pool: list[str],
    search: str,
    shards: int = SHARDS,
    per_class: int = PER_CLASS,
    shard_options=lambda shard: [],
) -> dict:
    """Every shard searched by its own job, then merged; rounds until the merge is done. ``pool``: the
    pool's options (``--shard-table`` or ``--pool``); ``shard_options(shard)``: a search job's own."""
    work = folder / search.replace(",", "_")
    common = [*pool, "--queries", str(folder / "prompts.npy")]
    common += ["--subset", str(folder / "subset.csv"), "--classes", str(folder / "classes.txt")]
    common += ["--per-class", str(per_class), "--search", search]
    latest = [0] * shards
    searches, peaks, merges = [], [], []
    asked = list(range(shards))
    for round_ in range(10):
        (work / f"round{round_}").mkdir(parents=True)
        for shard in asked:
            out = work / f"round{round_}/shard{shard}.npz"
            seconds, peak = run_job(
                ["search", *common, "--shard", str(shard), "--shards", str(shards), "--round", str(round_)]
                + [*shard_options(shard), "--out", str(out)],
                work / f"round{round_}/shard{shard}.log",
            )
            searches.append(seconds)
            peaks.append(peak)
            latest[shard] = round_
        candidates = [str(work / f"round{latest[shard]}/shard{shard}.npz") for shard in range(shards)]
        merged = work / f"round{round_}/merged"
        seconds, peak = run_job(
            ["merge", *common, "--candidates", *candidates, "--out-dir", str(merged)], work / f"round{round_}/merge.log"
        )
        merges.append(seconds)
        peaks.append(peak)
        status = json.loads((merged / "status.json").read_text())
        if status["done"]:
            added = pd.read_csv(merged / "added.csv")
            return {"added": added, "searches": searches, "merges": merges, "peak": max(peaks), "rounds": round_ + 1}
        asked = status["deepen"]
    raise RuntimeError("the merge asked for deeper searches ten rounds running")


def measure() -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("AUGBENCH_BENCH_TMP")) as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        table = write_pool(folder)
        written = time.perf_counter() - start
        print(f"   {ROWS:,} x {bench_search.DIM} float16 in {SHARDS} shards written in {written:.0f} s")
        approximate = retrieve(folder, ["--shard-table", str(table)], APPROXIMATE)
        exact = retrieve(folder, ["--shard-table", str(table)], "Flat")
    pairs = set(zip(exact["added"].pool_row, exact["added"].label))
    found = set(zip(approximate["added"].pool_row, approximate["added"].label))
    recall = len(pairs & found) / len(pairs)
    searches = approximate["searches"]
    merge, rounds = sum(approximate["merges"]), approximate["rounds"]
    print(
        f"   {APPROXIMATE}: {len(searches)} search jobs, {np.mean(searches):.1f} s each (max {max(searches):.1f} s), "
        f"merge {merge:.1f} s in {rounds} round(s), peak {approximate['peak']:,.0f} MB; exact: "
        f"{np.mean(exact['searches']):.1f} s per search, peak {exact['peak']:,.0f} MB; recall@{PER_CLASS} {recall:.4f}"
    )
    return {
        "sharded_pool_rows": ROWS,
        "sharded_pool_shards": SHARDS,
        "sharded_search_index": APPROXIMATE,
        "sharded_search_seconds": [round(seconds, 2) for seconds in searches],
        "sharded_search_peak_rss_mb": approximate["peak"],
        "sharded_merge_seconds": sum(approximate["merges"]),
        "sharded_rounds": approximate["rounds"],
        "sharded_recall_at_k": recall,
        "sharded_k": PER_CLASS,
        "sharded_exact_search_seconds": [round(seconds, 2) for seconds in exact["searches"]],
        "sharded_exact_peak_rss_mb": exact["peak"],
    }
