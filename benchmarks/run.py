"""Run the benchmarks and judge each figure against its bar: ``make bench``.

    python benchmarks/run.py [--only dag search ...] [--out benchmarks/latest.json]

Each benchmark measures a ratio side by side in one run (this machine is noisy, so
absolute times are printed but not judged) and returns its keys; ``latest.json`` gets
them all, with the machine they ran on. The exit status is non-zero if a bar is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_dag  # noqa: E402
import bench_demo  # noqa: E402
import bench_embed  # noqa: E402
import bench_generate  # noqa: E402
import bench_listing  # noqa: E402
import bench_retrieve  # noqa: E402
import bench_search  # noqa: E402
import bench_sharded  # noqa: E402
import bench_shared_quantiser  # noqa: E402
import bench_train_loader  # noqa: E402

BENCHMARKS = {
    "dag": bench_dag.measure,
    "embed": bench_embed.measure,
    "search": bench_search.measure,
    "retrieve": bench_retrieve.measure,
    "sharded": bench_sharded.measure,
    "quantiser": bench_shared_quantiser.measure,
    "listing": bench_listing.measure,
    "train_loader": bench_train_loader.measure,
    "generate": bench_generate.measure,
    "demo": bench_demo.measure,
}

# key -> (comparison, bar); keys without a bar are printed for information.
BARS = {
    "dag_dryrun_seconds": ("<=", 5.0),
    "dag_ratio_vs_bare": ("<=", 1.5),
    "embed_ratio": (">=", 0.8),
    "search_recall_at_100": (">=", 0.95),
    "search_speedup_vs_flat": (">=", 10.0),
    # Issue 5's budget: 1M pool embeddings, 1,000 class queries, k = 1,000.
    "retrieve_1m_seconds": ("<=", 60.0),
    "retrieve_1m_peak_rss_mb": ("<=", 4096.0),
    # Issue 18's: a pool of 10M x 768 in 10 shards, searched shard by shard and merged.
    "sharded_pool_rows": (">=", 10_000_000),
    "sharded_search_peak_rss_mb": ("<=", 4000.0),
    "sharded_recall_at_k": (">=", 0.95),
    "train_loader_ratio": (">=", 0.9),
    "gen_overhead_ratio": (">=", 0.9),
    "demo_seconds": ("<=", 600.0),
    "demo_peak_rss_mb": ("<=", 6144.0),
}


def meets(value: float, bar: tuple[str, float]) -> bool:
    comparison, limit = bar
    return value <= limit if comparison == "<=" else value >= limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=list(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--out", default=str(HERE / "latest.json"))
    args = parser.parse_args(argv)
    results: dict[str, object] = {}
    out = Path(args.out)
    if args.only and out.exists():  # a partial run updates the last full one
        results = json.loads(out.read_text())
    for name in args.only or BENCHMARKS:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        results.update(BENCHMARKS[name]())
        print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    missed = []
    print(f"\n{'key':28} {'value':>12}  bar")
    for key, value in sorted(results.items()):
        if key == "machine":
            continue
        bar = BARS.get(key)
        verdict = ""
        if bar and isinstance(value, (int, float)):
            verdict = "ok" if meets(value, bar) else "MISSED"
            if verdict == "MISSED":
                missed.append(key)
        shown = f"{value:12.3f}" if isinstance(value, float) else f"{value!s:>12}"
        print(f"{key:28} {shown}  {' '.join(map(str, bar)) if bar else ''} {verdict}")
    print(f"\nwrote {out}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
