"""The retrieve job at LAION-subset scale: its wall time and peak memory.

``python -m augbench.retrieve``, as the workflow runs it, over 1,000,000 pool image
embeddings (768-d, float32, memory-mapped from disk; the mixture of bench_search) for
1,000 class-prompt queries, 500 images per class, so each query fetches k = 1,000
candidates (overfetch 2). Module start-up (importing faiss, pandas) is included; the peak
is the job's maximum resident memory, as GNU time reports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_search
import numpy as np
import pandas as pd

PER_CLASS = 500


def write_pool(folder: Path) -> dict[str, str]:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((bench_search.CLUSTERS, bench_search.DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    embeddings = np.lib.format.open_memmap(
        folder / "pool.npy", mode="w+", dtype=np.float32, shape=(bench_search.N, bench_search.DIM)
    )
    for start in range(0, bench_search.N, 100_000):
        embeddings[start : start + 100_000] = bench_search.mixture(rng, centres, 100_000)
    embeddings.flush()
    del embeddings
    np.save(folder / "prompts.npy", centres)  # one query per class, near its cluster
    classes = [f"class{i}" for i in range(bench_search.CLUSTERS)]
    (folder / "classes.txt").write_text("\n".join(classes) + "\n")
    pd.DataFrame({"path": [f"pool/{i}.jpg" for i in range(bench_search.N)], "label": -1}).to_csv(
        folder / "pool.csv", index=False
    )
    pd.DataFrame({"path": [f"real/{i}.jpg" for i in range(len(classes))], "label": range(len(classes))}).to_csv(
        folder / "subset.csv", index=False
    )
    return {name: str(folder / name) for name in ("pool.npy", "prompts.npy", "classes.txt", "pool.csv", "subset.csv")}


def measure() -> dict:
    with tempfile.TemporaryDirectory(dir=os.environ.get("AUGBENCH_BENCH_TMP")) as tmp:
        files = write_pool(Path(tmp))
        # GNU time reports the job's own peak: a child forked from this process would start
        # with this process's pages (the pool just written) counted as its own.
        command = ["/usr/bin/time", "-f", "peak_kb %M", sys.executable, "-m", "augbench.retrieve"]
        command += ["--pool", files["pool.csv"]]
        command += ["--pool-embeddings", files["pool.npy"], "--queries", files["prompts.npy"]]
        command += ["--subset", files["subset.csv"], "--classes", files["classes.txt"]]
        command += ["--out", str(Path(tmp) / "added.csv"), "--per-class", str(PER_CLASS)]
        log = Path(tmp) / "retrieve.log"
        start = time.perf_counter()
        with open(log, "w") as handle:
            job = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(job.pid, 0)
        seconds = time.perf_counter() - start
        text = log.read_text().strip()
        print("   " + text.replace("\n", "\n   "))
        if status != 0:
            raise RuntimeError("retrieve failed (its log above)")
        peak_mb = int(text.rsplit("peak_kb ", 1)[1].split()[0]) / 1024
        added = pd.read_csv(Path(tmp) / "added.csv")
    cpu_seconds = usage.ru_utime + usage.ru_stime
    print(f"   {len(added):,} retrieved in {seconds:.1f} s ({cpu_seconds:.1f} s CPU), peak {peak_mb:,.0f} MB")
    return {
        "retrieve_1m_seconds": seconds,
        "retrieve_1m_cpu_seconds": cpu_seconds,
        "retrieve_1m_peak_rss_mb": peak_mb,
        "retrieve_1m_added": len(added),
    }
