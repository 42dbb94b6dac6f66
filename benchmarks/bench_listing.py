"""Listing a webdataset pool a block of tars per job, and the table that joins the listings, run
through the module command lines as the workflow runs them (rules list_pool_shard, list_pool_table).

A synthetic pool of ``ROWS`` samples in tars of ``PER_TAR`` samples (img2dataset's layout: per sample
a 3 KB ``.jpg`` of random bytes, a ``.txt`` caption and a ``.json`` of LAION-like fields), listed by
``JOBS`` jobs of one thread each (``python -m augbench.pool webdataset --shard k --of JOBS``), then
by one job of two (``--threads 2``: two processes listing a tar each at a time); and
the table of ``TABLE_ROWS`` listed keys in ``JOBS`` listings (``python -m augbench.pool table``: every
key hashed and checked unique; written directly, as listing that many samples would take minutes).

Figures: the listing jobs' rows a second and the table job's, each over its wall time less the
start-up of the module (``--help``: the interpreter and imports, which the cost model counts apart as
job_start_s), and the largest job's peak resident memory. The cost model (``cost_model.py pool``)
plans Re-LAION's listing and table jobs from these rates.

    python benchmarks/run.py --only listing                 # 100,000 samples in 10 tars, 2 jobs
    AUGBENCH_LISTING_ROWS=20000 python benchmarks/run.py --only listing
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from bench_sharded import run_job

ROWS = int(os.environ.get("AUGBENCH_LISTING_ROWS", 100_000))
TABLE_ROWS = int(os.environ.get("AUGBENCH_LISTING_TABLE_ROWS", 10_000_000))
PER_TAR = 10_000  # img2dataset's default number of samples a tar
JOBS = 2
IMAGE_BYTES = 3_000


def _member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def write_tars(folder: Path) -> int:
    """The pool's tars; returns how many."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, IMAGE_BYTES, dtype=np.uint8).tobytes()  # listing never decodes it
    tars = -(-ROWS // PER_TAR)
    for number in range(tars):
        with tarfile.open(folder / f"{number:05d}.tar", "w") as tar:
            for row in range(number * PER_TAR, min(ROWS, (number + 1) * PER_TAR)):
                key = f"{row:09d}"
                meta = {"url": f"http://example.org/{key}.jpg", "width": 256, "height": 256, "punsafe": 0.01}
                _member(tar, f"{key}.jpg", image)
                _member(tar, f"{key}.txt", f"a photo of thing number {row}".encode())
                _member(tar, f"{key}.json", json.dumps(meta).encode())
    return tars


def write_listings(folder: Path) -> list[str]:
    """``TABLE_ROWS`` distinct keys, as img2dataset names samples, in ``JOBS`` listings (the table
    reads their key column alone)."""
    listings = []
    for job, rows in enumerate(np.array_split(np.arange(TABLE_ROWS), JOBS)):
        listings.append(str(folder / f"keys{job}.parquet"))
        pd.DataFrame({"key": [f"{row:09d}" for row in rows]}).to_parquet(listings[-1], index=False)
    return listings


def measure() -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("AUGBENCH_BENCH_TMP")) as tmp:
        folder = Path(tmp)
        (folder / "shards").mkdir()
        tars = write_tars(folder / "shards")
        start_up, _ = run_job(["--help"], folder / "help.log", "augbench.pool")
        seconds, peaks = [], []
        for job in range(JOBS):
            arguments = ["webdataset", "--shards", str(folder / "shards"), "--shard", str(job), "--of", str(JOBS)]
            arguments += ["--out", str(folder / f"listing{job}.parquet"), "--threads", "1"]
            wall, peak = run_job(arguments, folder / "list.log", "augbench.pool")
            seconds.append(wall)
            peaks.append(peak)
        # The whole pool by one job of two processes (the rule's threads), against the jobs of one.
        arguments = ["webdataset", "--shards", str(folder / "shards"), "--shard", "0", "--of", "1"]
        two_seconds, _ = run_job(
            [*arguments, "--out", str(folder / "two.parquet"), "--threads", "2"], folder / "two.log", "augbench.pool"
        )
        listed = [item for listing in write_listings(folder) for item in ("--listing", listing)]
        table_seconds, table_peak = run_job(
            ["table", *listed, "--out", str(folder / "table.csv")], folder / "table.log", "augbench.pool"
        )
    print(
        f"   start-up {start_up:.1f} s; {ROWS:,} samples in {tars} tars: {JOBS} listing jobs"
        f" {', '.join(f'{s:.1f}' for s in seconds)} s (peak {max(peaks):.0f} MB); one job of 2 processes"
        f" {two_seconds:.1f} s;"
        f" table of {TABLE_ROWS:,} keys {table_seconds:.1f} s (peak {table_peak:.0f} MB)"
    )
    listing_rate = ROWS / JOBS / (max(seconds) - start_up)
    return {
        "listing_rows": ROWS,
        "listing_rows_per_s": round(listing_rate, 1),
        "listing_peak_rss_mb": round(max(peaks), 1),
        # The pool listed by one job of 2 processes, over the time of one-process jobs at the rate above.
        "listing_two_process_speedup": round(ROWS / listing_rate / (two_seconds - start_up), 2),
        "listing_table_rows": TABLE_ROWS,
        "listing_table_rows_per_s": round(TABLE_ROWS / (table_seconds - start_up), 1),
        "listing_table_peak_rss_mb": round(table_peak, 1),
    }
